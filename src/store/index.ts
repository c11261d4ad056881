/**
 * The process store: {@link openStore} opens the SQLite or PostgreSQL adapter named by a profile's
 * storage settings and brings its schema up to date. See {@link ProcessStore} for the contract and
 * docs/store.md for the schema and the reasons behind it.
 *
 * The adapters are loaded on demand: importing this module loads neither `better-sqlite3` nor
 * `pg` (~85 ms and ~150 ms at start-up); {@link openStore} imports the one the profile uses.
 *
 * @module
 */
import type { SqliteCheckpoints } from './sqlite/sqlite-store.js';
import { InputError, StoreProfileMismatchError } from '../errors/index.js';
import { describeStorage, type StorageSettings } from '../config/config.js';
import type { Logger } from '../logging/index.js';
import type { ProcessStore, StoreOwner } from './types.js';

export * from './types.js';
export type { SqliteStore, SqliteStoreOptions } from './sqlite/sqlite-store.js';
export type { PostgresStore, PostgresStoreOptions } from './postgres/postgres-store.js';
export { displayPostgresUrl } from './postgres/url.js';
export { SQLITE_SCHEMA_VERSION } from './sqlite/migrations.js';
export { POSTGRES_SCHEMA_VERSION } from './postgres/migrations.js';

/** Options of {@link openStore}. */
export interface OpenStoreOptions {
  /** Receives a line per applied migration and warnings about connection trouble (rate-limited). */
  logger?: Logger;
  /**
   * The profile that opens the store to consume from it (daemons and workers): a store that records
   * no profile adopts it (logged), one that records another is refused with a
   * {@link StoreProfileMismatchError}. Without it, nothing is checked or recorded.
   */
  profile?: { name: string; uuid: string };
  /** SQLite: who checkpoints the WAL (default `'inline'`). */
  checkpoints?: SqliteCheckpoints;
  /**
   * PostgreSQL: analyze a hot table as soon as it doubled since its statistics were taken, so that
   * the plans each connection keeps follow a table that fills up (see postgres/statistics.ts). The
   * daemon's store does; default false.
   */
  keepStatistics?: boolean;
}

/**
 * The message of a store that belongs to another profile: names the store, both profiles and what
 * to do.
 */
export function storeMismatchMessage(
  settings: StorageSettings,
  profile: { name: string; uuid: string },
  owner: StoreOwner,
  refusing = 'to consume from it',
): string {
  const ownerName = owner.name === null ? 'another profile' : `profile '${owner.name}'`;
  return (
    `store ${describeStorage(settings)} belongs to ${ownerName} (uuid ${owner.uuid}), not to profile ` +
    `'${profile.name}' (uuid ${profile.uuid}); refusing ${refusing}. If the store was copied from ` +
    `another profile's, or two profiles point at one store, point '${profile.name}' at a store of its own ` +
    `(drover profile setup with another --sqlite-path or --postgres-url); if this machine should work for ` +
    `that profile, run 'drover profile export' on a machine that has it and 'drover profile import FILE' here`
  );
}

/**
 * Checks that the store belongs to `profile`, adopting it when it records no profile.
 * @throws StoreProfileMismatchError when it records another.
 */
export async function checkStoreProfile(
  store: ProcessStore,
  settings: StorageSettings,
  profile: { name: string; uuid: string },
  logger?: Logger,
): Promise<StoreOwner> {
  const { owner, adopted } = await store.adoptProfile(profile.uuid, profile.name);
  if (owner.uuid.toLowerCase() !== profile.uuid.toLowerCase()) {
    throw new StoreProfileMismatchError(storeMismatchMessage(settings, profile, owner));
  }
  if (adopted) {
    const counts = await store.countByState();
    const n = Object.values(counts).reduce((a, b) => a + b, 0);
    const where = describeStorage(settings);
    if (n > 0) {
      logger?.warn(
        `store ${where} holds ${n} process(es) but recorded no profile (made before Drover recorded it): ` +
          `it now belongs to profile '${profile.name}' (uuid ${profile.uuid})`,
      );
    } else {
      logger?.info(`store ${where} now belongs to profile '${profile.name}' (uuid ${profile.uuid})`);
    }
  }
  return owner;
}

/**
 * Opens the store of a profile and applies pending migrations (safe when several processes open
 * the same store at once).
 *
 * @throws StoreError when the database cannot be opened or reached (the message names it); a
 *   {@link StoreUnavailableError} when the reason may pass (server down, disk full).
 * @throws StoreVersionError when the schema was written by a newer Drover.
 * @throws StoreProfileMismatchError when `opts.profile` is given and the store belongs to another.
 */
export async function openStore(settings: StorageSettings, opts: OpenStoreOptions = {}): Promise<ProcessStore> {
  let store: ProcessStore;
  switch (settings.backend) {
    case 'sqlite': {
      const { openSqliteStore } = await import('./sqlite/sqlite-store.js');
      store = openSqliteStore(settings.path, { logger: opts.logger, checkpoints: opts.checkpoints });
      break;
    }
    case 'postgres': {
      const { openPostgresStore } = await import('./postgres/postgres-store.js');
      store = await openPostgresStore(settings.url, { logger: opts.logger, keepStatistics: opts.keepStatistics });
      break;
    }
    default:
      throw new InputError(
        `openStore: unknown storage backend ${JSON.stringify((settings as { backend?: unknown }).backend)}`,
      );
  }
  if (opts.profile) {
    try {
      await checkStoreProfile(store, settings, opts.profile, opts.logger);
    } catch (err) {
      await store.close().catch(() => undefined);
      throw err;
    }
  }
  return store;
}
