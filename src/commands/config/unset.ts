import { Args } from '@oclif/core';
import { DroverCommand, formatValue } from '../../cli/base-command.js';
import { describeScope, globalFlag } from '../../cli/config-scope.js';
import { getOptionSpec, type OptionValue } from '../../config/index.js';

/** Result of `drover config unset --json`. */
export interface ConfigUnsetResult {
  key: string;
  /** The profile changed, or null with --global. */
  profile: string | null;
  /** False when the option was not set there (nothing changed). */
  changed: boolean;
  /** The value in effect now, and where it comes from. */
  value: OptionValue;
  source: 'default' | 'global' | 'profile';
}

export default class ConfigUnset extends DroverCommand<typeof ConfigUnset> {
  static override summary = 'Remove the value of an option from a profile or from the global values.';
  static override description =
    'After unset, a profile falls back to the global value and the global value to the default.';
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
    getOptionSpec(key);
    const { scope, created, profile } = this.configScope(config, this.flags.global);
    const changed = config.unsetOption(key, profile ?? undefined);
    if (changed || created !== null) config.save();
    if (created !== null) this.notice(created);
    const now = config.describeOptions(profile ?? undefined).find((o) => o.name === key)!;
    this.say(
      changed
        ? `Unset ${key} for ${describeScope(scope)}; it is now ${formatValue(now.value)} (${now.source}).`
        : `${key} was not set for ${describeScope(scope)}; nothing changed (it is ${formatValue(now.value)}, ${now.source}).`,
    );
    return { key, profile, changed, value: now.value, source: now.source };
  }
}
