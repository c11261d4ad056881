/**
 * Releasing the leases of dead workers, so their processes are re-dispatched at once instead of
 * after the lease expires (guarantee 3).
 *
 * The store is opened lazily, on the first release, and kept open: a daemon whose workers never
 * die never touches the store, and a store that cannot be reached costs a warning, not the daemon
 * (the leases then expire and the processes are re-dispatched by the periodic sweep).
 *
 * @module
 */
import type { Profile } from '../config/index.js';
import type { Logger } from '../logging/index.js';
import type { ProcessStore } from '../store/types.js';
import { errorMessage } from '../errors/index.js';

/** Releases a worker's leases in the store. */
export interface LeaseReleaser {
  /** Releases every lease `workerId` holds and marks those processes for dispatch; returns their ids. */
  release(workerId: string): Promise<number[]>;
  /** Closes the store connection; safe to call twice. */
  close(): Promise<void>;
}

/** A {@link LeaseReleaser} backed by the profile's store. */
export function storeLeaseReleaser(profile: Profile, logger: Logger): LeaseReleaser {
  let store: Promise<ProcessStore> | null = null;
  let closed = false;
  const open = (): Promise<ProcessStore> => {
    if (!store) {
      store = import('../store/index.js').then((m) => m.openStore(profile.storage, { logger: logger.child('store') }));
      store.catch(() => {
        store = null; // try again next time
      });
    }
    return store;
  };
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
      if (closed) return;
      closed = true;
      const s = store;
      store = null;
      if (s) await s.then((x) => x.close()).catch(() => undefined);
    },
  };
}
