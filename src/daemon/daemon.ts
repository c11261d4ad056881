/**
 * The daemon of a profile: one system process that supervises the profile's workers, answers the
 * client on its control socket and tells systemd how it is doing. It runs no user code.
 *
 * Life of a daemon:
 * 1. take the exclusive profile lock (a kernel lock that dies with the process; a second daemon
 *    gives up within a moment with exit code {@link DAEMON_EXIT_ALREADY_RUNNING}, and of two
 *    daemons starting at once exactly one wins: see lock.ts);
 * 2. clean up after a crashed predecessor: remove its socket, release every lease held by a worker
 *    of this profile's daemons on this host that is not alive (see leases.ts); orphans of the
 *    previous daemon still draining (they exit by themselves when their IPC channel closes) keep
 *    theirs until they exit;
 * 3. write the PID file (pid + start identity), listen on the socket (0600, in the 0700 runtime
 *    dir), fork the workers;
 * 4. `READY=1` once the socket listens and every worker has reported ready (or is crash-looping);
 *    then `STATUS=` on change and `WATCHDOG=1` from the supervision tick;
 * 5. on SIGTERM, SIGINT or a `stop` request: refuse changes (status still answers, showing
 *    `stopping`), drain the workers within `daemon.shutdown_grace` (`EXTEND_TIMEOUT_USEC` while
 *    it lasts), kill what is left, remove the socket, PID and workers files, release the lock,
 *    resolve with exit code 0. A second SIGINT/SIGTERM kills the workers at once.
 *
 * @module
 */
import os from 'node:os';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { applySharedOptions, keepsSharedOptions, type Profile } from '../config/index.js';
import { createLogger, fileSink, stdoutIsJournal, streamSink, type Logger, type LogSink } from '../logging/index.js';
import {
  CONTROL_PROTOCOL_VERSION,
  ControlError,
  DAEMON_EXIT_ALREADY_RUNNING,
  MAX_WORKERS,
  type ControlHandler,
  type DaemonEnvironment,
  type DaemonInfo,
  type DaemonState,
  type DaemonStatus,
  type DaemonSupervisor,
  type OutboxBacklog,
  type WorkerRecord,
} from '../protocol/index.js';
import { errorMessage } from '../errors/index.js';
import { deferred, ensurePrivateDir } from '../util/index.js';
import { ControlServer } from './control-server.js';
import { defaultControlTransports } from './dbus.js';
import { recordEnvironment, recordWorkerModules } from './environment.js';
import { tryAcquireDaemonLock, type DaemonLock } from './lock.js';
import { storeLeaseReleaser, type LeaseReleaser } from './leases.js';
import { DaemonHub } from './bus-hub.js';
import { lazyStore, type LazyStore } from './store-access.js';
import { REGISTRY_HEARTBEAT_MS } from '../store/types.js';
import { createNotifier, type Notifier } from './notify.js';
import { daemonPaths, type DaemonPaths } from './paths.js';
import {
  readDaemonPidFile,
  readWorkerRecords,
  removeFileQuietly,
  workerRecordAlive,
  writeDaemonPidFile,
  writeWorkerRecords,
} from './pid-file.js';
import { Supervisor } from './supervisor.js';

/** Exit code of a daemon that stopped normally. */
export const DAEMON_EXIT_OK = 0;
/** Exit code of a daemon that could not start. */
export const DAEMON_EXIT_FAILED = 1;

/** How long a starting daemon waits for its PostgreSQL store to give the shared options. */
const SHARED_OPTIONS_WAIT_MS = 5000;

/**
 * `profile` with the shared options its store holds (slots, lease, modules, ...: set once for
 * every host by `drover config set`). A store that does not answer in time leaves this host's
 * values, with a warning: the daemon must start even while the store is away.
 */
async function withSharedOptions(profile: Profile, logger: Logger): Promise<Profile> {
  const { openStore } = await import('../store/index.js');
  const reading = (async () => {
    const store = await openStore(profile.storage, { logger: logger.child('store') });
    try {
      return await store.getSharedOptions();
    } finally {
      await store.close();
    }
  })();
  let timer: NodeJS.Timeout | undefined;
  try {
    const stored = await Promise.race([
      reading,
      new Promise<null>((resolve) => {
        timer = setTimeout(() => resolve(null), SHARED_OPTIONS_WAIT_MS);
      }),
    ]);
    if (stored === null) {
      reading.catch(() => undefined);
      logger.warn(`the store did not give the shared options within ${SHARED_OPTIONS_WAIT_MS} ms; using this host's`);
      return profile;
    }
    const changed = Object.keys(stored).filter((k) => Object.hasOwn(profile.options, k));
    if (changed.length > 0) logger.info(`shared options from the store: ${changed.join(', ')}`);
    return { ...profile, options: applySharedOptions(profile.options, stored, (m) => logger.warn(m)) };
  } catch (err) {
    logger.warn(`reading the shared options from the store failed (${errorMessage(err)}); using this host's`);
    return profile;
  } finally {
    clearTimeout(timer);
  }
}

/** Rows of daemons silent this long are removed by the next daemon that registers or stops. */
const REGISTRY_PURGE_MS = 86_400_000;

/** Period of the retry of a lease release that failed (store unreachable). */
const RELEASE_RETRY_MS = 5_000;
/** Period of the outbox count shown in status. */
const OUTBOX_COUNT_MS = 2_000;

/** Options of {@link Daemon}. */
export interface DaemonOptions {
  /** Workers to start (default `daemon.default_workers`). */
  numberWorkers?: number;
  /** Also log to stdout (with journald priority prefixes under systemd). */
  foreground?: boolean;
  /** Worker entry module (default: dist/src/worker/main.js). */
  workerModule?: string;
  env?: NodeJS.ProcessEnv;
  /** Lease releaser (default: the profile's store). */
  leases?: LeaseReleaser;
  /** Install SIGTERM/SIGINT handlers (default true). */
  handleSignals?: boolean;
  /** Extra log sinks (tests). */
  sinks?: LogSink[];
  /**
   * Control transports besides the socket, started after the socket and closed on stop (default:
   * D-Bus on the user's session bus, when there is one; `[]` for none).
   */
  transports?: ControlTransportFactory[];
}

/** What a control transport besides the socket gets from the daemon. */
export interface ControlTransportContext {
  profile: Profile;
  /** The same handler the socket uses. */
  handler: ControlHandler;
  logger: Logger;
  /** The current status (as the `status` method answers). */
  status(): DaemonStatus;
  /**
   * Calls `listener` whenever the state, the workers (pid, state, restarts) or the number of running
   * processes change (for D-Bus PropertiesChanged). Returns a function that removes it.
   */
  onStatusChange(listener: (status: DaemonStatus) => void): () => void;
}

/** A running control transport. */
export interface ControlTransport {
  close(): Promise<void>;
}

/**
 * Starts a control transport. A factory that fails is logged and skipped: the socket still works,
 * so an unavailable session bus never keeps the daemon down.
 */
export type ControlTransportFactory = (ctx: ControlTransportContext) => Promise<ControlTransport>;

/** Who supervises this process, from the environment the service manager gave it. */
export function detectSupervisor(env: NodeJS.ProcessEnv = process.env): DaemonSupervisor {
  if (env.NOTIFY_SOCKET) return 'systemd';
  if (env.XPC_SERVICE_NAME && /drover/i.test(env.XPC_SERVICE_NAME)) return 'launchd';
  return 'self';
}

/** The default worker entry module, next to this one in dist/. */
export function defaultWorkerModule(): string {
  return fileURLToPath(new URL('../worker/main.js', import.meta.url));
}

function droverVersion(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** True when stdout is the same file as `file` (a detached daemon's stdout is its log file). */
function stdoutIs(file: string): boolean {
  try {
    const a = fs.fstatSync(1);
    const b = fs.statSync(file);
    return a.dev === b.dev && a.ino === b.ino;
  } catch {
    return false;
  }
}

/** A running daemon. Create with {@link Daemon.start}. */
export class Daemon {
  readonly paths: DaemonPaths;
  readonly logger: Logger;
  readonly startedAt = Date.now();
  private state: DaemonState = 'starting';
  private readonly supervisor: Supervisor;
  private readonly notifier: Notifier;
  private readonly leases: LeaseReleaser;
  private readonly store: LazyStore;
  /** The hub of the local bus (local profiles only). */
  private readonly hub: DaemonHub | null;
  private server: ControlServer | null = null;
  private tickTimer: NodeJS.Timeout | null = null;
  private stopPromise: Promise<void> | null = null;
  private readonly releases = new Set<Promise<void>>();
  /** Workers of a previous daemon that were still alive at start (draining orphans), until they exit. */
  private orphans: WorkerRecord[] = [];
  /** A release of dead workers' leases is running, or should run again (it failed, or more died). */
  private releasing: Promise<void> | null = null;
  private releaseAgain = false;
  private lastReleaseFailed = 0;
  private outbox: OutboxBacklog | null = null;
  private countingOutbox = false;
  private readonly signalHandlers: Array<[string, (...args: unknown[]) => void]> = [];
  private lastRecords = '';
  private readonly version = droverVersion();
  private environment: DaemonEnvironment;
  private readonly supervisorKind: DaemonSupervisor;
  private readySent = false;
  /** Leases were released while no worker was ready to re-publish them. */
  private sweepWanted = false;
  private readonly transports: ControlTransport[] = [];
  private readonly statusListeners = new Set<(status: DaemonStatus) => void>();
  private lastSignature = '';
  private lastWatchdog = 0;
  /** This run's id in the store's registry of daemons. */
  private readonly registryId = `${os.hostname()}:${process.pid}:${this.startedAt}`;
  private lastRegistered = 0;
  /** The registry holds a row of this run (to remove at stop). */
  private registered = false;
  private registering: Promise<void> | null = null;

  private constructor(
    readonly profile: Profile,
    private readonly lock: DaemonLock,
    root: Logger,
    paths: DaemonPaths,
    private readonly options: DaemonOptions,
  ) {
    this.paths = paths;
    this.logger = root.child('daemon');
    const logger = this.logger;
    const env = options.env ?? process.env;
    this.supervisorKind = detectSupervisor(env);
    this.notifier = createNotifier(logger, env);
    this.environment = recordEnvironment(profile, this.version);
    this.store = lazyStore(profile, logger);
    this.leases = options.leases ?? storeLeaseReleaser(this.store, logger);
    this.hub =
      profile.broker.kind === 'local'
        ? new DaemonHub(this.store, root.child('hub'), profile.options['daemon.lease_seconds'] * 1000)
        : null;
    this.supervisor = new Supervisor({
      profile,
      bus: this.hub?.supervisorHooks(),
      workerModule: options.workerModule ?? defaultWorkerModule(),
      logger: root.child('supervisor'),
      outputLogger: root,
      env,
      // Even a worker that drained and exited 0 counts: a release of its own that failed is caught here.
      onWorkerExit: () => this.releaseDead(),
      onWorkerReady: () => this.sweepIfWanted(),
      onChange: () => this.onChange(),
    });
  }

  /**
   * Starts the daemon of `profile`. Resolves with the running daemon, or with
   * `'already-running'` when another daemon of the profile holds the lock.
   */
  static async start(profileAsGiven: Profile, options: DaemonOptions = {}): Promise<Daemon | 'already-running'> {
    let profile = profileAsGiven;
    const env = options.env ?? process.env;
    const paths = daemonPaths(profile.name, env);
    ensurePrivateDir(paths.runtimeDir);
    ensurePrivateDir(paths.logDir);
    const root = createDaemonLogger(profile, paths, options);
    const logger = root.child('daemon');
    const lock = await tryAcquireDaemonLock(paths.lockFile);
    if (!lock) {
      const other = readDaemonPidFile(paths.pidFile);
      logger.error(
        `the daemon of profile '${profile.name}' is already running${other ? ` (pid ${other.pid})` : ''}; not starting another`,
      );
      return 'already-running';
    }
    if (keepsSharedOptions(profile.storage)) profile = await withSharedOptions(profile, logger);
    const daemon = new Daemon(profile, lock, root, paths, options);
    try {
      await daemon.init();
    } catch (err) {
      logger.error(`the daemon failed to start: ${errorMessage(err)}`);
      await daemon.stop('start failed');
      throw err;
    }
    return daemon;
  }

  private readonly stoppedDeferred = deferred<void>();

  /** Resolves when the daemon has stopped (by a signal, a stop request or {@link Daemon.stop}). */
  get stopped(): Promise<void> {
    return this.stoppedDeferred.promise;
  }

  private async init(): Promise<void> {
    const { paths, logger, profile } = this;
    // We hold the lock, so a socket file left here belongs to a dead daemon.
    removeFileQuietly(paths.socket);
    // Orphans of a crashed predecessor keep their place in the file until they exit: a crash of
    // this daemon must not let the next one take them for dead.
    this.orphans = readWorkerRecords(paths.workersFile).filter(workerRecordAlive);
    writeWorkerRecords(paths.workersFile, this.orphans);
    writeDaemonPidFile(paths.pidFile, profile.name, this.startedAt);
    const n = this.options.numberWorkers ?? profile.options['daemon.default_workers'];
    logger.info(
      `daemon of profile '${profile.name}' starting (pid ${process.pid}, ${n} worker${n === 1 ? '' : 's'}, ` +
        `supervisor ${this.supervisorKind}, socket ${paths.socket})`,
    );
    this.server = new ControlServer(paths.socket, this.handler(), logger.child('control'));
    if (this.hub) this.server.bus = this.hub.socketHooks();
    await this.server.listen();
    // The hub reads the outbox from the start: what was submitted while no daemon ran goes out
    // as soon as the first worker is ready.
    this.hub?.start();
    if (this.options.handleSignals !== false) this.installSignalHandlers();
    await this.startTransports();
    if (this.orphans.length > 0) {
      this.logger.info(
        `${this.orphans.length} worker(s) of a previous daemon still running (pid ` +
          `${this.orphans.map((o) => o.pid).join(', ')}); their leases are released once they exit, if they do not`,
      );
    }
    this.supervisor.start(n);
    this.releaseDead();
    this.countOutbox();
    const wd = this.notifier.watchdogIntervalMs;
    const tickMs = wd === null ? 1000 : Math.max(10, Math.min(1000, wd));
    this.tickTimer = setInterval(() => this.tick(), tickMs);
    this.onChange();
  }

  /** The control handler behind every transport (socket, D-Bus). */
  handler(): ControlHandler {
    const grace = (): number => this.profile.options['daemon.shutdown_grace'];
    return {
      status: async () => this.status(),
      daemonInfo: async () => this.info(),
      workerInfo: async () => ({ workers: this.supervisor.info() }),
      increaseWorkers: async ({ n }) => {
        this.refuseWhenStopping();
        const now = this.supervisor.numberOfWorkers;
        if (now + n > MAX_WORKERS) {
          throw new ControlError(
            'PARAMS_INVALID',
            `cannot add ${n} workers: at most ${MAX_WORKERS} allowed (now ${now})`,
          );
        }
        this.logger.info(`adding ${n} worker${n === 1 ? '' : 's'} (now ${now})`);
        return { numberOfWorkers: this.supervisor.increase(n) };
      },
      decreaseWorkers: async ({ n }) => {
        this.refuseWhenStopping();
        this.logger.info(`removing ${n} worker${n === 1 ? '' : 's'} (now ${this.supervisor.numberOfWorkers})`);
        return { numberOfWorkers: this.supervisor.decrease(n, grace()) };
      },
      restartWorkers: async () => {
        this.refuseWhenStopping();
        this.logger.info('restarting all workers');
        const restarted = this.supervisor.restartAll(grace());
        this.environment = recordWorkerModules(this.environment, this.profile);
        return { numberOfWorkers: this.supervisor.numberOfWorkers, restarted };
      },
      stop: async () => {
        // Reply first; the stop starts once the reply is on its way.
        setImmediate(() => void this.stop('stop request'));
        return { stopping: true };
      },
    };
  }

  /** What `status` answers. */
  status(): DaemonStatus {
    return {
      profile: this.profile.name,
      pid: process.pid,
      startedAt: this.startedAt,
      state: this.state,
      supervisor: this.supervisorKind,
      numberOfWorkers: this.supervisor.numberOfWorkers,
      runningProcesses: this.supervisor.runningProcesses,
      workers: this.supervisor.info(),
      environment: this.environment,
      outbox: this.outbox,
    };
  }

  /** Counts the outbox for status, every {@link OUTBOX_COUNT_MS} at most, one count at a time. */
  private countOutbox(): void {
    if (this.countingOutbox || this.stopPromise) return;
    if (this.outbox && Date.now() - this.outbox.countedAt < OUTBOX_COUNT_MS) return;
    this.countingOutbox = true;
    void this.store
      .get()
      .then((s) => s.outboxCounts())
      .then(
        (c) => {
          this.outbox = { pending: c.pending, unclaimed: c.unclaimed, countedAt: Date.now() };
        },
        (err: unknown) => {
          this.outbox = null;
          this.logger.debug(`counting the outbox failed: ${errorMessage(err)}`);
        },
      )
      .finally(() => {
        this.countingOutbox = false;
      });
  }

  /** What `daemonInfo` answers. */
  info(): DaemonInfo {
    return {
      profile: this.profile.name,
      profileUuid: this.profile.uuid,
      pid: process.pid,
      startedAt: this.startedAt,
      state: this.state,
      supervisor: this.supervisorKind,
      version: this.version,
      node: process.version,
      protocolVersion: CONTROL_PROTOCOL_VERSION,
      runtimeDir: this.paths.runtimeDir,
      socket: this.paths.socket,
      pidFile: this.paths.pidFile,
      lockFile: this.paths.lockFile,
      logFile: this.paths.logFile,
      memoryRss: process.memoryUsage.rss(),
      environment: this.environment,
    };
  }

  /**
   * Stops the daemon: drains the workers, removes its files, releases the lock. Safe to call
   * twice (the second call returns the same promise).
   */
  stop(reason: string): Promise<void> {
    if (this.stopPromise) return this.stopPromise;
    this.stopPromise = this.doStop(reason).finally(() => this.stoppedDeferred.resolve());
    return this.stopPromise;
  }

  private async doStop(reason: string): Promise<void> {
    const { logger, paths } = this;
    const grace = this.profile.options['daemon.shutdown_grace'];
    this.state = 'stopping';
    this.notifyListeners();
    const n = this.supervisor.numberOfWorkers;
    logger.info(`stopping (${reason}): draining ${n} worker${n === 1 ? '' : 's'} within ${grace}s`);
    // Ask systemd for the drain time plus the kill margin, and keep asking while it lasts.
    const budgetMs = grace * 1000 + 15_000;
    const stopDeadline = Date.now() + budgetMs;
    this.notifier.stopping(
      `stopping: draining ${n} workers, ${this.supervisor.runningProcesses} processes running`,
      budgetMs,
    );
    const extend = setInterval(
      () => this.notifier.extendTimeout(Math.max(5000, stopDeadline - Date.now() + 5000)),
      5000,
    );
    try {
      await this.supervisor.stopAll(grace);
    } catch (err) {
      logger.error(`draining the workers failed: ${errorMessage(err)}`);
    }
    clearInterval(extend);
    if (this.tickTimer) clearInterval(this.tickTimer);
    this.tickTimer = null;
    while (this.releases.size > 0) await Promise.allSettled([...this.releases]);
    await this.registering;
    if (this.registered) {
      await this.store
        .get()
        .then((s) => s.unregisterDaemon(this.registryId, REGISTRY_PURGE_MS))
        .catch((err: unknown) => this.logger.debug(`leaving the registry failed: ${errorMessage(err)}`));
    }
    this.hub?.close();
    await this.leases.close();
    await this.store.close();
    await Promise.allSettled(this.transports.map((t) => t.close()));
    await this.server?.close();
    removeFileQuietly(paths.socket);
    removeFileQuietly(paths.workersFile);
    const pid = readDaemonPidFile(paths.pidFile);
    if (pid === null || pid.pid === process.pid) removeFileQuietly(paths.pidFile);
    for (const [event, fn] of this.signalHandlers) process.off(event, fn);
    this.signalHandlers.length = 0;
    this.lock.release();
    logger.info('daemon stopped');
  }

  private refuseWhenStopping(): void {
    if (this.state === 'stopping') throw new ControlError('DAEMON_STOPPING', 'the daemon is stopping');
  }

  private installSignalHandlers(): void {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) {
      const fn = (): void => {
        if (this.stopPromise) {
          this.logger.warn(`${sig} while stopping: killing the workers now`);
          this.supervisor.killAll();
          return;
        }
        void this.stop(sig);
      };
      process.on(sig, fn);
      this.signalHandlers.push([sig, fn]);
    }
    // A closed terminal must not take a foreground daemon down without draining.
    const hup = (): void => this.logger.info('SIGHUP ignored');
    process.on('SIGHUP', hup);
    this.signalHandlers.push(['SIGHUP', hup]);
    // A forgotten promise somewhere must not take the supervisor (and so every worker) down.
    const rejection = (reason: unknown): void => this.logger.error(`unhandled rejection: ${errorMessage(reason)}`);
    process.on('unhandledRejection', rejection);
    this.signalHandlers.push(['unhandledRejection', rejection]);
  }

  private track(p: Promise<void>): void {
    const t = p.catch((err: unknown) => this.logger.warn(errorMessage(err))).finally(() => this.releases.delete(t));
    this.releases.add(t);
  }

  /**
   * Releases every lease held by a worker of this profile's daemons on this host that is not alive
   * (see leases.ts). Runs one at a time; a call while one runs makes it run again after.
   */
  private releaseDead(): void {
    if (this.releasing) {
      this.releaseAgain = true;
      return;
    }
    const run = async (): Promise<void> => {
      do {
        this.releaseAgain = false;
        const live = [...this.supervisor.liveWorkerIds(), ...this.orphans.map((o) => o.workerId)];
        const released = await this.leases.releaseDead(this.supervisor.workerIdPrefix, live);
        if (released === null) {
          this.lastReleaseFailed = Date.now();
          return;
        }
        this.lastReleaseFailed = 0;
        if (released.length === 0) continue;
        const owners = [...new Set(released.map((r) => r.owner))];
        const ids = released.map((r) => r.id);
        this.logger.info(
          `released ${ids.length} process${ids.length === 1 ? '' : 'es'} of ${owners.length} dead worker(s) ` +
            `(${owners.slice(0, 5).join(', ')}${owners.length > 5 ? ', ...' : ''}) for re-dispatch: ` +
            `${ids.slice(0, 20).join(', ')}${ids.length > 20 ? ', ...' : ''}`,
        );
        this.requestSweep();
      } while (this.releaseAgain);
    };
    const p = run().finally(() => {
      this.releasing = null;
    });
    this.releasing = p;
    this.track(p);
  }

  /** Orphans that exited since the last look: their leases can go now. */
  private watchOrphans(): void {
    if (this.orphans.length === 0) return;
    const alive = this.orphans.filter(workerRecordAlive);
    if (alive.length === this.orphans.length) return;
    this.logger.info(`${this.orphans.length - alive.length} worker(s) of the previous daemon exited`);
    this.orphans = alive;
    this.releaseDead();
  }

  /**
   * Pending dispatches were made (leases released): the hub reads them now; on RabbitMQ a ready
   * worker re-publishes them now, or else the next worker that gets ready.
   */
  private requestSweep(): void {
    if (this.stopPromise) return; // the next daemon's workers sweep at their start
    if (this.hub) this.hub.wake();
    else if (!this.supervisor.sweep()) this.sweepWanted = true;
  }

  private sweepIfWanted(): void {
    if (this.sweepWanted && this.supervisor.sweep()) this.sweepWanted = false;
  }

  /**
   * Refreshes this daemon's row in the store's registry (every {@link REGISTRY_HEARTBEAT_MS}, one
   * write at a time; a failure is logged at debug level and retried at the next heartbeat: the
   * registry only informs `daemon status --cluster` and the slot count of `process list`).
   */
  private register(): void {
    // A tenth of slack: the tick that calls this comes every second, a few ms early or late.
    if (this.registering || this.stopPromise || Date.now() - this.lastRegistered < REGISTRY_HEARTBEAT_MS * 0.9) return;
    const first = this.lastRegistered === 0;
    this.lastRegistered = Date.now();
    const reg = {
      id: this.registryId,
      host: os.hostname(),
      pid: process.pid,
      version: this.version,
      state: this.state,
      startedAt: this.startedAt,
      workers: this.supervisor.info().flatMap((w) =>
        w.pid === null || w.workerId === null
          ? []
          : [
              {
                id: w.workerId,
                pid: w.pid,
                slots: w.slots ?? this.profile.options['daemon.worker_process_slots'],
                running: w.running,
              },
            ],
      ),
    };
    this.registering = this.store
      .get()
      .then(async (s) => {
        await s.registerDaemon(reg);
        this.registered = true;
        if (first) await s.unregisterDaemon('', REGISTRY_PURGE_MS);
      })
      .catch((err: unknown) => this.logger.debug(`registering in the store failed: ${errorMessage(err)}`))
      .finally(() => {
        this.registering = null;
      });
  }

  private tick(): void {
    this.register();
    this.supervisor.tick();
    this.watchOrphans();
    if (this.lastReleaseFailed > 0 && Date.now() - this.lastReleaseFailed >= RELEASE_RETRY_MS) this.releaseDead();
    this.countOutbox();
    const wd = this.notifier.watchdogIntervalMs;
    if (wd !== null && Date.now() - this.lastWatchdog >= wd * 0.9) {
      this.lastWatchdog = Date.now();
      this.notifier.watchdog();
    }
    this.onChange();
  }

  private onChange(): void {
    if (this.state !== 'stopping') {
      const s = this.supervisor;
      const looping = s.crashLooping;
      if (looping.length > 0) this.state = 'degraded';
      else if (this.state === 'starting' && !s.settled) this.state = 'starting';
      else this.state = 'running';
      const line = this.statusLine();
      if (!this.readySent && this.server && s.settled) {
        this.readySent = true;
        this.logger.info(`daemon ready: ${line}`);
        this.notifier.ready(line);
      } else if (this.readySent) {
        this.notifier.status(line);
      }
    }
    this.writeRecords();
    this.notifyListeners();
  }

  private async startTransports(): Promise<void> {
    const handler = this.handler();
    const factories = this.options.transports ?? defaultControlTransports(this.options.env ?? process.env);
    for (const factory of factories) {
      try {
        this.transports.push(
          await factory({
            profile: this.profile,
            handler,
            logger: this.logger,
            status: () => this.status(),
            onStatusChange: (listener) => {
              this.statusListeners.add(listener);
              return () => this.statusListeners.delete(listener);
            },
          }),
        );
      } catch (err) {
        this.logger.warn(`a control transport failed to start (${errorMessage(err)}); the socket still answers`);
      }
    }
  }

  private notifyListeners(): void {
    if (this.statusListeners.size === 0) return;
    const status = this.status();
    const signature = JSON.stringify([
      status.state,
      status.numberOfWorkers,
      status.runningProcesses,
      status.workers.map((w) => [w.id, w.pid, w.state, w.restarts, w.running]),
    ]);
    if (signature === this.lastSignature) return;
    this.lastSignature = signature;
    for (const listener of this.statusListeners) {
      try {
        listener(status);
      } catch (err) {
        this.logger.warn(`a status listener failed: ${errorMessage(err)}`);
      }
    }
  }

  private statusLine(): string {
    const s = this.supervisor;
    const looping = s.crashLooping;
    return (
      `${s.readyWorkers}/${s.numberOfWorkers} workers ready, ${s.runningProcesses} processes running` +
      (looping.length > 0 ? `; crash-looping: ${looping.join(', ')}` : '')
    );
  }

  private writeRecords(): void {
    const records = [...this.orphans, ...this.supervisor.records()];
    const text = JSON.stringify(records);
    if (text === this.lastRecords) return;
    this.lastRecords = text;
    try {
      writeWorkerRecords(this.paths.workersFile, records);
    } catch (err) {
      this.logger.warn(`cannot write ${this.paths.workersFile}: ${errorMessage(err)}`);
    }
  }
}

function createDaemonLogger(profile: Profile, paths: DaemonPaths, options: DaemonOptions): Logger {
  const sinks: LogSink[] = [fileSink(paths.logFile)];
  try {
    fs.chmodSync(paths.logFile, 0o600);
  } catch {
    // The sink reported nothing either; logging must never stop the daemon.
  }
  // A detached daemon's stdout already is the log file: do not write every line twice.
  if (options.foreground && !stdoutIs(paths.logFile)) sinks.push(streamSink(process.stdout, stdoutIsJournal()));
  if (options.sinks) sinks.push(...options.sinks);
  return createLogger({ level: profile.options['logging.level'], sinks });
}

/**
 * Runs the daemon of `profile` in this process until it stops; resolves with the exit code:
 * 0 after a normal stop, {@link DAEMON_EXIT_ALREADY_RUNNING} when another daemon holds the
 * profile, 1 when it could not start.
 */
export async function runDaemon(profile: Profile, options: DaemonOptions = {}): Promise<number> {
  let daemon: Daemon | 'already-running';
  try {
    daemon = await Daemon.start(profile, options);
  } catch (err) {
    if (options.foreground) process.stderr.write(`Error: the daemon failed to start: ${errorMessage(err)}\n`);
    return DAEMON_EXIT_FAILED;
  }
  if (daemon === 'already-running') {
    if (options.foreground) {
      const other = readDaemonPidFile(daemonPaths(profile.name, options.env ?? process.env).pidFile);
      process.stderr.write(
        `Error: the daemon of profile '${profile.name}' is already running${other ? ` (pid ${other.pid})` : ''}\n`,
      );
    }
    return DAEMON_EXIT_ALREADY_RUNNING;
  }
  await daemon.stopped;
  return DAEMON_EXIT_OK;
}
