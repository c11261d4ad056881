import { Flags } from '../../cli/oclif.js';
import { DroverCommand, formatTable, formatValue } from '../../cli/base-command.js';
import { globalFlag } from '../../cli/config-scope.js';
import type { OptionEntry } from '../../config/index.js';

/** Result of `drover config list --json`. */
export interface ConfigListResult {
  configFile: string;
  /** The profile whose effective values are listed, or null for the global values. */
  profile: string | null;
  options: OptionEntry[];
}

export default class ConfigList extends DroverCommand<typeof ConfigList> {
  static override summary = 'List every option with its value and where the value comes from.';
  static override description =
    'Lists the effective value of every option for a profile (-p, DROVER_PROFILE, or the default profile), or ' +
    'with --global the global values. SOURCE is default, global, profile or store; SCOPE is shared (for a ' +
    "PostgreSQL profile the value lives in the profile's store, the same for every host) or host (this host's " +
    'configuration file); options marked in the RESTART ' +
    'column take effect only after the daemon restarts. --verbose adds the accepted values and the description.';
  static override examples = [
    '<%= config.bin %> config list',
    '<%= config.bin %> config list -p demo --json',
    '<%= config.bin %> config list --global --verbose',
  ];
  static override flags = {
    global: globalFlag,
    verbose: Flags.boolean({ char: 'v', description: 'Also show what values each option accepts and what it does.' }),
  };

  async run(): Promise<ConfigListResult> {
    const config = this.loadConfig();
    const { created, profile } = this.configScope(config, this.flags.global);
    if (created !== null) {
      config.save();
      this.notice(created);
    }
    const options = await this.optionEntries(config, profile);
    this.say(
      profile === null ? `Global options in ${config.file}:` : `Options of profile '${profile}' in ${config.file}:`,
    );
    this.say(
      formatTable(
        ['OPTION', 'VALUE', 'SOURCE', 'SCOPE', 'RESTART'],
        options.map((o) => [o.name, formatValue(o.value), o.source, o.scope, o.restartRequired ? 'yes' : '']),
      ),
    );
    if (this.flags.verbose) {
      for (const o of options) {
        this.say('');
        this.say(
          `${o.name}: ${o.type}; default ${formatValue(o.default)}${o.restartRequired ? '; needs a daemon restart' : ''}`,
        );
        this.say(`  ${o.description}`);
      }
    }
    return { configFile: config.file, profile, options };
  }
}
