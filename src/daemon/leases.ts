/**
 * Releasing the leases of dead workers, so their processes are re-dispatched at once instead of
 * after the lease expires (guarantee 3).
 *
 * Which workers are dead is not read from a list of the dead (a file can be stale or missing, a
 * release can fail while the store is away): every lease whose owner is a worker a daemon of this
 * profile forked on this host (its id starts with the supervisor's prefix) is released unless that
 * worker is alive: the daemon's own workers, and orphans of a previous daemon still draining.
 *
 * The store is the daemon's lazily opened one (store-access.ts): a store that cannot be reached
 * costs a warning, not the daemon; the daemon tries again later (and the leases expire meanwhile).
 *
 * @module
 */
import type { Logger } from '../logging/index.js';
import { errorMessage } from '../errors/index.js';
import type { ReleasedLease } from '../store/types.js';
import type { LazyStore } from './store-access.js';

/** Releases dead workers' leases in the store. */
export interface LeaseReleaser {
  /**
   * Releases every lease of an owner whose id starts with `ownerPrefix`, except `liveOwners`, and
   * marks those processes for dispatch. Resolves with what was released, or null when the store
   * could not be reached (after a few tries).
   */
  releaseDead(ownerPrefix: string, liveOwners: readonly string[]): Promise<ReleasedLease[] | null>;
  /** Closes the store connection; safe to call twice. */
  close(): Promise<void>;
}

/** A {@link LeaseReleaser} backed by the daemon's store connection. */
export function storeLeaseReleaser(store: LazyStore, logger: Logger): LeaseReleaser {
  let closed = false;
  return {
    async releaseDead(ownerPrefix, liveOwners) {
      if (closed) return [];
      let lastErr: unknown;
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          return await (await store.get()).releaseLeasesByPrefix(ownerPrefix, liveOwners);
        } catch (err) {
          lastErr = err;
          await new Promise((r) => setTimeout(r, 250 * (attempt + 1)));
        }
      }
      logger.warn(`could not release the leases of dead workers: ${errorMessage(lastErr)}; trying again later`);
      return null;
    },
    async close() {
      closed = true;
    },
  };
}
