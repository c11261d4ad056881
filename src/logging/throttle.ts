/**
 * Rate limiting of repeated log records. A condition that lasts (the store unreachable, the disk
 * full) makes every retry fail the same way; logging each failure would write a line a second per
 * worker for as long as it lasts (and, on a full disk, fill the log as well). A {@link LogThrottle}
 * writes the first record of a condition at once, then at most one per interval with the number of
 * records it held back, and one when the condition ends.
 *
 * @module
 */
import type { Logger, LogLevel } from './index.js';

/** Default interval between two records of one condition. */
export const DEFAULT_THROTTLE_MS = 30_000;

interface Condition {
  /** When a record of it was last written (ms). */
  lastWritten: number;
  /** Records held back since then. */
  held: number;
  /** Records of it since it began, written or not. */
  count: number;
}

/** Writes repeated records of one condition (a key) at most once per interval. */
export class LogThrottle {
  private readonly conditions = new Map<string, Condition>();

  constructor(
    private readonly logger: Logger,
    private readonly intervalMs = DEFAULT_THROTTLE_MS,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Logs `message` for the condition `key`, unless a record of it was written less than the
   * interval ago (then it is only counted). Key by the kind of failure (what failed and the error
   * code), not by the message, so that a count or an id in the text does not defeat the limit.
   */
  log(level: LogLevel, key: string, message: string): void {
    const t = this.now();
    const c = this.conditions.get(key);
    if (c === undefined) {
      this.conditions.set(key, { lastWritten: t, held: 0, count: 1 });
      this.logger[level](message);
      return;
    }
    c.count++;
    if (t - c.lastWritten < this.intervalMs) {
      c.held++;
      return;
    }
    const more = c.held > 0 ? ` (${c.held} more like it in the last ${Math.round((t - c.lastWritten) / 1000)} s)` : '';
    c.lastWritten = t;
    c.held = 0;
    this.logger[level](message + more);
  }

  /** Shorthand for `log('warn', …)`. */
  warn(key: string, message: string): void {
    this.log('warn', key, message);
  }

  /** Shorthand for `log('error', …)`. */
  error(key: string, message: string): void {
    this.log('error', key, message);
  }

  /** True while `key` has been logged and not {@link LogThrottle.end}ed. */
  active(key: string): boolean {
    return this.conditions.has(key);
  }

  /**
   * The condition `key` ended: forgets it (its next occurrence is logged at once) and, if it was
   * active, writes `message` at info level with the number of records held back.
   */
  end(key: string, message?: string): void {
    const c = this.conditions.get(key);
    if (c === undefined) return;
    this.conditions.delete(key);
    if (message !== undefined) {
      this.logger.info(c.count > 1 ? `${message} (after ${c.count} failures)` : message);
    }
  }
}
