import { Args, Flags } from '../../cli/oclif.js';
import { DroverCommand, timeoutFlag } from '../../cli/base-command.js';
import { MAX_WORKERS } from '../../protocol/index.js';

/** Result of `drover daemon start --json`. */
export interface DaemonStartResult {
  profile: string;
  pid: number;
  numberOfWorkers: number;
}

export default class DaemonStart extends DroverCommand<typeof DaemonStart> {
  static override summary = 'Start the daemon of the profile (as `verdi daemon start`).';
  static override description =
    'Starts the daemon in the background with N workers (default `daemon.default_workers`) and waits until it ' +
    'answers. With --foreground the daemon runs in this process, logging to stdout and to its log file, until ' +
    'SIGTERM or SIGINT (this is what the systemd unit runs). When the profile is installed as a systemd user unit ' +
    'or launchd agent (`drover daemon install`), starts it through `systemctl --user start` / launchctl instead. ' +
    'Exits with 4 when the daemon is already running, 5 when it does not answer within --timeout.';
  static override examples = [
    '<%= config.bin %> daemon start',
    '<%= config.bin %> daemon start 4',
    '<%= config.bin %> daemon start --foreground',
  ];
  static override args = {
    number: Args.integer({
      min: 1,
      max: MAX_WORKERS,
      description: 'Number of workers (default: the daemon.default_workers option).',
    }),
  };
  static override flags = {
    foreground: Flags.boolean({ char: 'F', description: 'Run the daemon in this process, in the foreground.' }),
    timeout: timeoutFlag('Seconds to wait for the daemon to answer (default: the larger of daemon.timeout and 30).'),
  };

  async run(): Promise<DaemonStartResult | void> {
    const profile = this.resolveProfile();
    const n = this.args.number;
    if (this.flags.foreground) {
      // Imported here: only the daemon process itself needs the supervisor and its native modules.
      const { runDaemon } = await import('../../api/daemon.js');
      const code = await runDaemon(profile, { numberWorkers: n, foreground: true });
      this.exit(code);
    }
    const { DaemonClient } = await import('../../client/daemon-client.js');
    // When the profile's unit or agent is installed, start/stop/restart go through systemd or launchd.
    const { findInstalledServiceManager } = await import('../../service/supervisor.js');
    const service = findInstalledServiceManager(profile);
    const client = new DaemonClient(profile, { serviceManager: findInstalledServiceManager });
    const workers = n ?? profile.options['daemon.default_workers'];
    const via = service ? ` through ${service.kind} (${service.unit})` : '';
    this.say(
      `Starting the daemon of profile '${profile.name}' with ${workers} worker${workers === 1 ? '' : 's'}${via}...`,
    );
    await this.withSpinner(`Waiting for the daemon of profile '${profile.name}' to answer`, () =>
      client.startDaemon({ numberWorkers: n, timeout: this.flags.timeout }),
    );
    // (Under a service manager, startDaemon scales the unit's daemon.default_workers to N itself.)
    const status = await client.getStatus();
    this.say(
      `Daemon started (pid ${status.pid}${service ? `, supervised by ${status.supervisor}` : ''}); ` +
        `log: ${client.logFile}`,
    );
    return { profile: profile.name, pid: status.pid, numberOfWorkers: status.numberOfWorkers };
  }
}
