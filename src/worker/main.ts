/**
 * Entry point of a worker process, forked by the daemon (see src/protocol/ipc.ts for the IPC
 * messages), and the implementation of `drover daemon worker` (a worker in the foreground).
 *
 * A forked worker exits by itself when its IPC channel closes (the daemon died): it stops taking
 * work, gives running processes a short grace, stops the rest (their commands included), releases
 * every lease it holds and exits, so no worker outlives its daemon as an orphan consuming work, and
 * none leaves a lease behind for the next daemon to guess about. An orphan's output has nowhere to
 * go (its stdout was a pipe to the dead daemon): writes there fail harmlessly and its log lines go
 * to the daemon's log file instead. An orphan that cannot finish within
 * {@link ORPHAN_EXIT_MARGIN_MS} of its grace exits anyway (the next daemon releases what it held).
 *
 * @module
 */
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { applySharedOptions, keepsSharedOptions, logDir, resolveProfile, type Profile } from '../config/index.js';
import {
  createLogger,
  fileSink,
  guardStream,
  streamSink,
  stdoutIsJournal,
  type LogSink,
  type Logger,
} from '../logging/index.js';
import { errorMessage } from '../errors/index.js';
import { openBus, type IpcChannel, type MessageBus } from '../broker/index.js';
import { openStore } from '../store/index.js';
import type { ProcessStore } from '../store/types.js';
import { ProcessRegistry, processGroups } from '../engine/index.js';
import {
  DAEMON_LOG_FILE,
  isJsonObject,
  parseDaemonToWorker,
  type DaemonToWorker,
  type WorkerToDaemon,
} from '../protocol/index.js';
import { Worker, type WorkerStats } from './worker.js';

/** Grace given to running processes when the daemon vanished. */
const ORPHAN_GRACE_SECONDS = 2;
/** Time an orphan gets beyond its grace to stop its runs, release its leases and close. */
export const ORPHAN_EXIT_MARGIN_MS = 20_000;

/** Options of {@link runWorker}. */
export interface RunWorkerOptions {
  profile?: string;
  workerId?: string;
  logger?: Logger;
  /** Called once the worker consumes. */
  onReady?: (worker: Worker) => void;
}

/**
 * A fresh id for a worker started on its own (`drover daemon worker`): `<host>:<pid>-<random>`. A
 * daemon's workers have ids of their own shape (see daemon/supervisor.ts), so a daemon never takes
 * such a worker for one of its own.
 */
export function newWorkerId(): string {
  return `${os.hostname()}:${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
}

/**
 * Where an orphaned worker's log lines go: the daemon's log file, opened on first use, each line
 * scoped with the worker's id (nothing is written when the file cannot be opened).
 */
function orphanLogSink(profile: Profile, workerId: string): LogSink {
  let file: LogSink | null | undefined;
  return {
    write(level, scope, message, time) {
      if (file === undefined) {
        try {
          file = fileSink(path.join(logDir(profile.name), DAEMON_LOG_FILE));
        } catch {
          file = null;
        }
      }
      file?.write(level, `worker ${workerId} pid ${process.pid}${scope === '' ? '' : `:${scope}`}`, message, time);
    },
  };
}

/** Connects to the store and broker of `profile` and starts a worker. */
export async function startWorker(
  profile: Profile,
  workerId: string,
  logger: Logger,
  onStats?: (stats: WorkerStats) => void,
): Promise<Worker> {
  let store: ProcessStore | null = null;
  let bus: MessageBus | null = null;
  try {
    // Forked by the daemon: it gets its tasks over its IPC channel on a local profile, and leaves
    // the WAL checkpoints of a SQLite store to the daemon's thread.
    const forked = typeof process.send === 'function';
    // A store that belongs to another profile is refused here: the worker consumes nothing.
    const s = await openStore(profile.storage, {
      logger,
      profile: { name: profile.name, uuid: profile.uuid },
      checkpoints: forked ? 'by-daemon' : 'inline',
    });
    store = s;
    if (keepsSharedOptions(profile.storage)) {
      // The profile's shared options (slots, lease, modules, ...) as every host sees them.
      const stored = await s.getSharedOptions();
      profile = { ...profile, options: applySharedOptions(profile.options, stored, (m) => logger.warn(m)) };
    }
    const registry = await ProcessRegistry.forProfile(profile);
    bus = await openBus(profile, {
      logger,
      connectionName: `drover worker ${workerId}`,
      connectTimeoutMs: Math.max(5000, profile.options['daemon.timeout'] * 1000),
      workerId,
      ipc: forked ? (process as unknown as IpcChannel) : undefined,
    });
    return await Worker.start({ profile, workerId, store: s, bus, registry, logger, onStats });
  } catch (err) {
    await bus?.close();
    await store?.close();
    throw err;
  }
}

/**
 * What a message from the daemon asks of the worker itself; null for the local bus's messages,
 * which the worker's IpcLink reads from the same channel (parsing them here too cost a second parse
 * of every delivery, and answering them with `stats` an extra IPC message, and a wake-up of the
 * daemon, for each one), and for a malformed message (logged).
 */
export function daemonRequest(raw: unknown, logger: Logger): Exclude<DaemonToWorker, { kind: 'bus' }> | null {
  if (isJsonObject(raw) && raw.kind === 'bus') return null;
  try {
    const m = parseDaemonToWorker(raw);
    return m.kind === 'bus' ? null : m;
  } catch (err) {
    logger.warn(`ignored malformed IPC message: ${errorMessage(err)}`);
    return null;
  }
}

/**
 * Runs a worker until SIGTERM/SIGINT (or, when forked by the daemon, a `drain` message or the
 * loss of the IPC channel), then drains it. Resolves with the exit code.
 */
export async function runWorker(opts: RunWorkerOptions = {}): Promise<number> {
  const forked = typeof process.send === 'function';
  const workerId = opts.workerId ?? process.env.DROVER_WORKER_ID ?? newWorkerId();
  const send = (m: WorkerToDaemon): void => {
    if (!forked || !process.connected) return;
    try {
      // With a callback, a channel that closes meanwhile is an argument, not an 'error' event.
      process.send!(m, undefined, {}, () => undefined);
    } catch {
      // The daemon is gone; 'disconnect' follows.
    }
  };
  let profile: Profile;
  let logger: Logger;
  try {
    profile = resolveProfile(opts.profile ?? process.env.DROVER_PROFILE);
  } catch (err) {
    send({ kind: 'fatal', workerId, message: errorMessage(err) });
    console.error(`worker ${workerId}: ${errorMessage(err)}`);
    return 2;
  }
  // Once the daemon is gone (its stdout pipe with it), a forked worker logs to the daemon's log file.
  let orphaned = false;
  const toLogFile = forked ? orphanLogSink(profile, workerId) : undefined;
  const toStdout = streamSink(process.stdout, stdoutIsJournal(), toLogFile);
  guardStream(process.stderr);
  const sink: LogSink = {
    write: (level, scope, message, time) =>
      (orphaned && toLogFile ? toLogFile : toStdout).write(level, scope, message, time),
  };
  logger = opts.logger ?? createLogger({ level: profile.options['logging.level'], sinks: [sink] });
  logger = logger.child(forked ? '' : 'worker');
  let worker: Worker;
  try {
    worker = await startWorker(profile, workerId, logger, (s) => send({ kind: 'stats', ...s }));
  } catch (err) {
    logger.error(`worker failed to start: ${errorMessage(err)}`);
    send({ kind: 'fatal', workerId, message: errorMessage(err) });
    return 2;
  }
  const grace = profile.options['daemon.shutdown_grace'];
  logger.info(
    `worker ${workerId} consuming profile '${profile.name}' with ${worker.slots} slots (broker ${profile.broker.displayUrl})`,
  );
  send({ kind: 'ready', workerId });
  opts.onReady?.(worker);

  return new Promise<number>((resolve) => {
    let draining = false;
    const drain = (seconds: number, why: string): void => {
      if (draining) return;
      draining = true;
      logger.info(`${why}: draining (grace ${seconds} s)`);
      void worker
        .drain(seconds)
        .then(({ finished, released }) => {
          logger.info(`worker ${workerId} stopped (${finished} finished during drain, ${released.length} released)`);
          resolve(0);
        })
        .catch((err: unknown) => {
          logger.error(`drain failed: ${errorMessage(err)}`);
          resolve(1);
        });
    };
    process.on('SIGTERM', () => drain(grace, 'SIGTERM'));
    process.on('SIGINT', () => drain(grace, 'SIGINT'));
    if (forked) {
      const stopGroups = processGroups.onChange((pgids) => send({ kind: 'groups', workerId, pgids }));
      process.on('disconnect', () => {
        orphaned = true;
        stopGroups();
        drain(ORPHAN_GRACE_SECONDS, 'daemon gone');
        const limit = setTimeout(
          () => {
            logger.error(
              `orphaned worker ${workerId} did not finish within its grace; exiting (leases left to expire)`,
            );
            resolve(1);
          },
          ORPHAN_GRACE_SECONDS * 1000 + ORPHAN_EXIT_MARGIN_MS,
        );
        limit.unref();
      });
      process.on('message', (raw: unknown) => {
        const m = daemonRequest(raw, logger);
        if (m === null) return;
        if (m.kind === 'drain') drain(m.graceSeconds, 'drain requested');
        else if (m.kind === 'sweep') void worker.sweep(0);
        else send({ kind: 'stats', ...worker.stats() });
      });
    }
  });
}

// Run when executed directly (forked by the daemon), not when imported.
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  runWorker().then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
