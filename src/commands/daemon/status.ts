import { Flags } from '@oclif/core';
import { DroverCommand, EXIT_UNREACHABLE, formatTable } from '../../cli/base-command.js';
import type { Profile } from '../../config/index.js';
import { DaemonNotRunningException, DaemonTimeoutException } from '../../errors/index.js';
import type { DaemonStatus } from '../../protocol/index.js';
import type { InstalledUnitCheck } from '../../service/supervisor.js';

/** Status of one profile's daemon in `drover daemon status --json`. */
export interface DaemonStatusEntry {
  profile: string;
  running: boolean;
  /** Why there is no status: not running, or not answering. */
  message: string | null;
  status: DaemonStatus | null;
  /**
   * The profile's systemd unit or launchd agent, present only when one is installed: enabled,
   * state, the node and CLI it runs, and problems (a node or CLI that no longer exists, another
   * DROVER_HOME).
   */
  service?: InstalledUnitCheck;
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
    'worker. Shows whether the systemd user unit or launchd agent of the profile is installed, and warns when ' +
    'it runs a node or CLI that no longer exists (run `drover daemon install` again). Exits with 3 when the ' +
    'daemon is not running (with --all: when any is not running).';
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
    const { checkInstalledUnit, formatUnitCheck, platformInitSystem } = await import('../../service/index.js');
    // Never let the unit check hide the daemon's status: a failure only leaves `service` out.
    const serviceOf = async (name: string): Promise<{ service?: InstalledUnitCheck }> => {
      if (platformInitSystem() === null) return {};
      const check = await checkInstalledUnit(name).catch(() => null);
      return check?.installed ? { service: check } : {};
    };
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
        const service = serviceOf(profile.name);
        try {
          const status = await client.getStatus();
          return { profile: profile.name, running: true, message: null, status, ...(await service) };
        } catch (err) {
          if (err instanceof DaemonNotRunningException) {
            return {
              profile: profile.name,
              running: false,
              message: `The daemon of profile '${profile.name}' is not running.`,
              status: null,
              ...(await service),
            };
          }
          if (err instanceof DaemonTimeoutException) {
            return {
              profile: profile.name,
              running: client.isDaemonRunning,
              message: err.message,
              status: null,
              ...(await service),
            };
          }
          throw err;
        }
      }),
    );
    entries.forEach((e, i) => {
      if (i > 0) this.say();
      const unitLine = e.service ? formatUnitCheck(e.service) : null;
      if (!this.jsonEnabled()) for (const p of e.service?.problems ?? []) this.logToStderr(`Warning: ${p}`);
      if (e.status === null) {
        this.say(e.message ?? '');
        if (unitLine !== null) this.say(unitLine);
        return;
      }
      this.say(daemonSummary(e.status));
      if (unitLine !== null) {
        this.say(unitLine);
        if (e.status.supervisor === 'self' && e.service!.problems.length === 0) {
          this.say(
            `Note: this daemon was started outside ${e.service!.unit}; \`drover daemon stop\` stops it directly, ` +
              'and the service manager starts the next one.',
          );
        }
      }
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
