import { Args } from '../../cli/oclif.js';
import { DroverCommand, formatValue } from '../../cli/base-command.js';
import { describeScope, globalFlag } from '../../cli/config-scope.js';
import { getOptionSpec, parseOptionValue, validateOptionValue, type OptionValue } from '../../config/index.js';

/** Result of `drover config set --json`. */
export interface ConfigSetResult {
  key: string;
  value: OptionValue;
  /** The profile changed, or null with --global. */
  profile: string | null;
  /** True when a running daemon picks the change up only after a restart. */
  restartRequired: boolean;
  /** Where it was written: this host's configuration file, or the profile's store (a shared option). */
  where: 'file' | 'store';
}

export default class ConfigSet extends DroverCommand<typeof ConfigSet> {
  static override summary = 'Set an option for a profile or globally.';
  static override description =
    'Sets an option for a profile (-p, DROVER_PROFILE, or the default profile) or, with --global, for every ' +
    "profile that does not set it itself. The value is checked against the option's type and range first; a " +
    'bad value changes nothing. Lists take JSON or comma-separated text; daemon.worker_restart_backoff takes ' +
    "JSON. A shared option (see config list's SCOPE) of a PostgreSQL profile is written to the profile's store, " +
    "so the daemons of every host use it after their restart; --global values stay in this host's file.";
  static override examples = [
    '<%= config.bin %> config set daemon.timeout 5',
    '<%= config.bin %> config set daemon.timeout 5 -p demo',
    '<%= config.bin %> config set logging.level debug --global',
    '<%= config.bin %> config set daemon.worker_restart_backoff \'{"initial":1,"max":60,"factor":2}\'',
  ];
  static override args = {
    key: Args.string({ required: true, description: 'Option name, e.g. daemon.timeout (see drover config list).' }),
    value: Args.string({ required: true, description: 'The new value.' }),
  };
  static override flags = { global: globalFlag };

  async run(): Promise<ConfigSetResult> {
    const config = this.loadConfig();
    const { key } = this.args;
    const spec = getOptionSpec(key);
    const value = parseOptionValue(key, this.args.value);
    const { scope, created, profile } = this.configScope(config, this.flags.global);
    const { isStoredOption, writeSharedOption } = await import('../../api/shared-options.js');
    if (profile !== null && isStoredOption(config.getProfile(profile), spec)) {
      // Every host's daemon reads it from the store: one command for the whole profile.
      validateOptionValue(key, value, `profile '${profile}'`);
      await writeSharedOption(config.getProfile(profile), key, value);
      if (created !== null) config.save();
      this.say(`Set ${key} = ${formatValue(value)} for ${describeScope(scope)} in its store, for every host.`);
      if (spec.restartRequired) this.say('Each daemon of the profile picks this up when it restarts.');
      return { key, value, profile, restartRequired: spec.restartRequired, where: 'store' };
    }
    config.setOption(key, value, profile ?? undefined);
    config.save();
    if (created !== null) this.notice(created);
    this.say(`Set ${key} = ${formatValue(value)} for ${describeScope(scope)}.`);
    if (spec.restartRequired) this.say('A running daemon picks this up when it restarts.');
    return { key, value, profile, restartRequired: spec.restartRequired, where: 'file' };
  }
}
