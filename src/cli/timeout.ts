/**
 * The one unit of every timeout a drover command takes: seconds, fractions allowed (`-t 0.5`).
 *
 * @module
 */

/** Longest timeout accepted, in seconds (a day): longer waits are better done in a loop. */
export const MAX_TIMEOUT_SECONDS = 86_400;

/** `text` as a timeout in seconds: a positive finite number up to a day; null when it is not one. */
export function parseTimeoutSeconds(text: string): number | null {
  if (!/^\s*(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?\s*$/i.test(text)) return null;
  const n = Number(text);
  return Number.isFinite(n) && n > 0 && n <= MAX_TIMEOUT_SECONDS ? n : null;
}
