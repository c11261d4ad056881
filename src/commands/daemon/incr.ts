import { Args } from '../../cli/oclif.js';
import { DroverCommand, timeoutFlag } from '../../cli/base-command.js';
import { MAX_WORKERS } from '../../protocol/index.js';

/** Result of `drover daemon incr --json`. */
export interface DaemonIncrResult {
  profile: string;
  numberOfWorkers: number;
}

export default class DaemonIncr extends DroverCommand<typeof DaemonIncr> {
  static override summary = 'Add workers to the running daemon (as `verdi daemon incr`).';
  static override description = 'New workers start taking work at once. Exits with 3 when the daemon is not running.';
  static override examples = ['<%= config.bin %> daemon incr', '<%= config.bin %> daemon incr 2'];
  static override args = {
    number: Args.integer({
      min: 1,
      max: MAX_WORKERS,
      default: 1,
      description: 'Number of workers to add (default 1).',
    }),
  };

  static override flags = {
    timeout: timeoutFlag('Seconds to wait for the daemon to answer (default: daemon.timeout).'),
  };

  async run(): Promise<DaemonIncrResult> {
    return this.changeWorkers('increase', this.args.number, this.flags.timeout);
  }
}
