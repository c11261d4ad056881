import { Flags } from '../../cli/oclif.js';
import { DroverCommand, EXIT_UNREACHABLE, timeoutFlag } from '../../cli/base-command.js';
import { DaemonNotRunningException } from '../../errors/index.js';

/** Result of `drover daemon restart --json`. */
export interface DaemonRestartResult {
  profile: string;
  pid: number;
  numberOfWorkers: number;
}

export default class DaemonRestart extends DroverCommand<typeof DaemonRestart> {
  static override summary = 'Restart the workers of the running daemon (as `verdi daemon restart`).';
  static override description =
    'New worker processes take over and the old ones drain, so no process is lost. With --reset the whole ' +
    'daemon is stopped and started again with the default number of workers. When the daemon runs under its ' +
    'systemd user unit or launchd agent, the whole daemon is restarted through `systemctl --user restart` / ' +
    '`launchctl kickstart -k` (it drains first, so no process is lost). Exits with 3 when the daemon is not running, ' +
    '5 when it does not answer within --timeout.';
  static override examples = ['<%= config.bin %> daemon restart', '<%= config.bin %> daemon restart --reset'];
  static override flags = {
    reset: Flags.boolean({ description: 'Stop the daemon and start a new one instead of restarting its workers.' }),
    timeout: timeoutFlag('Seconds to wait for the daemon to answer (default: daemon.timeout).'),
  };

  async run(): Promise<DaemonRestartResult> {
    const profile = this.resolveProfile(false);
    const { DaemonClient } = await import('../../client/daemon-client.js');
    // When the profile's unit or agent is installed, start/stop/restart go through systemd or launchd.
    const { findInstalledServiceManager } = await import('../../service/supervisor.js');
    const client = new DaemonClient(profile, { serviceManager: findInstalledServiceManager });
    const notRunning = (): never => {
      this.notice(`The daemon of profile '${profile.name}' is not running.`);
      return this.exit(EXIT_UNREACHABLE);
    };
    // A service manager's restart would start a stopped daemon; this command restarts a running one.
    if (!client.isDaemonRunning) notRunning();
    const service = findInstalledServiceManager(profile);
    const timeout = this.flags.timeout;
    try {
      await this.withSpinner(
        service || this.flags.reset
          ? `Restarting the daemon of profile '${profile.name}'`
          : `Restarting the workers of the daemon of profile '${profile.name}'`,
        () => client.restartDaemon({ reset: this.flags.reset, timeout }),
      );
    } catch (err) {
      if (!(err instanceof DaemonNotRunningException)) throw err;
      notRunning();
    }
    const status = await client.getStatus({ timeout });
    const workers = `${status.numberOfWorkers} worker${status.numberOfWorkers === 1 ? '' : 's'}`;
    this.say(
      service
        ? `Daemon of profile '${profile.name}' restarted through ${service.kind} (${service.unit}; pid ${status.pid}, ${workers}).`
        : this.flags.reset
          ? `Daemon of profile '${profile.name}' restarted (pid ${status.pid}, ${workers}).`
          : `Restarted the ${workers} of the daemon of profile '${profile.name}'.`,
    );
    return { profile: profile.name, pid: status.pid, numberOfWorkers: status.numberOfWorkers };
  }
}
