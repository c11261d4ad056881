import { Args } from '../../cli/oclif.js';
import { DroverCommand, formatValue } from '../../cli/base-command.js';
import { describeScope, globalFlag } from '../../cli/config-scope.js';
import { getOptionSpec, type OptionEntry, type OptionValue } from '../../config/index.js';

/** Result of `drover config unset --json`. */
export interface ConfigUnsetResult {
  key: string;
  /** The profile changed, or null with --global. */
  profile: string | null;
  /** False when the option was not set there (nothing changed). */
  changed: boolean;
  /** The value in effect now, and where it comes from. */
  value: OptionValue;
  source: OptionEntry['source'];
}

export default class ConfigUnset extends DroverCommand<typeof ConfigUnset> {
  static override summary = 'Remove the value of an option from a profile or from the global values.';
  static override description =
    'After unset, a profile falls back to the global value and the global value to the default. A shared option ' +
    "of a PostgreSQL profile is removed from the profile's store too.";
  static override examples = [
    '<%= config.bin %> config unset daemon.timeout',
    '<%= config.bin %> config unset daemon.timeout -p demo',
    '<%= config.bin %> config unset logging.level --global',
  ];
  static override args = {
    key: Args.string({ required: true, description: 'Option name, e.g. daemon.timeout (see drover config list).' }),
  };
  static override flags = { global: globalFlag };

  async run(): Promise<ConfigUnsetResult> {
    const config = this.loadConfig();
    const { key } = this.args;
    const spec = getOptionSpec(key);
    const { scope, created, profile } = this.configScope(config, this.flags.global);
    let changed = false;
    const { isStoredOption, writeSharedOption } = await import('../../api/shared-options.js');
    if (profile !== null && isStoredOption(config.getProfile(profile), spec)) {
      changed = await writeSharedOption(config.getProfile(profile), key, undefined);
    }
    changed = config.unsetOption(key, profile ?? undefined) || changed;
    if (changed || created !== null) config.save();
    if (created !== null) this.notice(created);
    const now = (await this.optionEntries(config, profile)).find((o) => o.name === key)!;
    this.say(
      changed
        ? `Unset ${key} for ${describeScope(scope)}; it is now ${formatValue(now.value)} (${now.source}).`
        : `${key} was not set for ${describeScope(scope)}; nothing changed (it is ${formatValue(now.value)}, ${now.source}).`,
    );
    return { key, profile, changed, value: now.value, source: now.source };
  }
}
