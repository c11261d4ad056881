/** Helpers for the answers of `ProcessStore.complete`/`completeMany`. */
import type { CompleteResult } from '../../src/store/index.js';

/**
 * The answers of `complete`/`completeMany` without `stored`, for the tests of the lease and the
 * parents' wake-ups (the test of `stored` checks it against a read).
 */
export function verdicts<T extends CompleteResult | CompleteResult[]>(r: T): T {
  const one = ({ ok, wokenParentId }: CompleteResult): Omit<CompleteResult, 'stored'> => ({ ok, wokenParentId });
  return (Array.isArray(r) ? r.map(one) : one(r)) as T;
}
