import { Flags } from '@oclif/core';
import { DroverCommand, EXIT_UNREACHABLE, formatTable } from '../../cli/base-command.js';
import type { Profile } from '../../config/index.js';
import { DaemonNotRunningException, DaemonTimeoutException } from '../../errors/index.js';
import type { DaemonStatus } from '../../protocol/index.js';

/** Status of one profile's daemon in `drover daemon status --json`. */
export interface DaemonStatusEntry {
  profile: string;
  running: boolean;
  /** Why there is no status: not running, or not answering. */
  message: string | null;
  status: DaemonStatus | null;
}

/** Result of `drover daemon status --json`: one entry, or one per profile with --all. */
export interface DaemonStatusResult {
  profiles: DaemonStatusEntry[];
}

export default class DaemonStatusCommand extends DroverCommand<typeof DaemonStatusCommand> {
  static override summary = 'Show the status of the daemon and its workers (as `verdi daemon status`).';
  static override description =
    'Shows the daemon pid, start time and state, and a table of its workers: pid, memory, cpu, start time, ' +
    'restarts, processes running (of slots) and state, with the last error and output of a crash-looping ' +
    'worker. Exits with 3 when the daemon is not running (with --all: when any is not running).';
  static override examples = [
    '<%= config.bin %> daemon status',
    '<%= config.bin %> daemon status --all',
    '<%= config.bin %> daemon status --json',
  ];
  static override flags = {
    all: Flags.boolean({ description: 'Show the daemons of every profile.' }),
  };

  async run(): Promise<DaemonStatusResult> {
    const { DaemonClient, daemonSummary, workerProblems, workerTable } = await import('../../client/index.js');
    let profiles: Profile[];
    if (this.flags.all) {
      const config = this.loadConfig();
      profiles = config.profileNames.map((name) => config.getProfile(name));
    } else {
      profiles = [this.resolveProfile(false)];
    }
    const entries = await Promise.all(
      profiles.map(async (profile): Promise<DaemonStatusEntry> => {
        const client = new DaemonClient(profile);
        try {
          return { profile: profile.name, running: true, message: null, status: await client.getStatus() };
        } catch (err) {
          if (err instanceof DaemonNotRunningException) {
            return {
              profile: profile.name,
              running: false,
              message: `The daemon of profile '${profile.name}' is not running.`,
              status: null,
            };
          }
          if (err instanceof DaemonTimeoutException) {
            return { profile: profile.name, running: client.isDaemonRunning, message: err.message, status: null };
          }
          throw err;
        }
      }),
    );
    entries.forEach((e, i) => {
      if (i > 0) this.say();
      if (e.status === null) {
        this.say(e.message ?? '');
        return;
      }
      this.say(daemonSummary(e.status));
      if (e.status.workers.length > 0) {
        const t = workerTable(e.status.workers);
        this.say();
        this.say(formatTable(t.headers, t.rows));
      }
      const problems = workerProblems(e.status.workers);
      if (problems.length > 0) {
        this.say();
        for (const line of problems) this.say(line);
      }
    });
    const result = { profiles: entries };
    if (entries.some((e) => e.status === null)) {
      if (this.jsonEnabled()) this.logJson(result);
      this.exit(EXIT_UNREACHABLE);
    }
    return result;
  }
}
