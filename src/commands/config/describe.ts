import { Args } from '../../cli/oclif.js';
import { DroverCommand, formatValue } from '../../cli/base-command.js';
import {
  OPTION_SPECS,
  describeOptionType,
  getOptionSpec,
  type OptionScope,
  type OptionValue,
} from '../../config/index.js';

/** One option of `drover config describe --json`. */
export interface OptionDescription {
  name: string;
  /** What values are accepted, e.g. `an integer from 1 to 256`. */
  type: string;
  default: OptionValue;
  description: string;
  restartRequired: boolean;
  /** `shared` (a PostgreSQL profile keeps it in its store, for every host) or `host`. */
  scope: OptionScope;
}

/** Result of `drover config describe --json`. */
export interface ConfigDescribeResult {
  options: OptionDescription[];
}

export default class ConfigDescribe extends DroverCommand<typeof ConfigDescribe> {
  static override summary = 'Describe the options: accepted values, default, and what they do.';
  static override examples = [
    '<%= config.bin %> config describe',
    '<%= config.bin %> config describe daemon.worker_restart_backoff',
  ];
  static override args = {
    key: Args.string({ description: 'Only this option.' }),
  };

  async run(): Promise<ConfigDescribeResult> {
    const specs = this.args.key === undefined ? [...OPTION_SPECS.values()] : [getOptionSpec(this.args.key)];
    const options = specs.map((s) => ({
      name: s.name,
      type: describeOptionType(s.type),
      default: structuredClone(s.default),
      description: s.description,
      restartRequired: s.restartRequired,
      scope: s.scope,
    }));
    options.forEach((o, i) => {
      if (i > 0) this.say('');
      this.say(o.name);
      this.say(`  ${o.description}`);
      this.say(`  accepts: ${o.type}`);
      this.say(`  default: ${formatValue(o.default)}`);
      this.say(
        `  restart: ${o.restartRequired ? 'a running daemon picks a change up when it restarts' : 'takes effect at once'}`,
      );
      this.say(
        `  scope: ${
          o.scope === 'shared'
            ? "shared: for a PostgreSQL profile it lives in the profile's store, the same for every host"
            : "host: each host's configuration file"
        }`,
      );
    });
    return { options };
  }
}
