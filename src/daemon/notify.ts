/**
 * systemd readiness and watchdog notifications (sd_notify), through the native `sd-notify`
 * package.
 *
 * Without `NOTIFY_SOCKET` in the environment every method is a no-op and the native module is
 * never loaded, so a daemon started by hand, by launchd or on a machine without libsystemd pays
 * nothing and cannot fail here. A module that fails to load is logged once and ignored: systemd
 * then sees no READY and the unit's start times out, which says more than a crash would.
 *
 * @module
 */
import { createRequire } from 'node:module';
import type { Logger } from '../logging/index.js';

/** What we use of the native module. */
export interface SdNotifyModule {
  sendState(state: string): void;
}

/** Sends notifications to the service manager. */
export interface Notifier {
  /** True when a service manager listens (NOTIFY_SOCKET set and the module loaded). */
  readonly active: boolean;
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
  /** `STOPPING=1` with a status line. */
  stopping(status: string): void;
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

function clean(text: string): string {
  // A newline would start a new assignment in the notification datagram.
  return text.replace(/[\r\n]+/g, ' ');
}

/** Creates the notifier for this process from the environment. */
export function createNotifier(
  logger: Logger,
  env: NodeJS.ProcessEnv = process.env,
  load: () => SdNotifyModule = loadSdNotify,
): Notifier {
  const socket = env.NOTIFY_SOCKET;
  let mod: SdNotifyModule | null = null;
  if (socket !== undefined && socket !== '') {
    try {
      mod = load();
    } catch (err) {
      logger.warn(
        `NOTIFY_SOCKET is set but the sd-notify module failed to load (${(err as Error).message}); ` +
          'systemd will not see readiness or watchdog pings',
      );
    }
  }
  let watchdogIntervalMs: number | null = null;
  const usec = Number(env.WATCHDOG_USEC);
  const wdPid = env.WATCHDOG_PID;
  if (
    mod &&
    Number.isFinite(usec) &&
    usec > 0 &&
    (wdPid === undefined || wdPid === '' || Number(wdPid) === process.pid)
  ) {
    watchdogIntervalMs = Math.max(1, Math.floor(usec / 1000 / 2));
  }
  let readySent = false;
  let lastStatus: string | null = null;
  const send = (state: string): void => {
    if (!mod) return;
    try {
      mod.sendState(state);
    } catch (err) {
      logger.debug(`sd_notify failed: ${(err as Error).message}`);
    }
  };
  return {
    active: mod !== null,
    watchdogIntervalMs,
    ready(status) {
      const s = clean(status);
      if (readySent) {
        this.status(s);
        return;
      }
      readySent = true;
      lastStatus = s;
      send(`READY=1\nSTATUS=${s}`);
    },
    status(text) {
      const s = clean(text);
      if (s === lastStatus) return;
      lastStatus = s;
      send(`STATUS=${s}`);
    },
    watchdog() {
      if (watchdogIntervalMs !== null) send('WATCHDOG=1');
    },
    stopping(status) {
      lastStatus = clean(status);
      send(`STOPPING=1\nSTATUS=${lastStatus}`);
    },
    extendTimeout(ms) {
      send(`EXTEND_TIMEOUT_USEC=${Math.max(0, Math.round(ms * 1000))}`);
    },
  };
}
