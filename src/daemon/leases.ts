/**
 * Releasing the leases of dead workers, so their processes are re-dispatched at once instead of
 * after the lease expires (guarantee 3).
 *
 * The store is the daemon's lazily opened one (store-access.ts): a store that cannot be reached
 * costs a warning, not the daemon (the leases then expire and the processes are re-dispatched by
 * the periodic sweep).
 *
 * @module
 */
import type { Logger } from '../logging/index.js';
import { errorMessage } from '../errors/index.js';
import type { LazyStore } from './store-access.js';

/** Releases a worker's leases in the store. */
export interface LeaseReleaser {
  /** Releases every lease `workerId` holds and marks those processes for dispatch; returns their ids. */
  release(workerId: string): Promise<number[]>;
  /** Closes the store connection; safe to call twice. */
  close(): Promise<void>;
}

/** A {@link LeaseReleaser} backed by the daemon's store connection. */
export function storeLeaseReleaser(store: LazyStore, logger: Logger): LeaseReleaser {
  let closed = false;
  const open = () => store.get();
  return {
    async release(workerId) {
      if (closed) return [];
      let lastErr: unknown;
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          const s = await open();
          return await s.releaseLeases(workerId);
        } catch (err) {
          lastErr = err;
          await new Promise((r) => setTimeout(r, 250 * (attempt + 1)));
        }
      }
      logger.warn(
        `could not release the leases of worker ${workerId}: ${errorMessage(lastErr)}; ` +
          'its processes resume when their leases expire',
      );
      return [];
    },
    async close() {
      closed = true;
    },
  };
}
