import { Args } from '@oclif/core';
import { DroverCommand, EXIT_UNREACHABLE } from '../../cli/base-command.js';
import { DaemonNotRunningException } from '../../errors/index.js';
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

  async run(): Promise<DaemonDecrResult> {
    const profile = this.resolveProfile(false);
    const { DaemonClient } = await import('../../client/index.js');
    const client = new DaemonClient(profile);
    let count: number;
    try {
      count = await client.decreaseWorkers(this.args.number);
    } catch (err) {
      if (!(err instanceof DaemonNotRunningException)) throw err;
      this.notice(`The daemon of profile '${profile.name}' is not running.`);
      return this.exit(EXIT_UNREACHABLE);
    }
    this.say(`The daemon of profile '${profile.name}' now has ${count} worker${count === 1 ? '' : 's'}.`);
    return { profile: profile.name, numberOfWorkers: count };
  }
}
