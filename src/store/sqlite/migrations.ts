/**
 * Numbered schema migrations of the SQLite store. Each is applied once, in order, inside the
 * `BEGIN IMMEDIATE` transaction that {@link migrateSqlite} opens, and recorded in `schema_version`.
 * Never edit a released migration: add the next number.
 *
 * @module
 */
import type Database from 'better-sqlite3';
import { StoreVersionError } from '../../errors/index.js';

/** One schema migration. */
export interface SqliteMigration {
  version: number;
  description: string;
  sql: string;
}

/** All migrations, in order. */
export const SQLITE_MIGRATIONS: readonly SqliteMigration[] = [
  {
    version: 1,
    description: 'processes, journal, reports, awaited children',
    sql: `
      CREATE TABLE processes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        uuid TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        label TEXT,
        state TEXT NOT NULL
          CHECK (state IN ('created', 'running', 'waiting', 'finished', 'excepted', 'killed')),
        paused INTEGER NOT NULL DEFAULT 0,
        kill_requested INTEGER NOT NULL DEFAULT 0,
        inputs TEXT NOT NULL,
        outputs TEXT,
        exit_status INTEGER,
        exit_message TEXT,
        exception TEXT,
        parent_id INTEGER REFERENCES processes (id),
        worker_id TEXT,
        lease_owner TEXT,
        lease_expires_at INTEGER,
        runs INTEGER NOT NULL DEFAULT 0,
        dispatch_requested_at INTEGER,
        waiting_on INTEGER NOT NULL DEFAULT 0,
        ctime INTEGER NOT NULL,
        mtime INTEGER NOT NULL
      );
      CREATE INDEX processes_dispatch ON processes (dispatch_requested_at, id)
        WHERE dispatch_requested_at IS NOT NULL;
      -- Only leased rows (a few per worker slot): serves release by owner, and the expiry sweep by
      -- a skip-scan. One index, not two, since every claim and completion updates it.
      CREATE INDEX processes_lease ON processes (lease_owner, lease_expires_at) WHERE lease_owner IS NOT NULL;
      CREATE INDEX processes_parent ON processes (parent_id) WHERE parent_id IS NOT NULL;
      CREATE INDEX processes_state ON processes (state);
      CREATE INDEX processes_type ON processes (type);
      CREATE INDEX processes_ctime ON processes (ctime);

      CREATE TABLE journal (
        process_id INTEGER NOT NULL REFERENCES processes (id),
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('step', 'submit')),
        name TEXT NOT NULL,
        result TEXT NOT NULL,
        PRIMARY KEY (process_id, seq)
      ) WITHOUT ROWID;

      CREATE TABLE reports (
        id INTEGER PRIMARY KEY,
        process_id INTEGER NOT NULL REFERENCES processes (id),
        time INTEGER NOT NULL,
        message TEXT NOT NULL
      );
      CREATE INDEX reports_process ON reports (process_id, id);

      CREATE TABLE process_awaits (
        parent_id INTEGER NOT NULL REFERENCES processes (id),
        child_id INTEGER NOT NULL REFERENCES processes (id),
        PRIMARY KEY (parent_id, child_id)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 2,
    description: 'dispatched_at: when a process was last handed to the bus, until it is claimed',
    sql: `
      ALTER TABLE processes ADD COLUMN dispatched_at INTEGER;
      -- The processes handed to the bus and not claimed since, oldest first: counted and read by the
      -- re-dispatch check (one row per task the bus should hold). Its predicate is the one those queries use.
      CREATE INDEX processes_unclaimed ON processes (dispatched_at, id)
        WHERE dispatched_at IS NOT NULL AND dispatch_requested_at IS NULL AND paused = 0;
    `,
  },
  {
    version: 3,
    description: 'report lines keyed by their place in the run, so a replay does not write them again',
    sql: `
      -- Where in its run a line was reported: the journal position (seq) and its index among the
      -- lines reported there. NULL for lines of older versions and for lines added without one.
      ALTER TABLE reports ADD COLUMN step_position INTEGER;
      ALTER TABLE reports ADD COLUMN step_index INTEGER;
      -- A replay reports the same (position, index) again: the insert finds it here and does nothing.
      -- NULLs are distinct, so lines without a position never collide.
      CREATE UNIQUE INDEX reports_position ON reports (process_id, step_position, step_index);
    `,
  },
  {
    version: 4,
    description: 'daemons: the registry of the daemons of the profile and their workers, on every host',
    sql: `
      CREATE TABLE daemons (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        version TEXT NOT NULL,
        state TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        heartbeat_at INTEGER NOT NULL,
        workers TEXT NOT NULL
      );
    `,
  },
  {
    version: 5,
    description: "profile_options: the profile's shared options, the same for every host",
    sql: `
      CREATE TABLE profile_options (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at INTEGER NOT NULL
      );
    `,
  },
  {
    version: 6,
    description: 'store_meta: the profile the store belongs to',
    sql: `
      -- Facts about the store itself; 'profile_uuid' (and, for messages, 'profile_name') are set
      -- by the first daemon or worker that opens the store, and checked by every later one.
      CREATE TABLE store_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        set_at INTEGER NOT NULL
      ) WITHOUT ROWID;
    `,
  },
];

/** The newest schema version this code knows. */
export const SQLITE_SCHEMA_VERSION = SQLITE_MIGRATIONS[SQLITE_MIGRATIONS.length - 1]!.version;

/**
 * Brings the schema up to date. Runs in one `BEGIN IMMEDIATE` transaction, which takes SQLite's
 * write lock first, so two processes opening a new file at once apply each migration exactly once:
 * the second waits (busy timeout), then finds the schema current. Returns the schema version.
 *
 * @throws StoreVersionError when the file was written by a newer Drover.
 */
export function migrateSqlite(db: Database.Database, file: string, onApplied?: (m: SqliteMigration) => void): number {
  const run = db.transaction((): number => {
    db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)');
    const row = db.prepare('SELECT max(version) AS v FROM schema_version').get() as { v: number | null };
    const current = row.v ?? 0;
    if (current > SQLITE_SCHEMA_VERSION) {
      throw new StoreVersionError(
        `SQLite store ${file} has schema version ${current}, newer than this Drover understands ` +
          `(${SQLITE_SCHEMA_VERSION}); upgrade Drover to use it`,
      );
    }
    const insert = db.prepare('INSERT INTO schema_version (version, applied_at) VALUES (?, ?)');
    for (const m of SQLITE_MIGRATIONS) {
      if (m.version <= current) continue;
      db.exec(m.sql);
      insert.run(m.version, Date.now());
      onApplied?.(m);
    }
    return Math.max(current, SQLITE_SCHEMA_VERSION);
  });
  return run.immediate();
}
