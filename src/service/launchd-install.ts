/**
 * Installs and uninstalls a profile's launchd LaunchAgent with the modern `launchctl` verbs on the
 * `gui/$UID` domain (`bootstrap`, `bootout`, `enable`, `kickstart`), never the legacy
 * `load`/`unload`, whose failures are silent.
 *
 * Install writes `~/Library/LaunchAgents/<label>.plist`; launchd loads every agent there at the
 * next login (RunAtLoad then starts it). `--enable` runs `launchctl enable` (clears an earlier
 * `launchctl disable`, which would keep it from loading); `--now` replaces a loaded copy
 * (`bootout`, not-loaded ignored) and loads it (`bootstrap`), which starts it. `enable` goes
 * before `bootstrap` because launchd refuses to bootstrap a disabled service.
 *
 * The launchctl program is `DROVER_LAUNCHCTL` or the `launchctl` option when set (tests use a stub
 * that records its argv), else `launchctl` on PATH.
 *
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomicSync, ensurePrivateDir } from '../util/fs.js';
import { validateProfileName } from '../config/profile-name.js';
import { renderLaunchdPlist, type LaunchdPlistOptions } from './launchd.js';
import { launchdLabel, launchdPlistPath } from './unit-paths.js';
import {
  execRunner,
  runStep,
  shellCommand,
  type CommandRecord,
  type CommandResult,
  type CommandRunner,
  type FileAction,
  type ServiceActionResult,
} from './runner.js';

export { launchAgentsDir, launchdPlistPath } from './unit-paths.js';

/** The launchctl program: `opts.launchctl`, else env `DROVER_LAUNCHCTL`, else `launchctl`. */
export function launchctlProgram(opts: { launchctl?: string; env?: NodeJS.ProcessEnv } = {}): string {
  return opts.launchctl ?? ((opts.env ?? process.env).DROVER_LAUNCHCTL || 'launchctl');
}

/** The user's GUI domain, `gui/<uid>`. */
export function launchdDomain(uid?: number): string {
  const id = uid ?? (typeof process.getuid === 'function' ? process.getuid() : 501);
  return `gui/${id}`;
}

/** The launchctl command lines that start, stop and restart a profile's agent. */
export interface LaunchdControl {
  label: string;
  plist: string;
  /** `launchctl bootstrap gui/UID PLIST` (loads and, with RunAtLoad, starts it). */
  bootstrap: string[];
  /** `launchctl bootout gui/UID/LABEL` (SIGTERM, ExitTimeOut, then unloaded). */
  bootout: string[];
  /** `launchctl kickstart -k gui/UID/LABEL` (restart a loaded agent). */
  restart: string[];
  /** `launchctl print gui/UID/LABEL` (exit 0 when loaded). */
  print: string[];
  /** `launchctl enable gui/UID/LABEL`. */
  enable: string[];
}

/** The launchctl command lines for a profile. */
export function launchdControl(
  profile: string,
  opts: { launchctl?: string; env?: NodeJS.ProcessEnv; uid?: number } = {},
): LaunchdControl {
  const env = opts.env ?? process.env;
  const l = launchctlProgram(opts);
  const label = launchdLabel(profile);
  const domain = launchdDomain(opts.uid);
  const target = `${domain}/${label}`;
  const plist = launchdPlistPath(profile, env);
  return {
    label,
    plist,
    bootstrap: [l, 'bootstrap', domain, plist],
    bootout: [l, 'bootout', target],
    restart: [l, 'kickstart', '-k', target],
    print: [l, 'print', target],
    enable: [l, 'enable', target],
  };
}

/** Options of {@link installLaunchdAgent}. */
export interface LaunchdInstallOptions {
  profile: string;
  /** What the plist runs; `profile` and `label` are filled in. */
  plist: Omit<LaunchdPlistOptions, 'profile' | 'label'>;
  enable?: boolean;
  now?: boolean;
  dryRun?: boolean;
  env?: NodeJS.ProcessEnv;
  run?: CommandRunner;
  launchctl?: string;
  uid?: number;
}

/**
 * Treats a failed `bootout` as fine when `launchctl print` says the agent is not loaded (bootout's
 * own exit codes for "not loaded" differ between macOS versions: 3, 5, 113).
 */
function notLoaded(
  run: CommandRunner,
  ctl: LaunchdControl,
  log: CommandRecord[],
): (r: CommandResult) => Promise<string | null> {
  return async () => {
    const p = await run(ctl.print[0]!, ctl.print.slice(1));
    log.push({ argv: ctl.print, status: p.status, ...(p.status === 0 ? {} : { ignored: 'probe: not loaded' }) });
    return p.status === 0 ? null : 'not loaded';
  };
}

/**
 * Installs the profile's LaunchAgent: writes the plist (0644, atomically), creates the log
 * directory (0700), and with `now`/`enable` runs bootout (not-loaded ignored), enable, bootstrap.
 */
export async function installLaunchdAgent(opts: LaunchdInstallOptions): Promise<ServiceActionResult> {
  validateProfileName(opts.profile);
  const env = opts.env ?? process.env;
  const run = opts.run ?? execRunner(env);
  const ctl = launchdControl(opts.profile, { launchctl: opts.launchctl, env, uid: opts.uid });
  const text = renderLaunchdPlist({ ...opts.plist, profile: opts.profile, label: ctl.label });
  const plan: string[][] = [];
  if (opts.now) plan.push(ctl.bootout);
  if (opts.enable || opts.now) plan.push(ctl.enable);
  if (opts.now) plan.push(ctl.bootstrap);
  const result: ServiceActionResult = {
    init: 'launchd',
    action: 'install',
    profile: opts.profile,
    unit: ctl.label,
    dryRun: opts.dryRun === true,
    files: [{ path: ctl.plist, action: 'write', content: text, reason: `LaunchAgent of profile '${opts.profile}'` }],
    commands: plan.map((argv) => ({ argv })),
    manualCommands: plan.map(shellCommand),
    warnings: [],
    notes: [],
  };
  if (!opts.now) {
    result.notes.push(
      `launchd loads it at your next login; load and start it now with: ${shellCommand(ctl.bootstrap)}`,
    );
  }
  result.notes.push(`restart it with: ${shellCommand(ctl.restart)}; inspect it with: ${shellCommand(ctl.print)}`);
  if (opts.dryRun) return result;

  fs.mkdirSync(path.dirname(ctl.plist), { recursive: true, mode: 0o755 });
  ensurePrivateDir(opts.plist.logDir);
  // launchd reads agents as the user; a plist holds no secret, so 0644 like any agent.
  writeFileAtomicSync(ctl.plist, text, 0o644);
  const log: CommandRecord[] = [];
  result.commands = log;
  for (const argv of plan) await runStep(run, log, argv, argv === ctl.bootout ? notLoaded(run, ctl, log) : undefined);
  return result;
}

/** Options of {@link uninstallLaunchdAgent}. */
export interface LaunchdUninstallOptions {
  profile: string;
  dryRun?: boolean;
  env?: NodeJS.ProcessEnv;
  run?: CommandRunner;
  launchctl?: string;
  uid?: number;
}

/** Uninstalls the profile's LaunchAgent: `bootout` (not-loaded ignored), then removes the plist. */
export async function uninstallLaunchdAgent(opts: LaunchdUninstallOptions): Promise<ServiceActionResult> {
  validateProfileName(opts.profile);
  const env = opts.env ?? process.env;
  const run = opts.run ?? execRunner(env);
  const ctl = launchdControl(opts.profile, { launchctl: opts.launchctl, env, uid: opts.uid });
  const exists = fs.existsSync(ctl.plist);
  const files: FileAction[] = exists ? [{ path: ctl.plist, action: 'remove', reason: 'LaunchAgent plist' }] : [];
  const result: ServiceActionResult = {
    init: 'launchd',
    action: 'uninstall',
    profile: opts.profile,
    unit: ctl.label,
    dryRun: opts.dryRun === true,
    files,
    commands: [{ argv: ctl.bootout }],
    manualCommands: [shellCommand(ctl.bootout), ...(exists ? [shellCommand(['rm', '-f', ctl.plist])] : [])],
    warnings: [],
    notes: exists ? [] : [`nothing was installed for profile '${opts.profile}' (${ctl.plist})`],
  };
  if (opts.dryRun) return result;
  const log: CommandRecord[] = [];
  result.commands = log;
  await runStep(run, log, ctl.bootout, notLoaded(run, ctl, log));
  fs.rmSync(ctl.plist, { force: true });
  return result;
}
