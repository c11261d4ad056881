import { Args } from '../../cli/oclif.js';
import { DroverCommand, formatValue } from '../../cli/base-command.js';
import { globalFlag } from '../../cli/config-scope.js';
import { getOptionSpec, type OptionEntry, type OptionValue } from '../../config/index.js';

/** Result of `drover config get --json`. */
export interface ConfigGetResult {
  key: string;
  value: OptionValue;
  source: OptionEntry['source'];
  /** The profile asked about, or null with --global. */
  profile: string | null;
}

export default class ConfigGet extends DroverCommand<typeof ConfigGet> {
  static override summary = 'Print the effective value of an option.';
  static override description =
    "Prints the value an option has for a profile (-p, DROVER_PROFILE, or the default profile): the profile's " +
    'own value, else the global value, else the default; for a shared option of a PostgreSQL profile, the ' +
    "value in the profile's store first (source store). With --global, the global value or the default.";
  static override examples = [
    '<%= config.bin %> config get daemon.timeout',
    '<%= config.bin %> config get daemon.timeout -p demo --json',
    '<%= config.bin %> config get logging.level --global',
  ];
  static override args = {
    key: Args.string({ required: true, description: 'Option name, e.g. daemon.timeout (see drover config list).' }),
  };
  static override flags = { global: globalFlag };

  async run(): Promise<ConfigGetResult> {
    const config = this.loadConfig();
    const { key } = this.args;
    getOptionSpec(key);
    const { created, profile } = this.configScope(config, this.flags.global);
    if (created !== null) {
      config.save();
      this.notice(created);
    }
    const entry = (await this.optionEntries(config, profile)).find((o) => o.name === key)!;
    this.say(formatValue(entry.value));
    return { key, value: entry.value, source: entry.source, profile };
  }
}
