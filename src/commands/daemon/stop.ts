import { Flags } from '../../cli/oclif.js';
import { DroverCommand, allFlag, timeoutFlag } from '../../cli/base-command.js';
import type { Profile } from '../../config/index.js';
import { DaemonNotRunningException } from '../../errors/index.js';

/** Result of `drover daemon stop --json`. */
export interface DaemonStopResult {
  profiles: Array<{ profile: string; wasRunning: boolean }>;
}

export default class DaemonStop extends DroverCommand<typeof DaemonStop> {
  static override summary = 'Stop the daemon of the profile (as `verdi daemon stop`).';
  static override description =
    'The daemon drains its workers: running processes finish within daemon.shutdown_grace seconds, the rest ' +
    'are released and resume at the next start. Waits until the daemon and its workers are gone unless ' +
    '--no-wait. When the daemon runs under its systemd user unit or launchd agent, stops it through ' +
    '`systemctl --user stop` / launchctl (so the service manager does not restart it). Stopping a daemon that is ' +
    'not running is not an error.';
  static override examples = [
    '<%= config.bin %> daemon stop',
    '<%= config.bin %> daemon stop --all',
    '<%= config.bin %> daemon stop --no-wait',
  ];
  static override flags = {
    wait: Flags.boolean({ default: true, allowNo: true, description: 'Wait until the daemon process is gone.' }),
    all: allFlag('Stop the daemons of every profile.'),
    timeout: timeoutFlag('Seconds to wait for the daemon to answer the stop request (default: daemon.timeout).'),
  };

  async run(): Promise<DaemonStopResult> {
    const { DaemonClient } = await import('../../client/daemon-client.js');
    let profiles: Profile[];
    if (this.flags.all) {
      const config = this.loadConfig();
      profiles = config.profileNames.map((name) => config.getProfile(name));
    } else {
      profiles = [this.resolveProfile(false)];
    }
    const what =
      profiles.length === 1
        ? `the daemon of profile '${profiles[0]!.name}'`
        : `the daemons of ${profiles.length} profiles`;
    const results = profiles.some((p) => new DaemonClient(p).isDaemonRunning)
      ? await this.withSpinner(
          this.flags.wait ? `Waiting for ${what} to drain the workers and exit` : `Asking ${what} to stop`,
          () => this.stopAll(profiles),
        )
      : await this.stopAll(profiles);
    return { profiles: results };
  }

  private async stopAll(profiles: Profile[]): Promise<DaemonStopResult['profiles']> {
    const { DaemonClient } = await import('../../client/daemon-client.js');
    // When the profile's unit or agent is installed, start/stop/restart go through systemd or launchd.
    const { findInstalledServiceManager } = await import('../../service/supervisor.js');
    return Promise.all(
      profiles.map(async (profile) => {
        const client = new DaemonClient(profile, { serviceManager: findInstalledServiceManager });
        if (!client.isDaemonRunning) {
          this.say(`The daemon of profile '${profile.name}' is not running.`);
          return { profile: profile.name, wasRunning: false };
        }
        const service = findInstalledServiceManager(profile);
        try {
          await client.stopDaemon({ wait: this.flags.wait, timeout: this.flags.timeout });
        } catch (err) {
          if (!(err instanceof DaemonNotRunningException)) throw err;
          this.say(`The daemon of profile '${profile.name}' is not running.`);
          return { profile: profile.name, wasRunning: false };
        }
        const via = service ? ` (through ${service.kind}: ${service.unit})` : '';
        this.say(
          this.flags.wait
            ? `Daemon of profile '${profile.name}' stopped${via}.`
            : `Daemon of profile '${profile.name}' is stopping${via}.`,
        );
        return { profile: profile.name, wasRunning: true };
      }),
    );
  }
}
