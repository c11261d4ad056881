import { Flags } from '../../cli/oclif.js';
import { DroverCommand, oclifFlags } from '../../cli/base-command.js';
import type { ClusterStatusResult } from '../../cli/cluster-status.js';
import {
  DAEMON_STATUS_FLAGS,
  collectDaemonStatus,
  daemonStatusExitCode,
  renderDaemonStatus,
  type DaemonStatusResult,
} from '../../cli/daemon-status.js';
import { EXIT } from '../../cli/exit-codes.js';

export type { DaemonStatusEntry, DaemonStatusResult } from '../../cli/daemon-status.js';

// bin/drover.js answers `drover daemon status` itself, without loading oclif, whenever its flags
// are the ones below; this command runs for the rest (--help, a flag error) and from oclif's API.
export default class DaemonStatusCommand extends DroverCommand<typeof DaemonStatusCommand> {
  static override summary = 'Show the status of the daemon and its workers (as `verdi daemon status`).';
  static override description =
    'Shows the daemon pid, start time and state, and a table of its workers: pid, memory, cpu, start time, ' +
    'restarts, processes running (of slots) and state, with the last error and output of a crash-looping ' +
    'worker. Shows whether the store and the broker are reachable from here (a connection to the server, or ' +
    'the SQLite file; `drover status` logs in) and whether the systemd user unit or launchd agent of the ' +
    'profile is installed. Warns when the unit runs a node or CLI that no longer exists (run `drover daemon ' +
    'install` again), and when the running daemon loaded options, process modules or a drover version that ' +
    'no longer match the disk (restart to pick them up). Exits with 3 when the daemon is not running, 5 when ' +
    'it does not answer within --timeout (with --all: 3 when any is not running, else 5 when any did not answer). ' +
    'With --cluster it lists every daemon of the profile on every host, and their workers, from the registry ' +
    "in the profile's store (each daemon refreshes its row every second; one silent for 4 s is shown stale), and " +
    'exits 3 when none is live.';
  static override examples = [
    '<%= config.bin %> daemon status',
    '<%= config.bin %> daemon status --all',
    '<%= config.bin %> daemon status -t 0.5 --json',
    '<%= config.bin %> daemon status --cluster',
  ];
  static override flags = {
    ...oclifFlags(DAEMON_STATUS_FLAGS),
    cluster: Flags.boolean({
      description: 'Every daemon of the profile on every host, from the registry in its store.',
      exclusive: ['all'],
    }),
  };

  async run(): Promise<DaemonStatusResult | ClusterStatusResult> {
    const flags = this.flags as unknown as { profile?: string; all: boolean; timeout?: number; cluster?: boolean };
    if (flags.cluster) {
      const { collectClusterStatus, renderClusterStatus } = await import('../../cli/cluster-status.js');
      const r = await collectClusterStatus(this.resolveProfile());
      this.say(renderClusterStatus(r).join('\n'));
      if (r.live === 0) {
        if (this.jsonEnabled()) this.logJson(r);
        this.exit(EXIT.UNREACHABLE);
      }
      return r;
    }
    const result = await collectDaemonStatus({ profile: flags.profile, all: flags.all, timeout: flags.timeout });
    if (!this.jsonEnabled()) {
      const { out, err } = await renderDaemonStatus(result);
      for (const line of err) this.logToStderr(line);
      for (const line of out) this.log(line);
    }
    const code = daemonStatusExitCode(result);
    if (code !== EXIT.OK) {
      if (this.jsonEnabled()) this.logJson(result);
      this.exit(code);
    }
    return result;
  }
}
