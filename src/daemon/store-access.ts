/**
 * The daemon's connection to the profile's store, opened when first needed and kept open: a daemon
 * whose workers never die and whose profile uses RabbitMQ never touches the store, and a store
 * that cannot be reached costs a warning at the point of use, never the daemon. A store that
 * belongs to another profile (see docs/store.md) is refused on every open, logged at ERROR once.
 *
 * @module
 */
import type { Profile } from '../config/index.js';
import type { Logger } from '../logging/index.js';
import type { ProcessStore } from '../store/types.js';
import { StoreProfileMismatchError } from '../errors/index.js';

/** How long a store found to belong to another profile is refused before it is opened again. */
export const MISMATCH_RETRY_MS = 10_000;

/** A lazily opened store. */
export interface LazyStore {
  /** The open store (opened on the first call; a failed open is retried on the next call). */
  get(): Promise<ProcessStore>;
  /** Closes the store if it was opened; safe to call twice. */
  close(): Promise<void>;
}

/** A {@link LazyStore} for `profile`'s store. */
export function lazyStore(profile: Profile, logger: Logger): LazyStore {
  let store: Promise<ProcessStore> | null = null;
  let closed = false;
  let lastMismatch: string | null = null;
  let refused: { err: StoreProfileMismatchError; until: number } | null = null;
  return {
    get() {
      if (closed) return Promise.reject(new Error('the daemon closed its store connection'));
      // Another profile's store stays another's: look again only now and then, not on every poll.
      if (refused && Date.now() < refused.until) return Promise.reject(refused.err);
      if (!store) {
        store = import('../store/index.js').then((m) =>
          m.openStore(profile.storage, {
            logger: logger.child('store'),
            profile: { name: profile.name, uuid: profile.uuid },
            // SQLite: the daemon copies the WAL into the database in a thread, off every commit's path.
            checkpoints: 'background',
            // PostgreSQL: the daemon analyzes a table that fills up, for every connection's plans.
            keepStatistics: true,
          }),
        );
        store.catch((err: unknown) => {
          store = null; // try again next time
          // Not a passing trouble: say it loudly, once per distinct message.
          if (err instanceof StoreProfileMismatchError) {
            refused = { err, until: Date.now() + MISMATCH_RETRY_MS };
            if (err.message !== lastMismatch) logger.error(err.message);
            lastMismatch = err.message;
          }
        });
      }
      return store;
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
