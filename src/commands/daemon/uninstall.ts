import { Flags } from '../../cli/oclif.js';
import { DroverCommand } from '../../cli/base-command.js';
import { Config, validateProfileName } from '../../config/index.js';
import { ProfileNotFoundError } from '../../errors/index.js';
import {
  formatServiceAction,
  platformInitSystem,
  uninstallLaunchdAgent,
  uninstallSystemdService,
  type InitSystem,
  type ServiceActionResult,
} from '../../service/index.js';

export default class DaemonUninstall extends DroverCommand<typeof DaemonUninstall> {
  static override summary = "Stop and remove the profile's user service (systemd unit or launchd agent).";
  static override description = [
    'systemd: stops and disables drover@<escaped profile>.service, removes its drop-in, removes the shared',
    "template drover@.service when no other profile's instance is installed, enabled or running, and reloads.",
    'launchd: launchctl bootout, then removes the plist. Succeeds when nothing is installed.',
    'The profile need not exist any more; lingering (loginctl enable-linger) is left as it is.',
  ].join('\n');
  static override examples = [
    '<%= config.bin %> daemon uninstall',
    '<%= config.bin %> daemon uninstall -p old --dry-run',
  ];

  static override flags = {
    'dry-run': Flags.boolean({ description: 'Print what would be stopped, removed and run; change nothing.' }),
    init: Flags.option({
      options: ['systemd', 'launchd'] as const,
      description: 'Service manager to uninstall from (default: systemd on Linux, launchd on macOS).',
    })(),
  };

  async run(): Promise<ServiceActionResult> {
    const flags = this.flags;
    const name = this.profileName();
    const init: InitSystem = flags.init ?? platformInitSystem() ?? 'systemd';
    const dryRun = flags['dry-run'];
    const result =
      init === 'systemd'
        ? await uninstallSystemdService({ profile: name, dryRun })
        : await uninstallLaunchdAgent({ profile: name, dryRun });
    if (!this.jsonEnabled()) {
      for (const w of result.warnings) this.logToStderr(`Warning: ${w}`);
      this.log(formatServiceAction(result));
    }
    return result;
  }

  /** The profile's name; it need not exist in the configuration (its unit may outlive it). */
  private profileName(): string {
    const given = this.flags.profile;
    if (given !== undefined) return validateProfileName(given);
    const def = Config.load().defaultProfile;
    if (def === null)
      throw new ProfileNotFoundError('no profile given and no default profile; name one with -p PROFILE');
    return def;
  }
}
