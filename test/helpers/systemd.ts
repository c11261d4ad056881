/**
 * A REAL systemd user manager for tests, in a private mount namespace (needs root, `unshare`,
 * `nsenter` and systemd; the tests run as root on CI).
 *
 * How: `unshare --mount --propagation private` starts a small holder process that mounts a tmpfs
 * on /run/systemd and creates /run/systemd/system (so tools believe systemd runs, without
 * touching the host's /run), then waits on its stdin. `systemd --user` is started inside that
 * namespace with a fresh HOME and a fresh 0700 XDG_RUNTIME_DIR. The session bus comes from the
 * manager's own dbus.socket (as on a real login) or, when the distribution has none, from a
 * dbus-daemon the harness starts. Commands run inside with `nsenter -t <holder> -m` and the
 * manager's environment, so `systemctl --user`, `busctl --user` and `drover daemon install` talk
 * to this manager only.
 *
 * Only one manager runs at a time (they would share the cgroup tree): mocha runs files one after
 * another, and every test file stops its manager in `after`. `stop()` SIGTERMs the manager (which
 * stops its units), then SIGKILLs every process still in the namespace, ends the holder and
 * removes the temp dirs; an exit hook does the same if a test run dies half-way.
 *
 * Usage:
 * ```ts
 * let um: UserManager;
 * before(async function () { um = await requireUserManager(this); });
 * after(() => um?.stop());
 * it('...', async () => { const r = await um.systemctl('is-enabled', 'drover@x.service'); });
 * ```
 * A daemon started by the manager needs the unit's DROVER_HOME: install with
 * `um.drover(['daemon', 'install', '--enable'], { DROVER_HOME })`, then `um.systemctl('start', unit)`.
 *
 * Journal: with `{ journal: true }` the harness also runs `systemd-journald` inside the namespace
 * (before the manager, like a boot would), with tmpfs mounts on /run/log and /var/log/journal so
 * nothing reaches the host's journal. Units' stdout then goes to that journald (JOURNAL_STREAM set,
 * `<N>` prefixes parsed into priorities) and `um.journal(unit)` reads it back. Without it, a
 * unit's stdout goes nowhere (systemd falls back to /dev/null when no journald listens). journald
 * outlives restart() (it is a system service, not part of a login) and is stopped by stop().
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { CLI, requireService, waitUntil } from './env.js';

/** Outcome of a command run inside the namespace. */
export interface NsResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** A running systemd user manager; see the module comment. */
export interface UserManager {
  /** PID of the current `systemd --user` (changes on restart). */
  readonly pid: number;
  /** HOME of the fake user (the unit dir is `<home>/.config/systemd/user`). */
  readonly home: string;
  /** XDG_RUNTIME_DIR of the manager (0700). */
  readonly runtimeDir: string;
  /** `<home>/.config/systemd/user`. */
  readonly unitDir: string;
  /** Variables a command needs to reach this manager: HOME, XDG_*, DBUS_SESSION_BUS_ADDRESS. */
  readonly env: Readonly<Record<string, string>>;
  /** Runs `cmd args` inside the namespace with `process.env` + {@link env} + `extraEnv`. */
  run(cmd: string, args: readonly string[], extraEnv?: NodeJS.ProcessEnv, timeoutMs?: number): Promise<NsResult>;
  /** `systemctl --user ARGS` inside the namespace. */
  systemctl(...args: string[]): Promise<NsResult>;
  /** `node bin/drover.js ARGS` inside the namespace. */
  drover(args: readonly string[], extraEnv?: NodeJS.ProcessEnv): Promise<NsResult>;
  /** True when a journald runs in the namespace (started with `{ journal: true }`). */
  readonly journald: boolean;
  /**
   * Entries of a user unit in the namespace's journal, oldest first, as journalctl's JSON objects
   * (`MESSAGE`, `PRIORITY`, `_PID`, ...), from `journalctl --user-unit UNIT -o json`.
   * @throws when no journald runs (see `journald`).
   */
  journal(unit: string): Promise<Array<Record<string, unknown>>>;
  /** Spawns a long-running command inside the namespace (the caller ends it). */
  spawn(cmd: string, args: readonly string[], extraEnv?: NodeJS.ProcessEnv): ChildProcess;
  /** Stops the manager and starts a new one with the same HOME (a new login: runtime dir emptied). */
  restart(): Promise<void>;
  /** Stops everything and removes the temp dirs. Safe to call twice. */
  stop(): Promise<void>;
}

const SYSTEMD_CANDIDATES = ['/usr/lib/systemd/systemd', '/lib/systemd/systemd'];
const JOURNALD_CANDIDATES = ['/usr/lib/systemd/systemd-journald', '/lib/systemd/systemd-journald'];
const DBUS_SOCKET_UNITS = [
  '/usr/lib/systemd/user/dbus.socket',
  '/lib/systemd/user/dbus.socket',
  '/etc/systemd/user/dbus.socket',
];

function which(cmd: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

let unavailable: string | null | undefined;

/** Why a journald cannot be run in the namespace, or null when it can. */
export function journaldUnavailableReason(): string | null {
  if (userManagerUnavailableReason() !== null) return userManagerUnavailableReason();
  if (!JOURNALD_CANDIDATES.some((p) => fs.existsSync(p))) return 'systemd-journald is not installed';
  if (which('journalctl') === null) return 'journalctl is not on PATH';
  return null;
}

/** Options of {@link startUserManager}. */
export interface UserManagerOptions {
  /** Also run a systemd-journald in the namespace (see the module comment). */
  journal?: boolean;
}

/** Why a user manager cannot be started here, or null when it can. */
export function userManagerUnavailableReason(): string | null {
  if (unavailable !== undefined) return unavailable;
  unavailable = (() => {
    if (process.platform !== 'linux') return `systemd user manager tests need Linux (this is ${process.platform})`;
    if (process.getuid?.() !== 0) return 'systemd user manager tests need root (for unshare --mount)';
    for (const cmd of ['unshare', 'nsenter', 'systemctl', 'mount']) {
      if (which(cmd) === null) return `systemd user manager tests need \`${cmd}\` (not on PATH)`;
    }
    if (!SYSTEMD_CANDIDATES.some((p) => fs.existsSync(p)))
      return 'systemd is not installed (no /usr/lib/systemd/systemd)';
    const r = spawnSync('unshare', ['--mount', '--propagation', 'private', 'true'], { encoding: 'utf8' });
    if (r.status !== 0) return `unshare --mount is not permitted here: ${r.stderr.trim()}`;
    if (!DBUS_SOCKET_UNITS.some((p) => fs.existsSync(p)) && which('dbus-daemon') === null) {
      return 'no session bus: neither a dbus.socket user unit nor dbus-daemon is installed';
    }
    return null;
  })();
  return unavailable;
}

const active = new Set<Harness>();
let exitHookInstalled = false;

function pidsInMountNamespace(holderPid: number): number[] {
  let ns: string;
  try {
    ns = fs.readlinkSync(`/proc/${holderPid}/ns/mnt`);
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === holderPid || pid === process.pid) continue;
    try {
      if (fs.readlinkSync(`/proc/${pid}/ns/mnt`) === ns) out.push(pid);
    } catch {
      // Gone already, or not ours to look at.
    }
  }
  return out;
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function waitExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (exited(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), timeoutMs);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

/** Keeps the last `max` bytes of a stream, for error messages. */
function tail(stream: NodeJS.ReadableStream | null, max = 8000): () => string {
  let buf = '';
  stream?.on('data', (d: Buffer) => {
    buf = (buf + d.toString()).slice(-max);
  });
  return () => buf;
}

class Harness implements UserManager {
  private holder!: ChildProcess;
  private manager: ChildProcess | null = null;
  private managerOutput: () => string = () => '';
  private ownBus: ChildProcess | null = null;
  private journaldProc: ChildProcess | null = null;
  private stopped = false;
  readonly home: string;
  readonly runtimeDir: string;
  readonly unitDir: string;
  readonly env: Readonly<Record<string, string>>;

  constructor(
    private readonly base: string,
    private readonly opts: UserManagerOptions = {},
  ) {
    this.home = path.join(base, 'home');
    this.runtimeDir = path.join(base, 'run');
    fs.mkdirSync(this.home, { mode: 0o700 });
    fs.mkdirSync(this.runtimeDir, { mode: 0o700 });
    const config = path.join(this.home, '.config');
    this.unitDir = path.join(config, 'systemd', 'user');
    this.env = {
      HOME: this.home,
      XDG_RUNTIME_DIR: this.runtimeDir,
      XDG_CONFIG_HOME: config,
      DBUS_SESSION_BUS_ADDRESS: `unix:path=${path.join(this.runtimeDir, 'bus')}`,
    };
  }

  get pid(): number {
    return this.manager?.pid ?? -1;
  }

  get journald(): boolean {
    return this.journaldProc !== null && !exited(this.journaldProc);
  }

  async startHolder(): Promise<void> {
    const script = [
      'set -e',
      'mkdir -p /run/systemd',
      'mount -t tmpfs -o mode=0755 drover-test /run/systemd',
      'mkdir /run/systemd/system',
      ...(this.opts.journal
        ? [
            // The journal lives on tmpfs in here: the host's journal never sees the tests.
            'mkdir -p /run/log',
            'mount -t tmpfs -o mode=0755 drover-test /run/log',
            'if [ -d /var/log/journal ]; then mount -t tmpfs -o mode=2755 drover-test /var/log/journal; fi',
          ]
        : []),
      'echo ready',
      // Lives until the harness closes its stdin (or the test process dies).
      'exec cat >/dev/null',
    ].join('\n');
    this.holder = spawn('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', script], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const err = tail(this.holder.stderr);
    await new Promise<void>((resolve, reject) => {
      let out = '';
      this.holder.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('ready')) resolve();
      });
      this.holder.once('exit', (code) => reject(new Error(`namespace holder exited (${code}): ${err()}`)));
      this.holder.once('error', reject);
    });
  }

  /** The environment of the manager itself: what a login session would give it, nothing more. */
  private managerEnv(): NodeJS.ProcessEnv {
    return {
      PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      LANG: process.env.LANG ?? 'C.UTF-8',
      USER: os.userInfo().username,
      LOGNAME: os.userInfo().username,
      SHELL: '/bin/sh',
      ...this.env,
    };
  }

  private nsArgs(cmd: string, args: readonly string[]): string[] {
    return ['-t', String(this.holder.pid), '-m', '--', cmd, ...args];
  }

  /**
   * The cgroup directories (one per hierarchy systemd tracks with) the manager runs in with a
   * journal: `<test slice>/user@UID.service/init.scope`, as logind places a real user manager.
   * journald derives `_SYSTEMD_USER_UNIT` (what `journalctl --user -u` matches) only from such a
   * path; elsewhere a user unit's lines would be filed as a system unit's. The slice is named after
   * this test process, never the real `user-UID.slice`. Empty when the hierarchy is not found.
   */
  private managerCgroups(): string[] {
    const rel = path.join(this.cgroupSlice(), `user@${process.getuid?.() ?? 0}.service`, 'init.scope');
    const roots = fs.existsSync('/sys/fs/cgroup/cgroup.controllers')
      ? ['/sys/fs/cgroup'] // unified
      : ['/sys/fs/cgroup/systemd', '/sys/fs/cgroup/unified'].filter((d) => fs.existsSync(path.join(d, 'cgroup.procs')));
    return roots.map((r) => path.join(r, rel));
  }

  private cgroupSlice(): string {
    return `drover-test-${process.pid}.slice`;
  }

  /** Removes the (empty) cgroups of {@link managerCgroups}, deepest first. */
  private removeCgroups(): void {
    for (const dir of this.managerCgroups()) {
      const top = dir.slice(0, dir.indexOf(this.cgroupSlice()) + this.cgroupSlice().length);
      const rmTree = (d: string): void => {
        let entries: fs.Dirent[] = [];
        try {
          entries = fs.readdirSync(d, { withFileTypes: true });
        } catch {
          return;
        }
        for (const e of entries) if (e.isDirectory()) rmTree(path.join(d, e.name));
        try {
          fs.rmdirSync(d);
        } catch {
          // Still has a process (it is being killed) or already gone.
        }
      };
      rmTree(top);
    }
  }

  /** Starts systemd-journald in the namespace and waits for its stdout socket. */
  async startJournald(): Promise<void> {
    const journald = JOURNALD_CANDIDATES.find((p) => fs.existsSync(p))!;
    const proc = spawn('nsenter', this.nsArgs(journald, []), {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.journaldProc = proc;
    const err = tail(proc.stderr);
    // /proc/PID/root resolves paths in the holder's mount namespace.
    const socket = `/proc/${this.holder.pid}/root/run/systemd/journal/stdout`;
    await waitUntil(
      () => {
        if (exited(proc)) throw new Error(`systemd-journald exited (${proc.exitCode}): ${err()}`);
        return fs.existsSync(socket);
      },
      10_000,
      'systemd-journald to listen',
    );
  }

  async journal(unit: string): Promise<Array<Record<string, unknown>>> {
    if (!this.journald) throw new Error('no journald runs in this namespace: start the manager with { journal: true }');
    // `--user-unit`, not `--user -u`: root's entries go to the system journal file (uids below
    // 1000 get no per-user file), which `journalctl --user` does not open. For a regular user both
    // find the same entries.
    const r = await this.run('journalctl', ['--user-unit', unit, '-o', 'json', '--no-pager'], {}, 30_000);
    if (r.status !== 0) throw new Error(`journalctl failed (${r.status}): ${r.stderr}`);
    return r.stdout
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  async startManager(): Promise<void> {
    if (!DBUS_SOCKET_UNITS.some((p) => fs.existsSync(p))) {
      // No socket-activated bus in this distribution: run one ourselves, like a login would.
      const bus = path.join(this.runtimeDir, 'bus');
      this.ownBus = spawn(
        'nsenter',
        this.nsArgs('dbus-daemon', ['--session', `--address=unix:path=${bus}`, '--nofork', '--nopidfile']),
        { env: this.managerEnv(), stdio: 'ignore' },
      );
      await waitUntil(() => fs.existsSync(bus), 10_000, 'dbus-daemon to listen');
    }
    const systemd = SYSTEMD_CANDIDATES.find((p) => fs.existsSync(p))!;
    // With a journal, the manager logs there as on a real login: its messages about a unit
    // ("Watchdog timeout", "Main process exited") carry USER_UNIT= and show up in
    // `journalctl --user-unit` and `systemctl --user status`. Without one, to the console.
    const managerArgs = ['--user', `--log-target=${this.opts.journal ? 'journal' : 'console'}`];
    let argv = this.nsArgs(systemd, managerArgs);
    const cgroups = this.opts.journal ? this.managerCgroups() : [];
    if (cgroups.length > 0) {
      // Enter the manager's cgroup, then become systemd (same pid, so stop() still signals it).
      const enter = cgroups.map((d) => `mkdir -p '${d}' && echo $$ > '${d}/cgroup.procs'`).join(' && ');
      argv = this.nsArgs('sh', ['-c', `${enter} && exec "$0" "$@"`, systemd, ...managerArgs]);
    }
    const manager = spawn('nsenter', argv, {
      env: this.managerEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.manager = manager;
    const out = tail(manager.stdout);
    const err = tail(manager.stderr);
    this.managerOutput = () => out() + err();
    try {
      await waitUntil(
        async () => {
          if (exited(manager)) throw new Error(`systemd --user exited (${manager.exitCode}): ${this.managerOutput()}`);
          const r = await this.systemctl('is-system-running');
          return ['running', 'degraded'].includes(r.stdout.trim());
        },
        20_000,
        'the systemd user manager to come up',
        100,
      );
    } catch (e) {
      throw new Error(`${(e as Error).message}\nsystemd output:\n${this.managerOutput()}`);
    }
  }

  run(cmd: string, args: readonly string[], extraEnv: NodeJS.ProcessEnv = {}, timeoutMs = 60_000): Promise<NsResult> {
    return new Promise((resolve) => {
      const child = this.spawn(cmd, args, extraEnv);
      let stdout = '';
      let stderr = '';
      child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      const t = setTimeout(() => {
        stderr += `\n(killed after ${timeoutMs} ms)`;
        child.kill('SIGKILL');
      }, timeoutMs);
      child.on('close', (code) => {
        clearTimeout(t);
        resolve({ status: code ?? -1, stdout, stderr });
      });
    });
  }

  spawn(cmd: string, args: readonly string[], extraEnv: NodeJS.ProcessEnv = {}): ChildProcess {
    if (this.stopped) throw new Error('the user manager was stopped');
    return spawn('nsenter', this.nsArgs(cmd, args), {
      env: { ...process.env, ...this.env, ...extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  }

  systemctl(...args: string[]): Promise<NsResult> {
    return this.run('systemctl', ['--user', ...args], {}, 30_000);
  }

  drover(args: readonly string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<NsResult> {
    return this.run(process.execPath, [CLI, ...args], extraEnv);
  }

  /** Stops the manager (SIGTERM stops its units), then kills whatever is left in the namespace. */
  private async stopManager(): Promise<void> {
    const m = this.manager;
    this.manager = null;
    if (m && !exited(m)) {
      m.kill('SIGTERM');
      if (!(await waitExit(m, 15_000))) {
        m.kill('SIGKILL');
        await waitExit(m, 5_000);
      }
    }
    const bus = this.ownBus;
    this.ownBus = null;
    if (bus && !exited(bus)) bus.kill('SIGTERM');
    this.sweep(this.journaldProc?.pid);
    if (bus) await waitExit(bus, 5_000);
  }

  /** SIGKILLs every process in the namespace but the holder (and `spare`, the journald across a restart). */
  sweep(spare?: number): void {
    if (this.holder?.pid === undefined) return;
    for (let round = 0; round < 5; round++) {
      const pids = pidsInMountNamespace(this.holder.pid).filter((p) => p !== spare);
      if (pids.length === 0) return;
      for (const pid of pids) killQuietly(pid, 'SIGKILL');
      spawnSync('sleep', ['0.05']);
    }
  }

  async restart(): Promise<void> {
    await this.stopManager();
    // A new login starts with an empty runtime directory (logind removes it at logout).
    for (const e of fs.readdirSync(this.runtimeDir))
      fs.rmSync(path.join(this.runtimeDir, e), { recursive: true, force: true });
    await this.startManager();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.stopManager();
    const jd = this.journaldProc;
    if (jd && !exited(jd)) {
      jd.kill('SIGTERM');
      if (!(await waitExit(jd, 5_000))) jd.kill('SIGKILL');
    }
    this.sweep();
    if (this.opts.journal) this.removeCgroups();
    if (this.holder && !exited(this.holder)) {
      this.holder.stdin?.end();
      if (!(await waitExit(this.holder, 5_000))) {
        this.holder.kill('SIGKILL');
        await waitExit(this.holder, 5_000);
      }
    }
    active.delete(this);
    fs.rmSync(this.base, { recursive: true, force: true });
  }

  /** Synchronous last resort from the process exit hook. */
  killNow(): void {
    if (this.manager?.pid !== undefined) killQuietly(this.manager.pid, 'SIGKILL');
    this.sweep();
    if (this.holder?.pid !== undefined) killQuietly(this.holder.pid, 'SIGKILL');
    try {
      fs.rmSync(this.base, { recursive: true, force: true });
    } catch {
      // Best effort at exit.
    }
  }
}

/**
 * Starts a systemd user manager in a private mount namespace.
 * @throws when one is already running in this process, or when it does not come up.
 */
export async function startUserManager(opts: UserManagerOptions = {}): Promise<UserManager> {
  const reason = opts.journal ? journaldUnavailableReason() : userManagerUnavailableReason();
  if (reason !== null) throw new Error(reason);
  if (active.size > 0) throw new Error('a systemd user manager is already running in this test process; stop it first');
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const h of active) h.killNow();
    });
  }
  const h = new Harness(fs.mkdtempSync(path.join(os.tmpdir(), 'drover-um-')), opts);
  active.add(h);
  try {
    await h.startHolder();
    if (opts.journal) await h.startJournald();
    await h.startManager();
  } catch (err) {
    await h.stop();
    throw err;
  }
  return h;
}

/**
 * Starts a user manager, or skips the calling test/suite (fails under CI=true) with the reason
 * it cannot run here. Call from a `before` hook.
 */
export async function requireUserManager(ctx: Mocha.Context, opts: UserManagerOptions = {}): Promise<UserManager> {
  const reason = opts.journal ? journaldUnavailableReason() : userManagerUnavailableReason();
  requireService(ctx, reason === null, reason ?? '');
  return startUserManager(opts);
}
