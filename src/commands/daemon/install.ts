import fs from 'node:fs';
import path from 'node:path';
import { Flags } from '../../cli/oclif.js';
import { DroverCommand } from '../../cli/base-command.js';
import { InputError, ProfileNotFoundError } from '../../errors/index.js';
import { OPTION_SPECS, configFilePath, logDir, validateProfileName } from '../../config/index.js';
import {
  DEFAULT_RESTART_SECONDS,
  DEFAULT_WATCHDOG_SECONDS,
  detectInitSystem,
  droverCliPath,
  droverPackage,
  formatServiceAction,
  installLaunchdAgent,
  installSystemdService,
  platformInitSystem,
  stopTimeoutSeconds,
  type InitSystem,
  type ServiceActionResult,
} from '../../service/index.js';

export default class DaemonInstall extends DroverCommand<typeof DaemonInstall> {
  static override summary = "Install the profile's daemon as a user service, supervised by systemd or launchd.";
  static override description = [
    'Linux: writes the template unit ~/.config/systemd/user/drover@.service (shared by all profiles) and the',
    "profile's drop-in, then runs `systemctl --user daemon-reload`. The instance is",
    'drover@<systemd-escaped profile>.service. macOS: writes ~/Library/LaunchAgents/org.drover.daemon.<profile>.plist.',
    'The unit runs this node and this CLI by absolute path: install again after upgrading or moving either.',
    'The daemon tells systemd it is ready through the native sd-notify module, or, when that module is not',
    'built (no libsystemd-dev), through the systemd-notify program: the unit then says NotifyAccess=all.',
  ].join('\n');
  static override examples = [
    '<%= config.bin %> daemon install --enable --now',
    '<%= config.bin %> daemon install -p my-profile --enable --linger',
    '<%= config.bin %> daemon install --dry-run',
  ];

  static override flags = {
    enable: Flags.boolean({ description: 'Start the daemon at login (systemctl --user enable; launchctl enable).' }),
    now: Flags.boolean({ description: 'Start the daemon now.' }),
    linger: Flags.boolean({
      description: 'systemd: loginctl enable-linger, so the daemon starts at boot and keeps running after logout.',
    }),
    'dry-run': Flags.boolean({ description: 'Print the rendered file(s) and the commands; change nothing.' }),
    init: Flags.option({
      options: ['systemd', 'launchd'] as const,
      description: 'Service manager to install into (default: a running systemd user manager, else launchd on macOS).',
    })(),
    'watchdog-sec': Flags.integer({
      min: 0,
      max: 3600,
      default: DEFAULT_WATCHDOG_SECONDS,
      description: 'systemd WatchdogSec: restart a daemon that stops pinging for this long (0: off).',
    }),
    'restart-sec': Flags.integer({
      min: 0,
      max: 3600,
      default: DEFAULT_RESTART_SECONDS,
      description: 'systemd RestartSec: pause before restarting a crashed daemon.',
    }),
  };

  async run(): Promise<ServiceActionResult> {
    const flags = this.flags;
    const dryRun = flags['dry-run'];
    if (flags.profile !== undefined) validateProfileName(flags.profile);
    let init: InitSystem | undefined = flags.init;
    if (init === undefined) {
      // A dry run only prints: fall back to the platform's manager when none answers.
      init = dryRun
        ? await detectInitSystem().catch(() => platformInitSystem() ?? 'systemd')
        : await detectInitSystem();
    }
    if (flags.linger && init !== 'systemd') throw new InputError('--linger applies to systemd only');
    // After detection: a machine without a service manager gets no profile created as a side effect.
    const { name, shutdownGrace } = this.profileToInstall(dryRun);
    const common = {
      nodePath: process.execPath,
      cliPath: droverCliPath(),
      droverHome: process.env.DROVER_HOME ? path.resolve(process.env.DROVER_HOME) : null,
      droverVersion: droverPackage().version,
    };
    const notify = init === 'systemd' ? await notifyPlan() : null;
    const result =
      init === 'systemd'
        ? await installSystemdService({
            profile: name,
            unit: {
              ...common,
              notifyAccess: notify!.notifyAccess,
              environment: notify!.environment,
              shutdownGraceSeconds: shutdownGrace,
              watchdogSeconds: flags['watchdog-sec'],
              restartSeconds: flags['restart-sec'],
            },
            enable: flags.enable,
            now: flags.now,
            linger: flags.linger,
            dryRun,
          })
        : await installLaunchdAgent({
            profile: name,
            plist: { ...common, logDir: logDir(name), exitTimeOut: stopTimeoutSeconds(shutdownGrace) },
            enable: flags.enable,
            now: flags.now,
            dryRun,
          });
    if (notify?.note) result.notes.push(notify.note);
    if (!this.jsonEnabled()) {
      for (const w of result.warnings) this.logToStderr(`Warning: ${w}`);
      this.log(formatServiceAction(result));
    }
    return result;
  }

  /**
   * The profile and its shutdown grace. A real install creates the default profile on first use,
   * like every command; a dry run creates nothing and uses the defaults for a profile that would
   * be created.
   */
  private profileToInstall(dryRun: boolean): { name: string; shutdownGrace: number } {
    if (!dryRun) {
      const p = this.resolveProfile();
      return { name: p.name, shutdownGrace: p.options['daemon.shutdown_grace'] };
    }
    try {
      const p = this.resolveProfile(false);
      return { name: p.name, shutdownGrace: p.options['daemon.shutdown_grace'] };
    } catch (err) {
      if (!(err instanceof ProfileNotFoundError) || fs.existsSync(configFilePath())) throw err;
      const name = validateProfileName(this.flags.profile ?? 'default');
      return { name, shutdownGrace: OPTION_SPECS.get('daemon.shutdown_grace')!.default as number };
    }
  }
}

/**
 * How the daemon will notify systemd (the unit is Type=notify): through the native sd-notify
 * module when it loads here (`NotifyAccess=main`), else through the systemd-notify program
 * (`NotifyAccess=all`: its messages come from another process of the unit). `DROVER_SD_NOTIFY`
 * and `DROVER_SYSTEMD_NOTIFY`, when set, are passed on to the daemon, so it uses what the unit was
 * rendered for.
 */
async function notifyPlan(): Promise<{
  notifyAccess: 'main' | 'all';
  environment: Record<string, string>;
  note: string | null;
}> {
  const { requestedNotifyMethod, sdNotifyAddonProblem, systemdNotifyProgram } = await import('../../api/daemon.js');
  let requested;
  try {
    requested = requestedNotifyMethod();
  } catch (err) {
    throw new InputError((err as Error).message);
  }
  const environment: Record<string, string> = {};
  for (const k of ['DROVER_SD_NOTIFY', 'DROVER_SYSTEMD_NOTIFY']) if (process.env[k]) environment[k] = process.env[k]!;
  if (requested === 'systemd-notify') {
    return { notifyAccess: 'all', environment, note: `the daemon notifies systemd through ${systemdNotifyProgram()}` };
  }
  const problem = sdNotifyAddonProblem();
  if (problem === null) return { notifyAccess: 'main', environment, note: null };
  if (requested === 'addon') {
    throw new InputError(
      `DROVER_SD_NOTIFY=addon, but the sd-notify module is not available (${problem}); install libsystemd-dev ` +
        '(apt-get install libsystemd-dev) and run `npm rebuild sd-notify`, or unset DROVER_SD_NOTIFY',
    );
  }
  return {
    notifyAccess: 'all',
    environment,
    note:
      `the sd-notify module is not available (${problem}), so the daemon notifies systemd through ` +
      `${systemdNotifyProgram()} and the unit says NotifyAccess=all; after building it (libsystemd-dev, ` +
      '`npm rebuild sd-notify`) install again for NotifyAccess=main',
  };
}
