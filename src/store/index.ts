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
import { InputError } from '../errors/index.js';
import type { StorageSettings } from '../config/config.js';
import type { Logger } from '../logging/index.js';
import type { ProcessStore } from './types.js';

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
}

/**
 * Opens the store of a profile and applies pending migrations (safe when several processes open
 * the same store at once).
 *
 * @throws StoreError when the database cannot be opened or reached (the message names it); a
 *   {@link StoreUnavailableError} when the reason may pass (server down, disk full).
 * @throws StoreVersionError when the schema was written by a newer Drover.
 */
export async function openStore(settings: StorageSettings, opts: OpenStoreOptions = {}): Promise<ProcessStore> {
  switch (settings.backend) {
    case 'sqlite': {
      const { openSqliteStore } = await import('./sqlite/sqlite-store.js');
      return openSqliteStore(settings.path, { logger: opts.logger });
    }
    case 'postgres': {
      const { openPostgresStore } = await import('./postgres/postgres-store.js');
      return openPostgresStore(settings.url, { logger: opts.logger });
    }
    default:
      throw new InputError(
        `openStore: unknown storage backend ${JSON.stringify((settings as { backend?: unknown }).backend)}`,
      );
  }
}
