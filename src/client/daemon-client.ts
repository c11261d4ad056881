/**
 * DaemonClient: start, stop and query the daemon of a profile (the counterpart of AiiDA's
 * `DaemonClient`). It only talks to the daemon process, never to workers, the store or the broker,
 * so a status call stays fast.
 *
 * Every method that talks to the daemon takes `timeout` in seconds (default: the profile's
 * `daemon.timeout`) and fails with:
 * - `DaemonNotRunningException` at once when no daemon listens (no waiting for the timeout), and
 *   when the request races a daemon that is stopping or was just killed: its side resets or closes
 *   the connection without answering and the daemon process is gone (a read-only request such as
 *   `status` is asked again until it gets an answer, finds nobody listening, or runs out of time);
 * - `DaemonTimeoutException` when the daemon does not answer within the timeout;
 * - `DaemonAlreadyRunningException` when `startDaemon` finds it running;
 * - `DaemonException` for anything else (a refused request, a failed start, a connection dropped
 *   by a daemon that is still alive).
 *
 * @module
 */
import fs from 'node:fs';
import type { ChildProcess, spawn as SpawnFunction } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { resolveProfile, type Profile } from '../config/config.js';
import {
  DaemonAlreadyRunningException,
  DaemonException,
  DaemonNotRunningException,
  DaemonTimeoutException,
  InputError,
} from '../errors/index.js';
import {
  DAEMON_EXIT_ALREADY_RUNNING,
  MAX_WORKERS,
  parseDaemonPidFile,
  type ControlMethod,
  type ControlParams,
  type ControlResults,
  type DaemonFilePaths,
  type DaemonInfo,
  type DaemonPidFile,
  type DaemonStatus,
  type WorkerInfo,
} from '../protocol/control.js';
import { ensurePrivateDir } from '../util/fs.js';
import { isProcessAlive } from '../util/proc.js';
import { sleep } from '../util/deferred.js';
import { fileSize, readLastLines } from './log-file.js';
import { clientDaemonPaths } from './paths.js';
import { findServiceManager, type ServiceManager, type ServiceManagerLookup } from './service-manager.js';
import { createTransport } from './create-transport.js';
import { isConnectionDropped } from './socket-transport.js';
import type { Transport, TransportKind } from './transport.js';

/** Spawns a process; child_process is loaded only by the calls that start a daemon. */
async function spawnProcess(...args: Parameters<typeof SpawnFunction>): Promise<ChildProcess> {
  const { spawn } = await import('node:child_process');
  return spawn(...args);
}

/**
 * Methods that change nothing, so asking again after a dropped connection is safe. A request that
 * changes something is never sent twice: the daemon may have acted on the first one.
 */
const IDEMPOTENT: ReadonlySet<ControlMethod> = new Set<ControlMethod>(['status', 'daemonInfo', 'workerInfo']);

/** How long a request that changes something waits for the daemon to exit after its connection dropped. */
const DROPPED_EXIT_WAIT_MS = 1000;

/** The CLI entry point, used to start a detached daemon. */
export const CLI_ENTRY = fileURLToPath(new URL('../../../bin/drover.js', import.meta.url));

/** How long a starting daemon may take to answer when no timeout is given, in seconds. */
export const DEFAULT_START_TIMEOUT = 30;
/** Lines of the log shown when a start fails. */
const START_FAILURE_LINES = 15;

/** Options of {@link DaemonClient}. */
export interface DaemonClientOptions {
  /** How to reach the daemon (default `socket`). */
  transport?: TransportKind;
  /** Environment used for paths and the detached daemon (default `process.env`). */
  env?: NodeJS.ProcessEnv;
  /** Finds a service manager supervising the daemon (default: the installed unit, if any). */
  serviceManager?: ServiceManagerLookup;
}

/** Options of every call. */
export interface CallOptions {
  /** Seconds to wait for the daemon to answer (default: the profile's `daemon.timeout`). */
  timeout?: number;
}

/** Options of {@link DaemonClient.startDaemon}. */
export interface StartDaemonOptions extends CallOptions {
  /** Workers to start (default: the profile's `daemon.default_workers`). */
  numberWorkers?: number;
  /**
   * Run the daemon attached to this process's terminal and resolve when it exits, instead of
   * detaching it (`drover daemon start --foreground` runs it in the CLI process itself).
   */
  foreground?: boolean;
  /**
   * Wait until the daemon answers (default true). `timeout` then bounds that wait (default:
   * the larger of `daemon.timeout` and {@link DEFAULT_START_TIMEOUT}).
   */
  wait?: boolean;
}

/** Options of {@link DaemonClient.stopDaemon}. */
export interface StopDaemonOptions extends CallOptions {
  /**
   * Wait until the daemon process is gone (default true); it drains its workers first, for up to
   * `daemon.shutdown_grace` plus a margin, so this wait is not bounded by `timeout`.
   */
  wait?: boolean;
}

/** Options of {@link DaemonClient.restartDaemon}. */
export interface RestartDaemonOptions extends CallOptions {
  /**
   * Stop the whole daemon and start a new one (with `numberWorkers` or the default number)
   * instead of replacing its workers (default false).
   */
  reset?: boolean;
  numberWorkers?: number;
  wait?: boolean;
}

function checkWorkerCount(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 1 || n > MAX_WORKERS) {
    throw new InputError(`${what} must be an integer from 1 to ${MAX_WORKERS}, got ${JSON.stringify(n)}`);
  }
  return n;
}

function checkTimeout(t: number): number {
  if (typeof t !== 'number' || !Number.isFinite(t) || t <= 0) {
    throw new InputError(`timeout must be a positive number of seconds, got ${JSON.stringify(t)}`);
  }
  return t;
}

/**
 * While a daemon starts, these failures of a status request mean "no answer yet", not a failed
 * start: nothing listens yet, no reply in time, or the connection was dropped. A dropped
 * connection is what a daemon whose start fails after it began listening does to requests still
 * queued on its socket (it closes the listener on its way out); the start loop then sees the
 * process exit and reports why, with its log lines, instead of a bare `read ECONNRESET`. A daemon
 * that comes up keeps answering, so the next poll gets its status.
 */
function notAnsweringYet(err: unknown): boolean {
  return err instanceof DaemonNotRunningException || err instanceof DaemonTimeoutException || isConnectionDropped(err);
}

/** Controls the daemon of one profile. */
export class DaemonClient {
  /** Default timeout of calls, seconds (`daemon.timeout`). */
  readonly timeout: number;
  /** The daemon's files (socket, PID file, lock, log). */
  readonly paths: DaemonFilePaths;
  private readonly env: NodeJS.ProcessEnv;
  private readonly transport: Transport;
  private readonly lookupServiceManager: ServiceManagerLookup;

  constructor(
    readonly profile: Profile,
    options: DaemonClientOptions = {},
  ) {
    this.env = options.env ?? process.env;
    this.timeout = profile.options['daemon.timeout'];
    this.paths = clientDaemonPaths(profile.name, this.env);
    this.transport = createTransport(options.transport ?? 'socket', profile, this.env);
    this.lookupServiceManager = options.serviceManager ?? findServiceManager;
  }

  /** Name of the profile. */
  get profileName(): string {
    return this.profile.name;
  }

  /** Path of the daemon's log file. */
  get logFile(): string {
    return this.paths.logFile;
  }

  /**
   * True when the profile's daemon process is alive: its PID file names a process that exists
   * and started at the recorded moment (so a reused PID is not mistaken for the daemon). Cheap:
   * one small file read and one /proc read, no connection.
   */
  get isDaemonRunning(): boolean {
    return this.livePidFile() !== null;
  }

  /** PID of the running daemon, or null. */
  get daemonPid(): number | null {
    return this.livePidFile()?.pid ?? null;
  }

  /** The PID file when it names a live daemon process, else null. */
  private livePidFile(): DaemonPidFile | null {
    let text: string;
    try {
      text = fs.readFileSync(this.paths.pidFile, 'utf8');
    } catch {
      return null;
    }
    const pid = parseDaemonPidFile(text);
    if (pid === null || pid.profile !== this.profile.name) return null;
    return isProcessAlive(pid.pid, pid.start) ? pid : null;
  }

  private timeoutMs(options: CallOptions | undefined): number {
    return checkTimeout(options?.timeout ?? this.timeout) * 1000;
  }

  /** The daemon's status: state, workers and running processes. */
  async getStatus(options?: CallOptions): Promise<DaemonStatus> {
    return this.request('status', {}, this.timeoutMs(options));
  }

  /** Facts about the daemon process: pid, version, files, supervisor. */
  async getDaemonInfo(options?: CallOptions): Promise<DaemonInfo> {
    return this.request('daemonInfo', {}, this.timeoutMs(options));
  }

  /** Per worker: pid, memory, cpu, start time, restarts, processes running, state. */
  async getWorkerInfo(options?: CallOptions): Promise<WorkerInfo[]> {
    return (await this.request('workerInfo', {}, this.timeoutMs(options))).workers;
  }

  /** Number of workers the daemon keeps (draining ones excluded). */
  async getNumberOfWorkers(options?: CallOptions): Promise<number> {
    return (await this.getStatus(options)).numberOfWorkers;
  }

  /** Adds `n` workers (default 1); returns the new number of workers. */
  async increaseWorkers(n = 1, options?: CallOptions): Promise<number> {
    checkWorkerCount(n, 'number of workers to add');
    const ms = this.timeoutMs(options);
    return (await this.request('increaseWorkers', { n }, ms)).numberOfWorkers;
  }

  /**
   * Removes `n` workers (default 1); each is drained: its processes finish or are released to the
   * other workers, none is killed. Returns the new number of workers.
   */
  async decreaseWorkers(n = 1, options?: CallOptions): Promise<number> {
    checkWorkerCount(n, 'number of workers to remove');
    const ms = this.timeoutMs(options);
    return (await this.request('decreaseWorkers', { n }, ms)).numberOfWorkers;
  }

  /**
   * Starts the daemon (detached, unless `foreground`). With `wait` (default), resolves once the
   * daemon answers; if it exits first, the DaemonException carries its last log lines.
   * @throws DaemonException when it is already running or fails to start.
   */
  async startDaemon(options: StartDaemonOptions = {}): Promise<void> {
    const n =
      options.numberWorkers === undefined ? undefined : checkWorkerCount(options.numberWorkers, 'numberWorkers');
    const waitMs = checkTimeout(options.timeout ?? Math.max(this.timeout, DEFAULT_START_TIMEOUT)) * 1000;
    if (options.foreground) return this.runAttached(n);
    const running = this.livePidFile();
    if (running) {
      throw new DaemonAlreadyRunningException(
        `the daemon of profile '${this.profile.name}' is already running (pid ${running.pid})`,
      );
    }
    const service = this.serviceManager();
    if (service) {
      // `systemctl start` returns once the daemon reported READY (launchd's kickstart does not wait).
      await service.start({ timeout: waitMs / 1000 });
      if (options.wait === false && n === undefined) return;
      await this.waitUntilAnswering(Date.now() + waitMs, null);
      // The unit starts daemon.default_workers; scale to the number asked for.
      if (n !== undefined) {
        const current = await this.getNumberOfWorkers(options);
        if (n > current) await this.increaseWorkers(n - current, options);
        else if (n < current) await this.decreaseWorkers(current - n, options);
      }
      return;
    }
    ensurePrivateDir(this.paths.logDir);
    const logOffset = fileSize(this.paths.logFile);
    const fd = fs.openSync(this.paths.logFile, 'a', 0o600);
    let child: ChildProcess;
    try {
      child = await spawnProcess(process.execPath, this.daemonArgs(n), {
        detached: true,
        stdio: ['ignore', fd, fd],
        env: { ...this.env, DROVER_PROFILE: this.profile.name },
      });
    } finally {
      fs.closeSync(fd);
    }
    let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
    let spawnError: Error | null = null;
    child.on('exit', (code, signal) => (exit = { code, signal }));
    child.on('error', (err) => (spawnError = err));
    child.unref();
    if (options.wait === false) return;
    const pid = child.pid;
    const deadline = Date.now() + waitMs;
    for (;;) {
      if (spawnError) throw new DaemonException(`cannot start the daemon: ${(spawnError as Error).message}`);
      if (exit) {
        const e = exit as { code: number | null; signal: NodeJS.Signals | null };
        if (e.code === DAEMON_EXIT_ALREADY_RUNNING) {
          const other = this.livePidFile();
          throw new DaemonAlreadyRunningException(
            `the daemon of profile '${this.profile.name}' is already running${other ? ` (pid ${other.pid})` : ''}`,
          );
        }
        throw new DaemonException(this.startFailure(`exited with ${e.signal ?? `code ${e.code}`}`, logOffset));
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new DaemonTimeoutException(
          this.startFailure(`did not answer within ${waitMs / 1000}s (pid ${pid}; it may still come up)`, logOffset),
        );
      }
      try {
        const status = await this.transport.request('status', {}, Math.min(1000, remaining));
        if (status.pid === pid) return;
      } catch (err) {
        if (!notAnsweringYet(err)) throw err;
      }
      await sleep(50);
    }
  }

  /**
   * Stops the daemon: it drains its workers (running processes finish within
   * `daemon.shutdown_grace` or are released for the next start), then exits. With `wait`
   * (default), resolves once the daemon process is gone, and so are its workers.
   * @throws DaemonNotRunningException when it is not running.
   */
  async stopDaemon(options: StopDaemonOptions = {}): Promise<void> {
    const ms = this.timeoutMs(options);
    const before = this.livePidFile();
    const service = this.serviceManager();
    if (service) {
      if (before === null) {
        throw new DaemonNotRunningException(`the daemon of profile '${this.profile.name}' is not running`);
      }
      await service.stop({ timeout: ms / 1000 });
    } else {
      try {
        await this.request('stop', {}, ms);
      } catch (err) {
        // The process lives but its socket is gone (removed by hand): a signal does the same.
        if (err instanceof DaemonNotRunningException && before && isProcessAlive(before.pid, before.start)) {
          process.kill(before.pid, 'SIGTERM');
        } else {
          throw err;
        }
      }
    }
    if (options.wait === false || before === null) return;
    const waitMs = (this.profile.options['daemon.shutdown_grace'] + 30) * 1000;
    const deadline = Date.now() + waitMs;
    while (isProcessAlive(before.pid, before.start)) {
      if (Date.now() > deadline) {
        throw new DaemonTimeoutException(
          `the daemon of profile '${this.profile.name}' (pid ${before.pid}) is still running ${waitMs / 1000}s after ` +
            'the stop request',
        );
      }
      await sleep(50);
    }
  }

  /**
   * Restarts the daemon's workers (new processes take over, the old ones drain), or with `reset`
   * stops the daemon and starts a new one.
   * @throws DaemonNotRunningException when it is not running.
   */
  async restartDaemon(options: RestartDaemonOptions = {}): Promise<void> {
    const service = this.serviceManager();
    if (service) {
      await service.restart({ timeout: this.timeoutMs(options) / 1000 });
      if (options.wait !== false) {
        await this.waitUntilAnswering(Date.now() + Math.max(this.timeout, DEFAULT_START_TIMEOUT) * 1000, null);
      }
      return;
    }
    if (options.reset) {
      await this.stopDaemon({ timeout: options.timeout, wait: true });
      await this.startDaemon({ numberWorkers: options.numberWorkers, wait: options.wait });
      return;
    }
    await this.request('restartWorkers', {}, this.timeoutMs(options));
  }

  /**
   * Sends one request, with the error contract of this class for a connection the daemon's side
   * dropped before answering (see the module comment): a read-only request is asked again while
   * the daemon process lives and time remains; a request that changes something is not repeated,
   * and is reported as "not running" only when the daemon process is gone within a moment.
   */
  private async request<M extends ControlMethod>(
    method: M,
    params: ControlParams[M],
    timeoutMs: number,
  ): Promise<ControlResults[M]> {
    const deadline = Date.now() + timeoutMs;
    for (let attempt = 0; ; attempt++) {
      let dropped: unknown;
      try {
        // The first attempt gets the timeout as given (its message names it: `within 0.5s`, not
        // the 0.499 s left a millisecond later); a retry after a dropped connection what is left.
        const ms = attempt === 0 ? timeoutMs : Math.max(1, deadline - Date.now());
        return await this.transport.request(method, params, ms);
      } catch (err) {
        if (!isConnectionDropped(err)) throw err;
        dropped = err;
      }
      const gone = (): DaemonNotRunningException =>
        new DaemonNotRunningException(
          `the daemon of profile '${this.profile.name}' is not running (it went away before answering '${method}')`,
          { cause: dropped },
        );
      if (!IDEMPOTENT.has(method)) {
        const until = Math.min(deadline, Date.now() + DROPPED_EXIT_WAIT_MS);
        while (this.livePidFile() !== null && Date.now() < until) await sleep(20);
        if (this.livePidFile() === null) throw gone();
        throw dropped;
      }
      if (this.livePidFile() === null) throw gone();
      if (Date.now() >= deadline) {
        throw new DaemonTimeoutException(
          `the daemon of profile '${this.profile.name}' did not answer '${method}' within ${timeoutMs / 1000}s ` +
            '(it dropped the connection)',
          { cause: dropped },
        );
      }
      await sleep(20);
    }
  }

  /** The last `n` lines of the daemon's log file. */
  logTail(n = 50): string[] {
    return readLastLines(this.paths.logFile, n);
  }

  private serviceManager(): ServiceManager | null {
    return this.lookupServiceManager(this.profile, this.env);
  }

  private daemonArgs(n: number | undefined): string[] {
    const args = [CLI_ENTRY, 'daemon', 'start', '--foreground', '--profile', this.profile.name];
    if (n !== undefined) args.push(String(n));
    return args;
  }

  private startFailure(what: string, logOffset: number): string {
    const lines = readLastLines(this.paths.logFile, START_FAILURE_LINES, logOffset);
    return (
      `the daemon of profile '${this.profile.name}' ${what}` +
      (lines.length > 0
        ? `; last lines of ${this.paths.logFile}:\n  ${lines.join('\n  ')}`
        : `; see ${this.paths.logFile}`)
    );
  }

  /** Polls status until a daemon (with `pid`, when given) answers or the deadline passes. */
  private async waitUntilAnswering(deadline: number, pid: number | null): Promise<void> {
    for (;;) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new DaemonTimeoutException(this.startFailure('did not come up in time', 0));
      }
      try {
        const status = await this.transport.request('status', {}, Math.min(1000, remaining));
        if (pid === null || status.pid === pid) return;
      } catch (err) {
        if (!notAnsweringYet(err)) throw err;
      }
      await sleep(100);
    }
  }

  /** Runs the daemon attached to this terminal; resolves when it exits. */
  private async runAttached(n: number | undefined): Promise<void> {
    const child = await spawnProcess(process.execPath, this.daemonArgs(n), {
      stdio: 'inherit',
      env: { ...this.env, DROVER_PROFILE: this.profile.name },
    });
    return new Promise((resolve, reject) => {
      child.on('error', (err) =>
        reject(new DaemonException(`cannot start the daemon: ${err.message}`, { cause: err })),
      );
      child.on('exit', (code, signal) => {
        if (code === 0) resolve();
        else if (code === DAEMON_EXIT_ALREADY_RUNNING) {
          reject(new DaemonAlreadyRunningException(`the daemon of profile '${this.profile.name}' is already running`));
        } else reject(new DaemonException(`the daemon exited with ${signal ?? `code ${code}`}`));
      });
    });
  }
}

/**
 * A DaemonClient for `profileName`, else `DROVER_PROFILE`, else the default profile
 * (AiiDA's `get_daemon_client`).
 */
export function getDaemonClient(profileName?: string, options: DaemonClientOptions = {}): DaemonClient {
  return new DaemonClient(resolveProfile(profileName, { env: options.env }), options);
}
