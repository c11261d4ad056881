import { Args } from '@oclif/core';
import { DroverCommand, EXIT_UNREACHABLE } from '../../cli/base-command.js';
import { DaemonNotRunningException } from '../../errors/index.js';
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

  async run(): Promise<DaemonIncrResult> {
    const profile = this.resolveProfile(false);
    const { DaemonClient } = await import('../../client/index.js');
    const client = new DaemonClient(profile);
    let count: number;
    try {
      count = await client.increaseWorkers(this.args.number);
    } catch (err) {
      if (!(err instanceof DaemonNotRunningException)) throw err;
      this.notice(`The daemon of profile '${profile.name}' is not running.`);
      return this.exit(EXIT_UNREACHABLE);
    }
    this.say(`The daemon of profile '${profile.name}' now has ${count} worker${count === 1 ? '' : 's'}.`);
    return { profile: profile.name, numberOfWorkers: count };
  }
}
