/**
 * Which service manager supervises a profile's daemon, and how to drive it: what the client
 * needs to delegate start/stop/restart to `systemctl --user` or `launchctl`, and what `daemon
 * status` needs to warn about an installed unit that points at a node or CLI that is gone.
 *
 * Deliberately light: node builtins, the profile-name check and the pure renderers/parsers of
 * this folder; {@link installedSupervisor} and {@link isUnitInstalled} only look at files (no
 * process is run), so a client may call them on every command.
 *
 * A profile's systemd service counts as installed when the shared template exists and the
 * profile has its drop-in (written by `drover daemon install`) or an enablement link. A unit whose
 * DROVER_HOME differs from the caller's serves another configuration, so it is not used for
 * delegation (a test with its own DROVER_HOME never drives the user's real daemon).
 *
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';
import { ServiceError } from '../errors/index.js';
import { validateProfileName } from '../config/profile-name.js';
import { runtimeDir } from '../config/paths.js';
import { OPTION_SPECS } from '../config/options.js';
import { isProcessAlive } from '../util/proc.js';
import { DEFAULT_STOP_MARGIN_SECONDS, parseUnitPaths, type UnitPaths } from './systemd.js';
import { parsePlistPaths } from './launchd.js';
import { systemdUnitFiles, systemdUserManagerState, noSystemdManagerError } from './systemd-install.js';
import { launchdControl } from './launchd-install.js';
import { execRunner, type CommandRunner } from './runner.js';

/** The service managers drover can install into. */
export type InitSystem = 'systemd' | 'launchd';

/**
 * Picks the service manager: a reachable systemd user manager, else launchd on macOS.
 * @throws ServiceError explaining what was looked for when neither is there.
 */
export async function detectInitSystem(
  opts: { env?: NodeJS.ProcessEnv; run?: CommandRunner; platform?: NodeJS.Platform; systemctl?: string } = {},
): Promise<InitSystem> {
  const env = opts.env ?? process.env;
  const platform = opts.platform ?? process.platform;
  if (platform !== 'darwin') {
    const state = await systemdUserManagerState({ env, run: opts.run ?? execRunner(env), systemctl: opts.systemctl });
    if (state.available) return 'systemd';
    if (platform === 'linux') throw noSystemdManagerError(state.state, env);
  }
  if (platform === 'darwin') return 'launchd';
  throw new ServiceError(
    `no supported service manager on ${platform}: drover installs systemd user units or launchd agents`,
  );
}

/** The service manager files are looked for on this platform (no process is run). */
export function platformInitSystem(platform: NodeJS.Platform = process.platform): InitSystem | null {
  if (platform === 'darwin') return 'launchd';
  if (platform === 'linux') return 'systemd';
  return null;
}

function readFile(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

function hasEnableLink(dir: string, unit: string): boolean {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return false;
  }
  return entries.some(
    (e) => e.isDirectory() && /\.(wants|requires)$/.test(e.name) && lexists(path.join(dir, e.name, unit)),
  );
}

function lexists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/** An installed unit or plist: where it is and what it runs. */
export interface InstalledUnitPaths extends UnitPaths {
  kind: InitSystem;
  /** The template unit or the plist. */
  unitFile: string;
}

interface Located {
  kind: InitSystem;
  unit: string;
  unitFile: string;
  installed: boolean;
  text: string | null;
}

function locate(profile: string, env: NodeJS.ProcessEnv, platform: NodeJS.Platform): Located | null {
  validateProfileName(profile);
  const kind = platformInitSystem(platform);
  if (kind === 'systemd') {
    const f = systemdUnitFiles(profile, env);
    const text = readFile(f.template);
    const marked = lexists(f.dropIn) || hasEnableLink(f.dir, f.unit);
    return { kind, unit: f.unit, unitFile: f.template, installed: text !== null && marked, text };
  }
  if (kind === 'launchd') {
    const c = launchdControl(profile, { env });
    const text = readFile(c.plist);
    return { kind, unit: c.label, unitFile: c.plist, installed: text !== null, text };
  }
  return null;
}

function parsePaths(loc: Located): UnitPaths {
  if (loc.text === null) throw new ServiceError(`${loc.unitFile} does not exist`);
  return loc.kind === 'systemd' ? parseUnitPaths(loc.text, loc.unitFile) : parsePlistPaths(loc.text, loc.unitFile);
}

/** Whether the profile's unit (systemd) or agent (launchd) is installed. Looks at files only. */
export function isUnitInstalled(
  profile: string,
  env: NodeJS.ProcessEnv = process.env,
  platform: NodeJS.Platform = process.platform,
): boolean {
  return locate(profile, env, platform)?.installed ?? false;
}

/**
 * The node and CLI paths (and DROVER_HOME) the profile's installed unit or plist runs, or null
 * when none is installed. For systemd this is the shared template.
 * @throws ServiceError when the file exists but cannot be understood.
 */
export function installedUnitPaths(
  profile: string,
  env: NodeJS.ProcessEnv = process.env,
  platform: NodeJS.Platform = process.platform,
): InstalledUnitPaths | null {
  const loc = locate(profile, env, platform);
  if (!loc || loc.text === null) return null;
  return { kind: loc.kind, unitFile: loc.unitFile, ...parsePaths(loc) };
}

function sameHome(a: string | null | undefined, b: string | null | undefined): boolean {
  const norm = (p: string | null | undefined): string | null => (p ? path.resolve(p) : null);
  return norm(a) === norm(b);
}

/** What a client needs to let the OS supervise a profile's daemon. */
export interface InstalledSupervisor {
  kind: InitSystem;
  /** `drover@<escaped>.service` or the launchd label. */
  unit: string;
  unitFile: string;
  nodePath: string;
  cliPath: string;
  droverHome: string | null;
  /** Start the daemon; systemd: `systemctl --user start` (waits for READY=1). */
  start: string[];
  /** launchd only: what to run when `start` fails because the agent is not loaded (`bootstrap`). */
  startIfNotLoaded?: string[];
  /** Stop the daemon (SIGTERM, drain, then SIGKILL after the stop timeout). */
  stop: string[];
  /** Restart the daemon. */
  restart: string[];
}

/**
 * The service manager that supervises `profile`'s daemon for this caller, or null: nothing is
 * installed, or the installed unit runs with another DROVER_HOME than `env` (it serves another
 * configuration). Looks at files only; cheap enough for every client call.
 */
export function installedSupervisor(
  profile: string,
  env: NodeJS.ProcessEnv = process.env,
  opts: { platform?: NodeJS.Platform; systemctl?: string; launchctl?: string; uid?: number } = {},
): InstalledSupervisor | null {
  const loc = locate(profile, env, opts.platform ?? process.platform);
  if (!loc || !loc.installed) return null;
  let paths: UnitPaths;
  try {
    paths = parsePaths(loc);
  } catch {
    return null;
  }
  if (!sameHome(paths.droverHome, env.DROVER_HOME)) return null;
  const base = { kind: loc.kind, unit: loc.unit, unitFile: loc.unitFile, ...paths };
  if (loc.kind === 'systemd') {
    const sc = opts.systemctl ?? (env.DROVER_SYSTEMCTL || 'systemctl');
    return {
      ...base,
      start: [sc, '--user', 'start', loc.unit],
      stop: [sc, '--user', 'stop', loc.unit],
      restart: [sc, '--user', 'restart', loc.unit],
    };
  }
  const c = launchdControl(profile, { env, launchctl: opts.launchctl, uid: opts.uid });
  return {
    ...base,
    start: [c.restart[0]!, 'kickstart', c.restart[3]!],
    startIfNotLoaded: c.bootstrap,
    stop: c.bootout,
    restart: c.restart,
  };
}

/** Result of {@link checkInstalledUnit}. */
export interface InstalledUnitCheck {
  /** The service manager of this platform, or null (neither Linux nor macOS). */
  supervisor: InitSystem | null;
  installed: boolean;
  unit: string | null;
  unitFile: string | null;
  /** systemd: `is-enabled` says enabled; launchd: not reported. Absent without `probe`. */
  enabled?: boolean;
  /** systemd: `is-active` says active/activating/reloading; launchd: the agent is loaded. Absent without `probe`. */
  active?: boolean;
  /**
   * What the manager says: systemd's `is-active` word (`active`, `inactive`, `failed`, `activating`,
   * ...), launchd `loaded`/`not loaded`; absent without `probe` or when the manager did not answer.
   */
  state?: string;
  nodePath: string | null;
  cliPath: string | null;
  droverHome: string | null;
  /** Human-readable problems: missing node or CLI, another DROVER_HOME, an unreadable unit. */
  problems: string[];
}

function executable(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

/**
 * Checks the profile's installed unit or plist for `daemon status`: installed, enabled, active,
 * and problems (node or CLI path gone, as after a Node upgrade; another DROVER_HOME). With
 * `probe` false no process is run (no enabled/active).
 */
export async function checkInstalledUnit(
  profile: string,
  opts: {
    env?: NodeJS.ProcessEnv;
    run?: CommandRunner;
    platform?: NodeJS.Platform;
    probe?: boolean;
    systemctl?: string;
    launchctl?: string;
  } = {},
): Promise<InstalledUnitCheck> {
  const env = opts.env ?? process.env;
  const loc = locate(profile, env, opts.platform ?? process.platform);
  const out: InstalledUnitCheck = {
    supervisor: loc?.kind ?? null,
    installed: loc?.installed ?? false,
    unit: loc?.unit ?? null,
    unitFile: loc && loc.text !== null ? loc.unitFile : null,
    nodePath: null,
    cliPath: null,
    droverHome: null,
    problems: [],
  };
  if (!loc || !loc.installed) return out;
  try {
    const p = parsePaths(loc);
    out.nodePath = p.nodePath;
    out.cliPath = p.cliPath;
    out.droverHome = p.droverHome;
    const fix = 'run `drover daemon install` again';
    if (!executable(p.nodePath))
      out.problems.push(`${loc.unitFile} runs node ${p.nodePath}, which no longer exists; ${fix}`);
    if (!fs.existsSync(p.cliPath))
      out.problems.push(`${loc.unitFile} runs the CLI ${p.cliPath}, which no longer exists; ${fix}`);
    if (!sameHome(p.droverHome, env.DROVER_HOME)) {
      out.problems.push(
        `${loc.unitFile} runs the daemon with DROVER_HOME=${p.droverHome ?? '(unset)'}, but this shell has ` +
          `DROVER_HOME=${env.DROVER_HOME || '(unset)'}: it serves another configuration`,
      );
    }
  } catch (err) {
    out.problems.push((err as Error).message);
  }
  if (opts.probe === false) return out;
  const run = opts.run ?? execRunner(env, 10_000);
  if (loc.kind === 'systemd') {
    const sc = opts.systemctl ?? (env.DROVER_SYSTEMCTL || 'systemctl');
    const [en, ac] = await Promise.all([
      run(sc, ['--user', 'is-enabled', loc.unit]),
      run(sc, ['--user', 'is-active', loc.unit]),
    ]);
    out.enabled = /^(enabled|enabled-runtime|linked|linked-runtime|alias)$/.test(en.stdout.trim());
    out.active = /^(active|activating|reloading|refreshing)$/.test(ac.stdout.trim());
    if (/^[a-z-]+$/.test(ac.stdout.trim())) out.state = ac.stdout.trim();
  } else {
    const c = launchdControl(profile, { env, launchctl: opts.launchctl });
    out.active = (await run(c.print[0]!, c.print.slice(1))).status === 0;
    out.state = out.active ? 'loaded' : 'not loaded';
  }
  return out;
}

/**
 * Starts, stops or restarts a supervised daemon through its service manager and waits for the
 * command (systemd's `start` returns once the daemon sent READY=1 or failed).
 * @throws ServiceError quoting the command and its stderr when it fails.
 */
export async function runSupervisorAction(
  sup: InstalledSupervisor,
  action: 'start' | 'stop' | 'restart',
  run: CommandRunner = execRunner(),
): Promise<void> {
  const argv = sup[action];
  const r = await run(argv[0]!, argv.slice(1));
  if (r.status === 0) return;
  // launchd: kickstart fails when the agent is not loaded (after a bootout): load it instead.
  if (action === 'start' && sup.startIfNotLoaded) {
    const b = await run(sup.startIfNotLoaded[0]!, sup.startIfNotLoaded.slice(1));
    if (b.status === 0) return;
    throw new ServiceError(`\`${sup.startIfNotLoaded.join(' ')}\` failed (${b.status}): ${b.stderr.trim()}`);
  }
  // bootout of an agent that is not loaded: it is already stopped.
  if (action === 'stop' && sup.kind === 'launchd') {
    const label = sup.restart[sup.restart.length - 1]!;
    if ((await run(sup.restart[0]!, ['print', label])).status !== 0) return;
  }
  const hint = sup.kind === 'systemd' ? `; see \`systemctl --user status ${sup.unit}\`` : '';
  throw new ServiceError(`\`${argv.join(' ')}\` failed (${r.status}): ${r.stderr.trim()}${hint}`);
}

/**
 * A service manager in the shape the client's delegation seam expects (`ServiceManager` of
 * src/client/service-manager.ts, matched structurally: service may not import client).
 */
export interface SupervisorHandle {
  readonly kind: InitSystem;
  /** The unit or label, for messages. */
  readonly unit: string;
  start(options: { timeout: number }): Promise<void>;
  stop(options: { timeout: number }): Promise<void>;
  restart(options: { timeout: number }): Promise<void>;
}

/**
 * Name of the daemon's PID file in its runtime directory. Mirrors `DAEMON_PID_FILE` of
 * src/protocol (which service/ may not import); test/service checks that the two agree.
 */
export const DAEMON_PID_FILE_NAME = 'daemon.pid';

/** Whether a live daemon runs inside the profile's installed unit (see {@link daemonPlacement}). */
export type DaemonPlacement = 'none' | 'inside' | 'outside' | 'unknown';

/**
 * Where the profile's running daemon (per its PID file, start time checked) is relative to the
 * systemd unit `unit`: `none` (no live daemon), `inside` (its cgroup is the unit's), `outside`
 * (started by hand, e.g. `drover daemon start` before the unit was installed), `unknown` (no
 * /proc: macOS, or launchd). Reads two small files, runs nothing.
 */
export function daemonPlacement(profile: string, unit: string, env: NodeJS.ProcessEnv = process.env): DaemonPlacement {
  let pid: number;
  let start: string | undefined;
  try {
    const rec = JSON.parse(fs.readFileSync(path.join(runtimeDir(profile, env), DAEMON_PID_FILE_NAME), 'utf8')) as {
      pid?: unknown;
      start?: unknown;
    };
    if (typeof rec.pid !== 'number') return 'none';
    pid = rec.pid;
    start = typeof rec.start === 'string' ? rec.start : undefined;
  } catch {
    return 'none';
  }
  if (!isProcessAlive(pid, start)) return 'none';
  let cgroups: string;
  try {
    cgroups = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  } catch {
    return 'unknown';
  }
  // `0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-drover.slice/drover@p.service`
  // (cgroup v2; v1 also has a `name=systemd` line). systemd prefixes an `_` to some names.
  const inUnit = cgroups
    .split('\n')
    .map((line) => line.slice(line.indexOf(':', line.indexOf(':') + 1) + 1))
    .some((p) => p.split('/').some((part) => part === unit || part === `_${unit}`));
  return inUnit ? 'inside' : 'outside';
}

/**
 * The lookup the client needs (`ServiceManagerLookup`): the service manager supervising the
 * profile's daemon for this caller, or null. Null when nothing is installed, when the unit runs
 * with another DROVER_HOME, and when a daemon runs but *outside* the installed systemd unit
 * (started by hand before the unit was installed): `systemctl --user stop` would not stop that
 * one and `restart` would start a second daemon that exits 4, so the client talks to it directly
 * until it is gone. Only reads files; each call then runs `systemctl --user` / `launchctl`,
 * waiting at most the caller's timeout for `start` (plus a little, so systemd's own error arrives
 * first), and as long as the profile's drain may take for `stop` and `restart`.
 */
export function findInstalledServiceManager(
  profile: { name: string; options?: { readonly 'daemon.shutdown_grace'?: number } },
  env: NodeJS.ProcessEnv = process.env,
): SupervisorHandle | null {
  const sup = installedSupervisor(profile.name, env);
  if (sup === null) return null;
  if (sup.kind === 'systemd' && daemonPlacement(profile.name, sup.unit, env) === 'outside') return null;
  // `stop` (and the stop half of `restart`) returns only after the drain, which the manager bounds
  // by TimeoutStopSec (grace + margin, longer with EXTEND_TIMEOUT_USEC): the caller's timeout,
  // meant for one answer of the daemon, would kill systemctl half-way through a normal stop.
  const grace =
    profile.options?.['daemon.shutdown_grace'] ?? (OPTION_SPECS.get('daemon.shutdown_grace')!.default as number);
  const drain = grace + DEFAULT_STOP_MARGIN_SECONDS + 30;
  const budget = {
    start: (t: number) => t,
    stop: (t: number) => Math.max(t, drain),
    restart: (t: number) => t + drain,
  };
  const call = (action: 'start' | 'stop' | 'restart') => async (options: { timeout: number }) => {
    const ms = budget[action](Math.max(1, options.timeout)) * 1000 + 2000;
    await runSupervisorAction(sup, action, execRunner(env, ms));
  };
  return { kind: sup.kind, unit: sup.unit, start: call('start'), stop: call('stop'), restart: call('restart') };
}
