/**
 * systemd readiness and watchdog notifications (sd_notify): `READY=1`, `STATUS=`, `WATCHDOG=1`,
 * `STOPPING=1`, `EXTEND_TIMEOUT_USEC=`.
 *
 * Two ways to send them (`DROVER_SD_NOTIFY` picks one; the default `auto` takes the first that
 * works):
 * - `addon`: the native `sd-notify` package (an optional dependency built against libsystemd):
 *   a datagram from the daemon process itself, so the unit may say `NotifyAccess=main`;
 * - `systemd-notify`: the `systemd-notify` program that comes with systemd (or
 *   `DROVER_SYSTEMD_NOTIFY`), for machines where the addon could not be built (no libsystemd-dev).
 *   Node cannot send Unix datagrams itself. The program runs with `--pid=<daemon pid>`: it sends
 *   the message as the daemon when it may (root), else under its own pid, which systemd accepts
 *   only with `NotifyAccess=all` (`drover daemon install` renders that when the addon is missing).
 *   It waits until the manager has processed each message (no `--no-block`), so a message from
 *   this short-lived helper is never dropped for want of a sender. One runs at a time; messages
 *   that queue up meanwhile are merged (the latest status wins), so a busy daemon spawns at most
 *   one helper at a time whatever its rate of status changes.
 *
 * Without `NOTIFY_SOCKET` in the environment every method is a no-op and nothing is loaded or
 * run, so a daemon started by hand, by launchd or on a machine without systemd pays nothing and
 * cannot fail here. A way that fails to load is logged once: systemd then sees no READY and the
 * unit's start times out, which says more than a crash would.
 *
 * @module
 */
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import type { Logger } from '../logging/index.js';

/** What we use of the native module. */
export interface SdNotifyModule {
  sendState(state: string): void;
}

/** How notifications are sent (see the module comment). */
export type NotifyMethod = 'addon' | 'systemd-notify';

/** Values of `DROVER_SD_NOTIFY`. */
export const NOTIFY_METHOD_CHOICES = ['auto', 'addon', 'systemd-notify'] as const;

/** Sends notifications to the service manager. */
export interface Notifier {
  /** True when a service manager listens (NOTIFY_SOCKET set) and a way to reach it was found. */
  readonly active: boolean;
  /** How notifications go out, or null when inactive. */
  readonly method: NotifyMethod | null;
  /**
   * Interval at which {@link Notifier.watchdog} must be called (half the manager's
   * `WATCHDOG_USEC`), in ms; null when no watchdog is configured for this process.
   */
  readonly watchdogIntervalMs: number | null;
  /** `READY=1` together with a status line. Sent once; later calls only update the status. */
  ready(status: string): void;
  /** `STATUS=...`, sent only when it differs from the last one sent. */
  status(text: string): void;
  /** `WATCHDOG=1`. */
  watchdog(): void;
  /**
   * `STOPPING=1` with a status line, and with `extendMs` the `EXTEND_TIMEOUT_USEC=` of the drain in
   * the same message: sent apart, the `systemd-notify` way runs one helper at a time, and a daemon
   * whose drain took less than the first one exited with the second still queued.
   */
  stopping(status: string, extendMs?: number): void;
  /** `EXTEND_TIMEOUT_USEC=...`: asks for more time while stopping (or starting). */
  extendTimeout(ms: number): void;
}

/** Loads the native module lazily (CommonJS, hence createRequire). */
export function loadSdNotify(): SdNotifyModule {
  const require = createRequire(import.meta.url);
  const mod = require('sd-notify') as Partial<SdNotifyModule>;
  if (typeof mod.sendState !== 'function') throw new Error('sd-notify has no sendState function');
  return mod as SdNotifyModule;
}

/**
 * Whether the native module loads here, and why not: what `drover daemon install` asks to decide
 * the unit's `NotifyAccess=` (the daemon, run by the same node from the same package, finds the same).
 */
export function sdNotifyAddonProblem(load: () => SdNotifyModule = loadSdNotify): string | null {
  try {
    load();
    return null;
  } catch (err) {
    return (err as Error).message.split('\n')[0] ?? 'it does not load';
  }
}

/**
 * The way `DROVER_SD_NOTIFY` asks for: `addon`, `systemd-notify`, or null for `auto` (unset).
 * @throws Error naming the variable and the choices for any other value.
 */
export function requestedNotifyMethod(env: NodeJS.ProcessEnv = process.env): NotifyMethod | null {
  const v = env.DROVER_SD_NOTIFY;
  if (v === undefined || v === '' || v === 'auto') return null;
  if (v === 'addon' || v === 'systemd-notify') return v;
  throw new Error(`DROVER_SD_NOTIFY must be one of ${NOTIFY_METHOD_CHOICES.join(', ')}, got ${JSON.stringify(v)}`);
}

/** The program of the `systemd-notify` way: `DROVER_SYSTEMD_NOTIFY`, else `systemd-notify` on PATH. */
export function systemdNotifyProgram(env: NodeJS.ProcessEnv = process.env): string {
  return env.DROVER_SYSTEMD_NOTIFY || 'systemd-notify';
}

function clean(text: string): string {
  // A newline would start a new assignment in the notification datagram.
  return text.replace(/[\r\n]+/g, ' ');
}

function extendLine(ms: number): string {
  return `EXTEND_TIMEOUT_USEC=${Math.max(0, Math.round(ms * 1000))}`;
}

/** Keys whose messages may be merged with a queued one (later values win, nothing is lost). */
const MERGEABLE = new Set(['STATUS', 'WATCHDOG', 'EXTEND_TIMEOUT_USEC']);

/** How long one `systemd-notify` may take before it is given up on (a manager that does not read). */
const HELPER_TIMEOUT_MS = 10_000;

/** Runs a program; the `systemd-notify` sender's seam for tests. */
export type HelperRunner = (
  program: string,
  args: string[],
  done: (err: (Error & { code?: unknown }) | null) => void,
) => void;

const execRunner: HelperRunner = (program, args, done) => {
  execFile(program, args, { timeout: HELPER_TIMEOUT_MS }, (err) => done(err));
};

/**
 * A sender of the `systemd-notify` way: runs `PROGRAM --pid=PID KEY=VALUE...` per message, one at
 * a time, merging what queues up meanwhile (see the module comment).
 */
export function systemdNotifySender(
  logger: Logger,
  opts: { program?: string; pid?: number; run?: HelperRunner } = {},
): (state: string) => void {
  const program = opts.program ?? 'systemd-notify';
  const pid = opts.pid ?? process.pid;
  const run = opts.run ?? execRunner;
  const queue: Array<Map<string, string>> = [];
  let busy = false;
  let missingReported = false;
  const next = (): void => {
    const message = queue.shift();
    if (message === undefined) {
      busy = false;
      return;
    }
    busy = true;
    const args = [`--pid=${pid}`, ...[...message].map(([k, v]) => `${k}=${v}`)];
    run(program, args, (err) => {
      if (err) {
        if (err.code === 'ENOENT') {
          if (!missingReported)
            logger.warn(`${program} was not found; systemd will not see the daemon's notifications`);
          missingReported = true;
        } else {
          logger.debug(`${program} ${args.join(' ')} failed: ${err.message}`);
        }
      }
      next();
    });
  };
  return (state) => {
    const message = new Map<string, string>();
    for (const line of state.split('\n')) {
      const eq = line.indexOf('=');
      if (eq > 0) message.set(line.slice(0, eq), line.slice(eq + 1));
    }
    const last = queue[queue.length - 1];
    const mergeable = (m: Map<string, string>): boolean => [...m.keys()].every((k) => MERGEABLE.has(k));
    if (last && mergeable(last) && mergeable(message)) for (const [k, v] of message) last.set(k, v);
    else queue.push(message);
    if (!busy) next();
  };
}

/** Creates the notifier for this process from the environment. */
export function createNotifier(
  logger: Logger,
  env: NodeJS.ProcessEnv = process.env,
  load: () => SdNotifyModule = loadSdNotify,
  run?: HelperRunner,
): Notifier {
  const socket = env.NOTIFY_SOCKET;
  let send: ((state: string) => void) | null = null;
  let method: NotifyMethod | null = null;
  if (socket !== undefined && socket !== '') {
    let requested: NotifyMethod | null = null;
    try {
      requested = requestedNotifyMethod(env);
    } catch (err) {
      logger.warn(`${(err as Error).message}; using auto`);
    }
    if (requested !== 'systemd-notify') {
      try {
        const mod = load();
        send = (state) => mod.sendState(state);
        method = 'addon';
      } catch (err) {
        const why = (err as Error).message.split('\n')[0];
        if (requested === 'addon') {
          logger.warn(
            `NOTIFY_SOCKET is set but the sd-notify module failed to load (${why}); ` +
              'systemd will not see readiness or watchdog pings',
          );
        } else {
          logger.info(
            `the sd-notify module is not available (${why}); notifying systemd through ${systemdNotifyProgram(env)}`,
          );
        }
      }
    }
    if (send === null && requested !== 'addon') {
      const program = systemdNotifyProgram(env);
      send = systemdNotifySender(logger, { program, run });
      method = 'systemd-notify';
      if (requested === 'systemd-notify') logger.info(`notifying systemd through ${program} (DROVER_SD_NOTIFY)`);
    }
  }
  let watchdogIntervalMs: number | null = null;
  const usec = Number(env.WATCHDOG_USEC);
  const wdPid = env.WATCHDOG_PID;
  if (
    send &&
    Number.isFinite(usec) &&
    usec > 0 &&
    (wdPid === undefined || wdPid === '' || Number(wdPid) === process.pid)
  ) {
    watchdogIntervalMs = Math.max(1, Math.floor(usec / 1000 / 2));
  }
  let readySent = false;
  let lastStatus: string | null = null;
  const notify = (state: string): void => {
    if (!send) return;
    try {
      send(state);
    } catch (err) {
      logger.debug(`sd_notify failed: ${(err as Error).message}`);
    }
  };
  return {
    active: send !== null,
    method,
    watchdogIntervalMs,
    ready(status) {
      const s = clean(status);
      if (readySent) {
        this.status(s);
        return;
      }
      readySent = true;
      lastStatus = s;
      notify(`READY=1\nSTATUS=${s}`);
    },
    status(text) {
      const s = clean(text);
      if (s === lastStatus) return;
      lastStatus = s;
      notify(`STATUS=${s}`);
    },
    watchdog() {
      if (watchdogIntervalMs !== null) notify('WATCHDOG=1');
    },
    stopping(status, extendMs) {
      lastStatus = clean(status);
      notify(`STOPPING=1\nSTATUS=${lastStatus}${extendMs === undefined ? '' : `\n${extendLine(extendMs)}`}`);
    },
    extendTimeout(ms) {
      notify(extendLine(ms));
    },
  };
}
