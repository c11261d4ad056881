import { Args } from '../../cli/oclif.js';
import { DroverCommand, timeoutFlag } from '../../cli/base-command.js';
import { MAX_WORKERS } from '../../protocol/index.js';

/** Result of `drover daemon decr --json`. */
export interface DaemonDecrResult {
  profile: string;
  numberOfWorkers: number;
}

export default class DaemonDecr extends DroverCommand<typeof DaemonDecr> {
  static override summary = 'Remove workers from the running daemon (as `verdi daemon decr`).';
  static override description =
    'Each removed worker drains: its running processes finish within daemon.shutdown_grace seconds or are released to the other workers; none is killed. Exits with 3 when the daemon is not running.';
  static override examples = ['<%= config.bin %> daemon decr', '<%= config.bin %> daemon decr 2'];
  static override args = {
    number: Args.integer({
      min: 1,
      max: MAX_WORKERS,
      default: 1,
      description: 'Number of workers to remove (default 1).',
    }),
  };

  static override flags = {
    timeout: timeoutFlag('Seconds to wait for the daemon to answer (default: daemon.timeout).'),
  };

  async run(): Promise<DaemonDecrResult> {
    return this.changeWorkers('decrease', this.args.number, this.flags.timeout);
  }
}
