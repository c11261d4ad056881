/**
 * The SQLite process store, on better-sqlite3.
 *
 * One file is shared by several OS processes at once (the CLI submitting, two or more workers, the
 * daemon). So:
 * - WAL journal (readers never block the writer), `synchronous=NORMAL` (a commit is durable at the
 *   next checkpoint; a power cut may lose the last commits but never corrupts), a busy timeout (a
 *   writer waits for the write lock instead of failing), foreign keys on.
 * - Every method that writes runs in one `BEGIN IMMEDIATE` transaction: the write lock is taken at
 *   BEGIN, so a transaction never has to upgrade a read snapshot to a write (which SQLite refuses
 *   with SQLITE_BUSY at once, without waiting). Inside one OS process better-sqlite3 is synchronous,
 *   so a method's transaction is never interleaved with another call.
 * - Statements are prepared once; batch calls run one transaction for the whole batch.
 *
 * Semantics are those of {@link ProcessStore} and docs/store.md; the points where SQL decides:
 * - A live lease is `lease_owner IS NOT NULL AND lease_expires_at > now`. An expired lease still
 *   names its owner until {@link SqliteStore.pendingDispatches} or a claim takes it over; until then
 *   the owner may still renew it, complete, journal or wait.
 * - A claim's fencing token is the `runs` counter it set (`runs = runs + 1`, in the claim only);
 *   every write of a run is conditional on `lease_owner = owner AND runs = claim`.
 * - Dispatch pending is `dispatch_requested_at IS NOT NULL`: set at creation, release, wake-up,
 *   un-pause and lease expiry; cleared by a claim, by {@link SqliteStore.markDispatched} and when the
 *   process ends or starts waiting.
 * - Handed over and not claimed is `dispatched_at IS NOT NULL AND dispatch_requested_at IS NULL AND
 *   paused = 0` (the predicate of the `processes_unclaimed` index): `dispatched_at` is set by
 *   markDispatched and cleared by a claim (refused or not) and a kill.
 * - `waiting_on` counts the rows of `process_awaits` of a waiting process: the children it waits for
 *   that had not terminated. A child's termination deletes its row and decrements the count; the
 *   one that brings it to 0 marks the parent pending and reports it as woken.
 * - Times are `Date.now()` of the calling process (all processes share the machine's clock).
 *
 * Failures that pass are {@link StoreUnavailableError}s: the write lock held by another process
 * past the busy timeout (SQLITE_BUSY), an I/O error, and a full disk ({@link StoreFullError},
 * SQLITE_FULL). A failed call wrote nothing (its transaction was rolled back), so the caller may
 * repeat it. A full disk must not wedge the store once space is back:
 * - The WAL is kept small: checkpoints past {@link WAL_AUTOCHECKPOINT_BYTES} of WAL, or by the
 *   daemon's thread ({@link SqliteCheckpoints}), and
 *   `journal_size_limit` ({@link JOURNAL_SIZE_LIMIT}) truncates it to that size each time it
 *   restarts, so a WAL that grew (a burst, or checkpoints that failed while the disk was full)
 *   gives its space back instead of keeping it.
 * - After SQLITE_FULL, each connection tries a `wal_checkpoint(TRUNCATE)` (at most once a second,
 *   with a short busy timeout so it never stalls the process) until one succeeds: it copies the
 *   WAL into the database and empties it. Without it, a WAL whose checkpoints failed while the
 *   disk was full only grows, as every process keeps writing to its end, and eats the freed space.
 *
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import {
  DroverError,
  InputError,
  LeaseLostError,
  NonDeterminismError,
  ProcessNotFoundError,
  StoreError,
  StoreFullError,
  StoreUnavailableError,
  errorMessage,
} from '../../errors/index.js';
import type { Logger } from '../../logging/index.js';
import {
  RESULT_LIMITS,
  checkJsonValue,
  isTerminal,
  type JournalEntry,
  type JsonValue,
  type ProcessOutcome,
  type ProcessRecord,
  type ProcessState,
  type ReportLine,
} from '../../protocol/index.js';
import {
  DAY_MS,
  checkFilter,
  checkId,
  checkIds,
  checkJournalEntry,
  checkLimit,
  checkMessage,
  checkMs,
  checkNewProcess,
  checkCompletions,
  checkUpTo,
  checkClaim,
  checkReport,
  checkOwner,
  checkOwners,
  checkRunClaims,
  claimRefusal,
  checkRegistration,
  checkOptionKey,
  deleteRefusal,
  leaseIsLive,
  emptyCounts,
  storedOutcome,
  type CheckedCompletion,
  type CheckedNewProcess,
} from '../common.js';
import type { CheckpointerData } from './checkpointer.js';
import type {
  ClaimResult,
  CompleteResult,
  Completion,
  DaemonRegistration,
  DeleteResult,
  KillOutcome,
  KillResult,
  NewProcess,
  OutboxCounts,
  ProcessFilter,
  ReleasedLease,
  ReportPosition,
  ProcessStore,
  RegisteredDaemon,
  RunClaim,
  WaitResult,
  AdoptResult,
  StoreOwner,
} from '../types.js';
import { migrateSqlite } from './migrations.js';
import { checkAdoptArgs, ownerFromRows, type MetaRow } from '../common.js';

/** Options of {@link openSqliteStore}. */
export interface SqliteStoreOptions {
  logger?: Logger;
  /** How long a writer waits for another process's write lock before failing (default 10 s). */
  busyTimeoutMs?: number;
  /** Who copies the WAL into the database (default `'inline'`). */
  checkpoints?: SqliteCheckpoints;
}

/**
 * Who checkpoints the WAL of a connection's store:
 * - `'inline'`: the connection itself, in the commit that takes the WAL past
 *   {@link WAL_AUTOCHECKPOINT_BYTES} (SQLite's automatic checkpoint). What a client or a worker
 *   without a daemon uses.
 * - `'background'`: a thread of this process, every 100 ms (`CHECKPOINT_INTERVAL_MS` in checkpointer.ts),
 *   so no commit of any process waits for a checkpoint while the WAL stays small. The profile's
 *   daemon opens its store so.
 * - `'by-daemon'`: the daemon's thread does (the workers it forked); the connection checkpoints
 *   itself only past {@link FALLBACK_AUTOCHECKPOINT_BYTES}, should the daemon's thread be gone.
 */
export type SqliteCheckpoints = 'inline' | 'background' | 'by-daemon';

/** Default busy timeout: generous, since transactions are short and a failure costs more than a wait. */
const DEFAULT_BUSY_TIMEOUT_MS = 10_000;

/**
 * Page size of a new database: 1 KiB, not SQLite's 4 KiB. Every commit writes to the WAL each page
 * it changed, whole, and a submit, a claim and a completion each change a few pages of the table
 * and of each index they touch: with 4 KiB pages the commits of a one-at-a-time loop held the write
 * lock long enough that a submitter slept waiting for it about once every four submits. Awaited
 * one-at-a-time submits ran 23-43% faster with 1 KiB pages (two runs each way, side by side, 1 and
 * 2 workers); bulk submits of 10,000 no slower. A database keeps the page size it was created with
 * (changing it takes a VACUUM outside WAL mode), so older stores keep 4 KiB.
 */
export const NEW_DATABASE_PAGE_SIZE = 1024;

/**
 * WAL bytes that trigger an automatic checkpoint: 1 MiB, not SQLite's 1000 pages (4 MiB of 4 KiB
 * pages), so the WAL of a store on a small disk takes little of it (no measurable cost in
 * throughput: the pages copied are the same, in smaller batches). In bytes, since the pragma
 * counts pages and a database's page size is its own.
 */
export const WAL_AUTOCHECKPOINT_BYTES = 1024 * 1024;

/**
 * The automatic checkpoint of a connection whose checkpoints another does (see
 * {@link SqliteCheckpoints}): 64 MiB, reached only when that other is not there. Not SQLite's
 * 4 MiB: one-at-a-time round trips wrote about 4 MiB of WAL in the 100 ms between two of the
 * daemon's checkpoints (every small transaction writes whole pages of the table and each index it
 * touches; measured with 4 KiB pages), so a worker's or a client's commit crossed the mark and
 * copied the WAL itself, with two fsyncs: the p99 of a submit-and-wait round trip was 14-20 ms
 * with 4 MiB, 4.6-5.2 ms with 64 MiB (measured here, side by side).
 */
export const FALLBACK_AUTOCHECKPOINT_BYTES = 64 * 1024 * 1024;

/** Size the WAL is truncated to when it restarts: one auto-checkpoint's worth. */
export const JOURNAL_SIZE_LIMIT = WAL_AUTOCHECKPOINT_BYTES;

/** Least time between two tries of the WAL-emptying checkpoint after a full disk. */
const RECOVER_INTERVAL_MS = 1000;
/** Busy timeout of that checkpoint: it waits for other processes' transactions only this long. */
const RECOVER_BUSY_TIMEOUT_MS = 100;

/**
 * How long {@link SqliteStore.guard} sleeps between tries of a call that found the database locked,
 * in ms, step by step (the last repeats). SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25
 * ms...: a worker whose BEGIN IMMEDIATE met another's 3 ms transaction slept up to 8 ms, longer
 * than the transaction it waited for. Each try costs a few microseconds (a lock attempt on the
 * WAL index), so short steps cost little CPU.
 */
const BUSY_STEPS_MS = [0.1, 0.2, 0.3, 0.5, 0.5, 1, 1, 1, 2];

/** One sleep of the calling thread (the store is synchronous: its caller waits as it would in SQLite's handler). */
const sleepCell = new Int32Array(new SharedArrayBuffer(4));
function sleepSync(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, ms);
}

/** Result codes of failures that pass (besides SQLITE_FULL): locked, I/O errors, out of memory. */
function transientSqliteCode(code: string): boolean {
  return (
    code.startsWith('SQLITE_BUSY') ||
    code.startsWith('SQLITE_LOCKED') ||
    code.startsWith('SQLITE_IOERR') ||
    code === 'SQLITE_CANTOPEN' ||
    code === 'SQLITE_NOMEM' ||
    code === 'SQLITE_PROTOCOL'
  );
}

/** Columns of a {@link ProcessRecord}, in SELECT and RETURNING lists. */
const COLS =
  'id, uuid, type, label, state, paused, kill_requested, inputs, outputs, exit_status, exit_message, exception, ' +
  'parent_id, worker_id, lease_owner, lease_expires_at, runs, ctime, mtime';

const ACTIVE = "('created', 'running', 'waiting')";

interface ProcessRow {
  id: number;
  uuid: string;
  type: string;
  label: string | null;
  state: ProcessState;
  paused: number;
  kill_requested: number;
  inputs: string;
  outputs: string | null;
  exit_status: number | null;
  exit_message: string | null;
  exception: string | null;
  parent_id: number | null;
  worker_id: string | null;
  lease_owner: string | null;
  lease_expires_at: number | null;
  runs: number;
  ctime: number;
  mtime: number;
}

interface JournalRow {
  seq: number;
  kind: 'step' | 'submit';
  name: string;
  result: string;
}

interface LeaseRow {
  runs: number;
  state: ProcessState;
  paused: number;
  waiting_on: number;
  lease_owner: string | null;
  lease_expires_at: number | null;
  parent_id: number | null;
  worker_id: string | null;
}

/** True when two JSON texts hold the same value (key order aside). */
function sameJson(a: string, b: string): boolean {
  return a === b || isDeepStrictEqual(JSON.parse(a), JSON.parse(b));
}

function toRecord(r: ProcessRow): ProcessRecord {
  return {
    id: r.id,
    uuid: r.uuid,
    type: r.type,
    label: r.label,
    state: r.state,
    paused: r.paused !== 0,
    killRequested: r.kill_requested !== 0,
    inputs: JSON.parse(r.inputs) as JsonValue,
    outputs: r.outputs === null ? null : (JSON.parse(r.outputs) as JsonValue),
    exitStatus: r.exit_status,
    exitMessage: r.exit_message,
    exception: r.exception,
    parentId: r.parent_id,
    workerId: r.worker_id,
    leaseOwner: r.lease_owner,
    leaseExpiresAt: r.lease_expires_at,
    runs: r.runs,
    ctime: r.ctime,
    mtime: r.mtime,
  };
}

function toEntry(r: JournalRow): JournalEntry {
  return { seq: r.seq, kind: r.kind, name: r.name, result: JSON.parse(r.result) as JsonValue };
}

function sqliteCode(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : '';
}

/**
 * Opens (creating if missing) the SQLite store at `file` and brings its schema up to date. The
 * parent directory is created 0700 and the file 0600 when missing.
 *
 * @throws StoreError when the file cannot be opened or is not a database.
 * @throws StoreVersionError when its schema is newer than this code.
 */
export function openSqliteStore(file: string, options: SqliteStoreOptions = {}): SqliteStore {
  const memory = file === ':memory:';
  const target = memory ? file : path.resolve(file);
  let db: Database.Database | undefined;
  try {
    if (!memory) {
      const dir = path.dirname(target);
      // Only a directory we create is made private: an existing one (say /tmp) is not ours to chmod.
      if (!fs.existsSync(dir)) fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      try {
        fs.closeSync(fs.openSync(target, 'wx', 0o600));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
    db = new Database(target, { timeout: options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS });
    // Before the first write, which creates the database with it (no effect on an existing one).
    db.pragma(`page_size = ${NEW_DATABASE_PAGE_SIZE}`);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    const checkpoints = memory ? 'inline' : (options.checkpoints ?? 'inline');
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    const autocheckpointPages = Math.ceil(WAL_AUTOCHECKPOINT_BYTES / pageSize);
    const fallbackPages = Math.ceil(FALLBACK_AUTOCHECKPOINT_BYTES / pageSize);
    db.pragma(`wal_autocheckpoint = ${checkpoints === 'inline' ? autocheckpointPages : fallbackPages}`);
    db.pragma(`journal_size_limit = ${JOURNAL_SIZE_LIMIT}`);
    const log = options.logger?.child('store');
    const version = migrateSqlite(db, target, (m) => log?.info(`applied migration ${m.version}: ${m.description}`));
    // From here on the store waits for a busy lock itself, in finer steps than SQLite's handler
    // (see SqliteStore.guard).
    db.pragma('busy_timeout = 0');
    const store = new SqliteStore(
      db,
      target,
      version,
      options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS,
      autocheckpointPages,
      log,
    );
    if (checkpoints === 'background') store.startCheckpointer();
    return store;
  } catch (err) {
    db?.close();
    if (err instanceof DroverError) throw err;
    const code = sqliteCode(err);
    const message = `cannot open SQLite store ${target}: ${errorMessage(err)}`;
    if (code === 'SQLITE_FULL') throw new StoreFullError(`${message} (disk full)`, { cause: err });
    if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_IOERR')) {
      throw new StoreUnavailableError(message, { cause: err });
    }
    throw new StoreError(message, { cause: err });
  }
}

/** The SQLite adapter of {@link ProcessStore}; create it with {@link openSqliteStore}. */
export class SqliteStore implements ProcessStore {
  readonly backend = 'sqlite' as const;
  private closed = false;
  /** Set when a call failed with SQLITE_FULL, until the WAL has been emptied (see the module comment). */
  private fullSince: number | null = null;
  private lastRecoverTry = 0;

  private readonly s;
  private readonly tx;

  /** @internal use {@link openSqliteStore}. */
  constructor(
    private readonly db: Database.Database,
    /** Absolute path of the database file. */
    readonly file: string,
    private readonly version: number,
    private readonly busyTimeoutMs: number,
    /** {@link WAL_AUTOCHECKPOINT_BYTES} in pages of this database. */
    private readonly autocheckpointPages: number,
    private readonly log?: Logger,
  ) {
    const p = (sql: string) => db.prepare(sql);
    this.s = {
      insert: p(
        `INSERT INTO processes (uuid, type, label, state, inputs, parent_id, dispatch_requested_at, ctime, mtime)
         VALUES (?, ?, ?, 'created', ?, ?, ?, ?, ?)`,
      ),
      exists: p('SELECT 1 AS x FROM processes WHERE id = ?'),
      holdsClaim: p('SELECT 1 AS x FROM processes WHERE id = ? AND lease_owner = ? AND runs = ?'),
      // A pending request up to its time, or a hand-over not claimed since (a re-dispatch).
      markDispatched: p(
        `UPDATE processes SET dispatch_requested_at = NULL, dispatched_at = @now
         WHERE id = @id AND CASE WHEN dispatch_requested_at IS NULL THEN dispatched_at IS NOT NULL
                                 ELSE dispatch_requested_at <= @upTo END`,
      ),
      // The same for a set of ids sharing one upTo (one submit's processes): one statement, as the claim.
      markDispatchedSet: p(
        `UPDATE processes SET dispatch_requested_at = NULL, dispatched_at = @now
         WHERE id IN (SELECT value FROM json_each(@ids)) AND CASE WHEN dispatch_requested_at IS NULL
           THEN dispatched_at IS NOT NULL ELSE dispatch_requested_at <= @upTo END`,
      ),
      countPending: p('SELECT count(*) AS n FROM processes WHERE dispatch_requested_at IS NOT NULL AND paused = 0'),
      countUnclaimed: p(
        `SELECT count(*) AS n FROM processes
         WHERE dispatched_at IS NOT NULL AND dispatch_requested_at IS NULL AND paused = 0`,
      ),
      unclaimed: p(
        `SELECT id FROM processes
         WHERE dispatched_at IS NOT NULL AND dispatch_requested_at IS NULL AND paused = 0 AND dispatched_at <= ?
         ORDER BY dispatched_at, id LIMIT ?`,
      ),
      expireLeases: p(
        `UPDATE processes SET lease_owner = NULL, lease_expires_at = NULL,
           dispatch_requested_at = min(lease_expires_at, @cutoff), mtime = @now
         WHERE lease_owner IS NOT NULL AND lease_expires_at <= @now AND state IN ${ACTIVE}`,
      ),
      pending: p(
        `SELECT id FROM processes
         WHERE dispatch_requested_at IS NOT NULL AND dispatch_requested_at <= ? AND paused = 0
         ORDER BY dispatch_requested_at, id LIMIT ?`,
      ),
      next: p(
        `SELECT id FROM processes
         WHERE dispatch_requested_at IS NOT NULL AND paused = 0
         ORDER BY dispatch_requested_at, id LIMIT ?`,
      ),
      // Refused processes need no dispatch (see ProcessStore.claim); inside the claim's
      // transaction nothing can make them claimable in between.
      clearRefused: p(
        `UPDATE processes SET dispatch_requested_at = NULL, dispatched_at = NULL
         WHERE id = ? AND (dispatch_requested_at IS NOT NULL OR dispatched_at IS NOT NULL)`,
      ),
      // One statement per batch: about twice as fast as one per process (measured on 20,000).
      claim: p(
        `UPDATE processes SET state = 'running', lease_owner = @owner, lease_expires_at = @expires,
           worker_id = @owner, runs = runs + 1, dispatch_requested_at = NULL, dispatched_at = NULL, mtime = @now
         WHERE id IN (SELECT value FROM json_each(@ids)) AND state IN ${ACTIVE} AND paused = 0 AND waiting_on = 0
           AND (lease_owner IS NULL OR lease_expires_at <= @now)
         RETURNING ${COLS}`,
      ),
      journalsOf: p(
        `SELECT process_id, seq, kind, name, result FROM journal
         WHERE process_id IN (SELECT value FROM json_each(?)) ORDER BY process_id, seq`,
      ),
      leaseRow: p(
        'SELECT runs, state, paused, waiting_on, lease_owner, lease_expires_at, parent_id, worker_id FROM processes WHERE id = ?',
      ),
      journal: p('SELECT seq, kind, name, result FROM journal WHERE process_id = ? ORDER BY seq'),
      journalAt: p('SELECT seq, kind, name, result FROM journal WHERE process_id = ? AND seq = ?'),
      renew: p(
        `UPDATE processes SET lease_expires_at = @expires, mtime = @now
         WHERE id = @id AND lease_owner = @owner AND runs = @claim RETURNING id`,
      ),
      release: p(
        `UPDATE processes SET lease_owner = NULL, lease_expires_at = NULL, dispatch_requested_at = @now, mtime = @now
         WHERE id = @id AND lease_owner = @owner AND runs = @claim RETURNING id`,
      ),
      releaseAll: p(
        `UPDATE processes SET lease_owner = NULL, lease_expires_at = NULL, dispatch_requested_at = @now, mtime = @now
         WHERE lease_owner = @owner RETURNING id`,
      ),
      // RETURNING gives the new values only: the owners are read first, in the same transaction.
      leasedByPrefix: p(
        `SELECT id, lease_owner, runs FROM processes
         WHERE lease_owner IS NOT NULL AND substr(lease_owner, 1, length(@prefix)) = @prefix
           AND lease_owner NOT IN (SELECT value FROM json_each(@live))`,
      ),
      // One statement per batch; items are [id, owner, claim, state, outputs, exitStatus, exitMessage, exception].
      complete: p(
        `UPDATE processes SET state = v.value ->> 3, outputs = v.value ->> 4, exit_status = v.value ->> 5,
           exit_message = v.value ->> 6, exception = v.value ->> 7, lease_owner = NULL, lease_expires_at = NULL,
           kill_requested = 0, paused = 0, dispatch_requested_at = NULL, waiting_on = 0, mtime = @now
         FROM json_each(@items) AS v
         WHERE processes.id = v.value ->> 0 AND processes.lease_owner = v.value ->> 1
           AND processes.runs = v.value ->> 2
         RETURNING processes.id AS id, processes.parent_id AS parent_id`,
      ),
      deleteAwait: p('DELETE FROM process_awaits WHERE parent_id = ? AND child_id = ?'),
      deleteAwaitsOf: p('DELETE FROM process_awaits WHERE parent_id = ?'),
      insertAwait: p('INSERT INTO process_awaits (parent_id, child_id) VALUES (?, ?)'),
      decrementParent: p(
        `UPDATE processes SET waiting_on = waiting_on - 1,
           dispatch_requested_at = CASE WHEN waiting_on = 1 THEN @now ELSE dispatch_requested_at END, mtime = @now
         WHERE id = @id AND state = 'waiting' AND waiting_on > 0
         RETURNING waiting_on`,
      ),
      appendJournal: p(
        `INSERT INTO journal (process_id, seq, kind, name, result)
         SELECT @id, @seq, @kind, @name, @result
         WHERE EXISTS (SELECT 1 FROM processes WHERE id = @id AND lease_owner = @owner AND runs = @claim)`,
      ),
      insertJournal: p('INSERT INTO journal (process_id, seq, kind, name, result) VALUES (?, ?, ?, ?, ?)'),
      children: p(
        `SELECT id, state FROM processes
         WHERE parent_id = ? AND id IN (SELECT value FROM json_each(?))`,
      ),
      startWaiting: p(
        `UPDATE processes SET state = 'waiting', waiting_on = @count, lease_owner = NULL, lease_expires_at = NULL,
           dispatch_requested_at = NULL, mtime = @now
         WHERE id = @id`,
      ),
      pause: p(
        `UPDATE processes SET paused = 1, mtime = ? WHERE id = ? AND paused = 0 AND state IN ${ACTIVE} RETURNING id`,
      ),
      unpause: p(
        `UPDATE processes SET paused = 0, mtime = @now,
           dispatch_requested_at = CASE
             WHEN (lease_owner IS NULL OR lease_expires_at <= @now) AND waiting_on = 0
             THEN coalesce(dispatch_requested_at, @now) ELSE dispatch_requested_at END
         WHERE id = @id AND paused = 1 AND state IN ${ACTIVE} RETURNING id`,
      ),
      flagKill: p('UPDATE processes SET kill_requested = 1, mtime = ? WHERE id = ?'),
      kill: p(
        `UPDATE processes SET state = 'killed', exit_message = ?, lease_owner = NULL, lease_expires_at = NULL,
           kill_requested = 0, paused = 0, dispatch_requested_at = NULL, dispatched_at = NULL, waiting_on = 0, mtime = ?
         WHERE id = ?`,
      ),
      get: p(`SELECT ${COLS} FROM processes WHERE id = ?`),
      counts: p('SELECT state, count(*) AS n FROM processes GROUP BY state'),
      addReport: p(
        `INSERT INTO reports (process_id, time, message, step_position, step_index)
         SELECT @id, @now, @message, @position, @index
         WHERE EXISTS (SELECT 1 FROM processes WHERE id = @id AND lease_owner = @owner AND runs = @claim)
         ON CONFLICT (process_id, step_position, step_index) DO NOTHING`,
      ),
      reports: p('SELECT time, message FROM reports WHERE process_id = ? ORDER BY id'),
      sqliteVersion: p('SELECT sqlite_version() AS v'),
      meta: p(`SELECT key, value, set_at FROM store_meta WHERE key IN ('profile_uuid', 'profile_name')`),
      setMeta: p('INSERT INTO store_meta (key, value, set_at) VALUES (?, ?, ?) ON CONFLICT (key) DO NOTHING'),
    };
    this.tx = {
      adopt: db.transaction((uuid: string, name: string): AdoptResult => {
        const now = Date.now();
        const adopted = this.s.setMeta.run('profile_uuid', uuid, now).changes === 1;
        if (adopted) {
          db.prepare(`DELETE FROM store_meta WHERE key = 'profile_name'`).run();
          this.s.setMeta.run('profile_name', name, now);
        }
        return { owner: ownerFromRows(this.s.meta.all() as MetaRow[])!, adopted };
      }),
      create: db.transaction((specs: CheckedNewProcess[]) => this.createTx(specs)),
      markDispatched: db.transaction((ids: number[], upTo: number[]) => {
        const now = Date.now();
        if (ids.length > 1 && upTo.every((t) => t === upTo[0])) {
          // The write lock that workers wait for is held about half as long (measured on 10,000).
          this.s.markDispatchedSet.run({ ids: JSON.stringify(ids), upTo: upTo[0], now });
          return;
        }
        ids.forEach((id, i) => this.s.markDispatched.run({ id, upTo: upTo[i], now }));
      }),
      pending: db.transaction((olderThanMs: number, limit: number) => {
        const now = Date.now();
        const cutoff = now - olderThanMs;
        this.s.expireLeases.run({ now, cutoff });
        return (this.s.pending.all(cutoff, limit) as { id: number }[]).map((r) => r.id);
      }),
      expire: db.transaction(() => {
        const now = Date.now();
        return this.s.expireLeases.run({ now, cutoff: now }).changes;
      }),
      claim: db.transaction((ids: number[], owner: string, leaseMs: number) => this.claimTx(ids, owner, leaseMs)),
      renew: db.transaction((owner: string, runs: RunClaim[], leaseMs: number) => {
        const now = Date.now();
        const out: number[] = [];
        for (const { id, claim } of runs) {
          if (this.s.renew.get({ id, owner, claim, expires: now + leaseMs, now }) !== undefined) out.push(id);
        }
        return out;
      }),
      release: db.transaction((owner: string, runs: RunClaim[] | null) => {
        const now = Date.now();
        if (runs === null) {
          return (this.s.releaseAll.all({ owner, now }) as { id: number }[]).map((r) => r.id).sort((a, b) => a - b);
        }
        const out: number[] = [];
        for (const { id, claim } of runs) if (this.s.release.get({ id, owner, claim, now }) !== undefined) out.push(id);
        return out;
      }),
      complete: db.transaction((items: CheckedCompletion[]) => this.completeTx(items)),
      submitChild: db.transaction(
        (parentId: number, owner: string, claim: number, seq: number, spec: CheckedNewProcess) =>
          this.submitChildTx(parentId, owner, claim, seq, spec),
      ),
      appendJournal: db.transaction(
        (id: number, owner: string, claim: number, e: JournalEntry & { resultJson: string }, where: string) =>
          this.appendJournalTx(id, owner, claim, e, where),
      ),
      wait: db.transaction((id: number, owner: string, claim: number, childIds: number[]) =>
        this.waitTx(id, owner, claim, childIds),
      ),
      setPaused: db.transaction((ids: number[], paused: boolean) => {
        const now = Date.now();
        const out: number[] = [];
        for (const id of ids) {
          const row = paused ? this.s.pause.get(now, id) : this.s.unpause.get({ id, now });
          if (row !== undefined) out.push(id);
        }
        return out;
      }),
      kill: db.transaction((id: number, message: string | null) => this.killTx(id, message)),
      releaseByPrefix: db.transaction((args: { prefix: string; live: string; now: number }) => {
        const rows = this.s.leasedByPrefix.all(args) as { id: number; lease_owner: string; runs: number }[];
        for (const r of rows) this.s.release.run({ id: r.id, owner: r.lease_owner, claim: r.runs, now: args.now });
        return rows;
      }),
    };
  }

  private guard<T>(op: string, fn: () => T): T {
    if (this.closed) throw new StoreError(`SQLite store ${this.file}: ${op} called after close()`);
    if (this.fullSince !== null) this.recoverFromFull();
    try {
      return this.untilFree(fn);
    } catch (err) {
      if (err instanceof DroverError) throw err;
      const code = sqliteCode(err);
      const failed = `SQLite store ${this.file}: ${op} failed`;
      if (code === 'SQLITE_FULL') {
        this.fullSince ??= Date.now();
        throw new StoreFullError(`${failed}: disk full (${errorMessage(err)})`, { cause: err });
      }
      if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
        throw new StoreUnavailableError(
          `${failed}: the database stayed locked by another process for more than ${this.busyTimeoutMs} ms`,
          { cause: err },
        );
      }
      if (transientSqliteCode(code)) {
        throw new StoreUnavailableError(`${failed}: ${errorMessage(err)} (${code})`, { cause: err });
      }
      throw new StoreError(`${failed}: ${errorMessage(err)}`, { cause: err });
    }
  }

  /**
   * Runs `fn`, trying again while the database is locked by another process (SQLITE_BUSY), for up
   * to the busy timeout. The connection's own busy timeout is 0, so a locked database fails a
   * statement at once, and a call that failed so wrote nothing (its transaction, if it began, was
   * rolled back): trying the whole call again is what SQLite's handler would have done for its
   * first statement, and is safe for any later one.
   */
  private untilFree<T>(fn: () => T): T {
    let deadline = 0;
    for (let i = 0; ; i++) {
      try {
        return fn();
      } catch (err) {
        if (!sqliteCode(err).startsWith('SQLITE_BUSY')) throw err;
        const now = performance.now();
        if (deadline === 0) deadline = now + this.busyTimeoutMs;
        else if (now >= deadline) throw err;
        sleepSync(BUSY_STEPS_MS[Math.min(i, BUSY_STEPS_MS.length - 1)]!);
      }
    }
  }

  /**
   * After SQLITE_FULL: tries, at most once per {@link RECOVER_INTERVAL_MS}, to copy the WAL into
   * the database and empty it; stops trying once that worked. Never throws: the call it precedes
   * says how the store is doing.
   */
  private recoverFromFull(): void {
    const now = Date.now();
    if (now - this.lastRecoverTry < RECOVER_INTERVAL_MS) return;
    this.lastRecoverTry = now;
    try {
      this.db.pragma(`busy_timeout = ${RECOVER_BUSY_TIMEOUT_MS}`);
      const [r] = this.db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number; log: number; checkpointed: number }[];
      if (r !== undefined && r.busy === 0) {
        const s = Math.round((now - this.fullSince!) / 1000);
        this.fullSince = null;
        this.log?.info(`SQLite store ${this.file}: writable again after the disk was full for ${s} s; WAL emptied`);
      }
    } catch {
      // Still full, or another process is writing: try again later.
    } finally {
      this.db.pragma('busy_timeout = 0'); // the store's own wait (see untilFree)
    }
  }

  async schemaVersion(): Promise<number> {
    return this.version;
  }

  async storeProfile(): Promise<StoreOwner | null> {
    return this.guard('storeProfile', () => ownerFromRows(this.s.meta.all() as MetaRow[]));
  }

  async adoptProfile(uuid: string, name: string): Promise<AdoptResult> {
    checkAdoptArgs(uuid, name);
    return this.guard('adoptProfile', () => this.tx.adopt.immediate(uuid, name));
  }

  async serverVersion(): Promise<string> {
    return this.guard('serverVersion', () => `SQLite ${(this.s.sqliteVersion.get() as { v: string }).v}`);
  }

  async createProcesses(specs: readonly NewProcess[]): Promise<number[]> {
    if (!Array.isArray(specs)) throw new InputError('createProcesses: specs must be an array');
    const checked = specs.map((s, i) => checkNewProcess(s, `createProcesses: spec #${i}`));
    if (checked.length === 0) return [];
    return this.guard('createProcesses', () => this.tx.create.immediate(checked));
  }

  private createTx(specs: CheckedNewProcess[]): number[] {
    const now = Date.now();
    const ids = new Array<number>(specs.length);
    for (let i = 0; i < specs.length; i++) {
      const s = specs[i]!;
      try {
        const info = this.s.insert.run(crypto.randomUUID(), s.type, s.label, s.inputsJson, s.parentId, now, now, now);
        ids[i] = Number(info.lastInsertRowid);
      } catch (err) {
        if (sqliteCode(err) === 'SQLITE_CONSTRAINT_FOREIGNKEY') {
          throw new ProcessNotFoundError(`createProcesses: parent process ${s.parentId} does not exist`, {
            cause: err,
          });
        }
        throw err;
      }
    }
    return ids;
  }

  async submitChild(parentId: number, owner: string, claim: number, seq: number, spec: NewProcess): Promise<number> {
    const where = `submitChild(${parentId})`;
    checkId(parentId, where);
    checkOwner(owner, where);
    checkClaim(claim, where);
    if (!Number.isSafeInteger(seq) || seq < 0) throw new InputError(`${where}: seq must be a non-negative integer`);
    const checked = checkNewProcess(spec, where);
    if (checked.parentId !== null && checked.parentId !== parentId) {
      throw new InputError(`${where}: spec.parentId ${checked.parentId} differs from the parent ${parentId}`);
    }
    checked.parentId = parentId;
    return this.guard('submitChild', () => this.tx.submitChild.immediate(parentId, owner, claim, seq, checked));
  }

  private submitChildTx(parentId: number, owner: string, claim: number, seq: number, spec: CheckedNewProcess): number {
    const parent = this.s.leaseRow.get(parentId) as LeaseRow | undefined;
    if (parent === undefined) throw new ProcessNotFoundError(`submitChild: process ${parentId} does not exist`);
    if (parent.lease_owner !== owner || parent.runs !== claim) {
      throw new LeaseLostError(
        `submitChild: ${owner} does not hold the lease on process ${parentId} by claim ${claim}`,
      );
    }
    const existing = this.s.journalAt.get(parentId, seq) as JournalRow | undefined;
    if (existing !== undefined) {
      if (existing.kind !== 'submit') {
        throw new NonDeterminismError(
          `submitChild: the journal of process ${parentId} has ${existing.kind} '${existing.name}' at seq ${seq}, ` +
            `not a submission`,
        );
      }
      return JSON.parse(existing.result) as number;
    }
    const [childId] = this.createTx([spec]);
    this.s.insertJournal.run(parentId, seq, 'submit', spec.type, JSON.stringify(childId));
    return childId!;
  }

  async markDispatched(ids: readonly number[], requestedUpTo?: number | readonly number[]): Promise<void> {
    if (!Array.isArray(ids)) throw new InputError('markDispatched: ids must be an array of process ids');
    for (const id of ids) checkId(id, 'markDispatched');
    const upTo = checkUpTo(ids, requestedUpTo, 'markDispatched');
    if (ids.length === 0) return;
    this.guard('markDispatched', () => this.tx.markDispatched.immediate([...ids], upTo));
  }

  async pendingDispatches(olderThanMs: number, limit: number): Promise<number[]> {
    const age = checkMs(olderThanMs, 'pendingDispatches', 'olderThanMs');
    const max = checkLimit(limit, 'pendingDispatches');
    return this.guard('pendingDispatches', () => this.tx.pending.immediate(age, max));
  }

  async nextDispatches(limit: number, excluding: readonly number[] = []): Promise<number[]> {
    const max = checkLimit(limit, 'nextDispatches');
    const skip = new Set(checkIds(excluding, 'nextDispatches'));
    return this.guard('nextDispatches', () => {
      const rows = this.s.next.all(max + skip.size) as { id: number }[];
      const out: number[] = [];
      for (const r of rows) {
        if (skip.has(r.id)) continue;
        out.push(r.id);
        if (out.length === max) break;
      }
      return out;
    });
  }

  async expireLeases(): Promise<number> {
    return this.guard('expireLeases', () => this.tx.expire.immediate());
  }

  async outboxCounts(): Promise<OutboxCounts> {
    return this.guard('outboxCounts', () => ({
      pending: (this.s.countPending.get() as { n: number }).n,
      unclaimed: (this.s.countUnclaimed.get() as { n: number }).n,
    }));
  }

  async unclaimedDispatches(olderThanMs: number, limit: number): Promise<number[]> {
    const age = checkMs(olderThanMs, 'unclaimedDispatches', 'olderThanMs');
    const max = checkLimit(limit, 'unclaimedDispatches');
    return this.guard('unclaimedDispatches', () =>
      (this.s.unclaimed.all(Date.now() - age, max) as { id: number }[]).map((r) => r.id),
    );
  }

  async claim(ids: readonly number[], owner: string, leaseMs: number): Promise<ClaimResult[]> {
    if (!Array.isArray(ids)) throw new InputError('claim: ids must be an array of process ids');
    for (const id of ids) checkId(id, 'claim');
    checkOwner(owner, 'claim');
    const ms = checkMs(leaseMs, 'claim', 'leaseMs');
    if (ids.length === 0) return [];
    return this.guard('claim', () => this.tx.claim.immediate([...ids], owner, ms));
  }

  private claimTx(ids: number[], owner: string, leaseMs: number): ClaimResult[] {
    const now = Date.now();
    const unique = [...new Set(ids)];
    const rows = this.s.claim.all({ ids: JSON.stringify(unique), owner, expires: now + leaseMs, now }) as ProcessRow[];
    const won = new Map(rows.map((r) => [r.id, r]));
    // A process claimed for the first time has no journal: read journals of re-runs only.
    const rerun = rows.filter((r) => r.runs > 1).map((r) => r.id);
    const journals = new Map<number, JournalEntry[]>();
    if (rerun.length > 0) {
      for (const j of this.s.journalsOf.all(JSON.stringify(rerun)) as Array<JournalRow & { process_id: number }>) {
        let list = journals.get(j.process_id);
        if (!list) journals.set(j.process_id, (list = []));
        list.push(toEntry(j));
      }
    }
    const given = new Set<number>();
    return ids.map((id): ClaimResult => {
      const row = won.get(id);
      if (row !== undefined && !given.has(id)) {
        given.add(id);
        return { claimed: true, process: toRecord(row), journal: journals.get(id) ?? [], claim: row.runs };
      }
      // A second copy of an id in one call is a duplicate delivery: its first copy holds the lease.
      if (row !== undefined) return { claimed: false, reason: 'leased' };
      this.s.clearRefused.run(id);
      return claimRefusal(this.s.leaseRow.get(id) as LeaseRow | undefined, now);
    });
  }

  async renewLeases(owner: string, runs: readonly RunClaim[], leaseMs: number): Promise<number[]> {
    checkOwner(owner, 'renewLeases');
    const list = checkRunClaims(runs, 'renewLeases');
    const ms = checkMs(leaseMs, 'renewLeases', 'leaseMs');
    if (list.length === 0) return [];
    return this.guard('renewLeases', () => this.tx.renew.immediate(owner, list, ms));
  }

  async releaseLeases(owner: string, runs?: readonly RunClaim[]): Promise<number[]> {
    checkOwner(owner, 'releaseLeases');
    const list = runs === undefined ? null : checkRunClaims(runs, 'releaseLeases');
    if (list !== null && list.length === 0) return [];
    return this.guard('releaseLeases', () => this.tx.release.immediate(owner, list));
  }

  async releaseLeasesByPrefix(ownerPrefix: string, liveOwners: readonly string[]): Promise<ReleasedLease[]> {
    const prefix = checkOwner(ownerPrefix, 'releaseLeasesByPrefix');
    const live = checkOwners(liveOwners, 'releaseLeasesByPrefix');
    return this.guard('releaseLeasesByPrefix', () =>
      (
        this.tx.releaseByPrefix.immediate({ prefix, live: JSON.stringify(live), now: Date.now() }) as {
          id: number;
          lease_owner: string;
        }[]
      )
        .map((r) => ({ id: r.id, owner: r.lease_owner }))
        .sort((a, b) => a.id - b.id),
    );
  }

  async complete(id: number, owner: string, claim: number, outcome: ProcessOutcome): Promise<CompleteResult> {
    const [r] = await this.completeMany([{ id, owner, claim, outcome }]);
    return r!;
  }

  async completeMany(items: readonly Completion[]): Promise<CompleteResult[]> {
    const checked = checkCompletions(items);
    if (checked.length === 0) return [];
    return this.guard('complete', () => this.tx.complete.immediate(checked));
  }

  private completeTx(items: CheckedCompletion[]): CompleteResult[] {
    // A second item for the same id finds the lease already cleared by the first: not ok.
    const first = new Map<number, number>();
    items.forEach((it, i) => {
      if (!first.has(it.id)) first.set(it.id, i);
    });
    const values = [...first.values()].map((i) => {
      const { id, owner, claim, o } = items[i]!;
      return [id, owner, claim, o.state, o.outputsJson, o.exitStatus, o.exitMessage, o.exception];
    });
    const now = Date.now();
    const rows = this.s.complete.all({ items: JSON.stringify(values), now }) as {
      id: number;
      parent_id: number | null;
    }[];
    const done = new Map(rows.map((r) => [r.id, r.parent_id]));
    return items.map((it, i): CompleteResult => {
      if (first.get(it.id) !== i || !done.has(it.id)) return { ok: false, wokenParentId: null, stored: null };
      const parent = done.get(it.id)!;
      // The outputs as a read gives them back: parsed from the text stored.
      const outputs = it.o.outputsJson === null ? null : (JSON.parse(it.o.outputsJson) as JsonValue);
      return {
        ok: true,
        wokenParentId: parent === null ? null : this.wakeParent(parent, it.id),
        stored: storedOutcome(it.o, outputs, now),
      };
    });
  }

  /** A child of `parentId` terminated: count it off if the parent awaits it; returns the parent if woken. */
  private wakeParent(parentId: number, childId: number): number | null {
    if (this.s.deleteAwait.run(parentId, childId).changes === 0) return null;
    const r = this.s.decrementParent.get({ id: parentId, now: Date.now() }) as { waiting_on: number } | undefined;
    return r !== undefined && r.waiting_on === 0 ? parentId : null;
  }

  async appendJournal(id: number, owner: string, claim: number, entry: JournalEntry): Promise<void> {
    const where = `appendJournal(${id})`;
    checkId(id, where);
    checkOwner(owner, where);
    checkClaim(claim, where);
    const e = checkJournalEntry(entry, where);
    this.guard('appendJournal', () => this.tx.appendJournal.immediate(id, owner, claim, e, where));
  }

  private appendJournalTx(
    id: number,
    owner: string,
    claim: number,
    e: JournalEntry & { resultJson: string },
    where: string,
  ): void {
    let changes: number;
    try {
      changes = this.s.appendJournal.run({
        id,
        owner,
        claim,
        seq: e.seq,
        kind: e.kind,
        name: e.name,
        result: e.resultJson,
      }).changes;
    } catch (err) {
      if (sqliteCode(err).startsWith('SQLITE_CONSTRAINT')) {
        // A repeat of a write whose answer was lost finds the very entry it wrote: done.
        const there = this.s.journalAt.get(id, e.seq) as JournalRow | undefined;
        if (there && there.kind === e.kind && there.name === e.name && sameJson(there.result, e.resultJson)) return;
        throw new StoreError(`${where}: the journal already has an entry at seq ${e.seq}`, { cause: err });
      }
      throw err;
    }
    if (changes === 0) {
      if (this.s.exists.get(id) === undefined) throw new ProcessNotFoundError(`${where}: no such process`);
      throw new LeaseLostError(`${where}: ${owner} does not hold the lease on process ${id} by claim ${claim}`);
    }
  }

  async getJournal(id: number): Promise<JournalEntry[]> {
    checkId(id, 'getJournal');
    return this.guard('getJournal', () => (this.s.journal.all(id) as JournalRow[]).map(toEntry));
  }

  async waitForChildren(id: number, owner: string, claim: number, childIds: readonly number[]): Promise<WaitResult> {
    const where = `waitForChildren(${id})`;
    checkId(id, where);
    checkOwner(owner, where);
    checkClaim(claim, where);
    const list = checkIds(childIds, where);
    return this.guard('waitForChildren', () => this.tx.wait.immediate(id, owner, claim, list));
  }

  private waitTx(id: number, owner: string, claim: number, childIds: number[]): WaitResult {
    const where = `waitForChildren(${id})`;
    const row = this.s.leaseRow.get(id) as LeaseRow | undefined;
    if (row === undefined) throw new ProcessNotFoundError(`${where}: no such process`);
    if (row.lease_owner !== owner || row.runs !== claim) {
      // A repeat of a checkpoint that went through: waiting, last claimed by this very claim.
      if (row.state === 'waiting' && row.worker_id === owner && row.runs === claim && row.lease_owner === null) {
        return { waiting: true };
      }
      throw new LeaseLostError(`${where}: ${owner} does not hold the lease by claim ${claim}`);
    }
    if (childIds.length === 0) return { waiting: false };
    const found = this.s.children.all(id, JSON.stringify(childIds)) as { id: number; state: ProcessState }[];
    if (found.length !== childIds.length) {
      const have = new Set(found.map((c) => c.id));
      const bad = childIds.filter((c) => !have.has(c));
      throw new InputError(`${where}: process(es) ${bad.join(', ')} are not children of process ${id}`);
    }
    const open = found.filter((c) => !isTerminal(c.state)).map((c) => c.id);
    if (open.length === 0) return { waiting: false };
    this.s.deleteAwaitsOf.run(id);
    for (const c of open) this.s.insertAwait.run(id, c);
    this.s.startWaiting.run({ id, count: open.length, now: Date.now() });
    return { waiting: true };
  }

  async setPaused(ids: readonly number[], paused: boolean): Promise<number[]> {
    const list = checkIds(ids, 'setPaused');
    if (typeof paused !== 'boolean') throw new InputError('setPaused: paused must be a boolean');
    if (list.length === 0) return [];
    return this.guard('setPaused', () => this.tx.setPaused.immediate(list, paused));
  }

  async requestKill(id: number, message: string | null): Promise<KillResult> {
    return (await this.requestKillDetailed(id, message)).result;
  }

  async requestKillDetailed(id: number, message: string | null): Promise<KillOutcome> {
    checkId(id, 'requestKill');
    const msg = checkMessage(message, `requestKill(${id})`);
    return this.guard('requestKill', () => this.tx.kill.immediate(id, msg));
  }

  private killTx(id: number, message: string | null): KillOutcome {
    const now = Date.now();
    const row = this.s.leaseRow.get(id) as LeaseRow | undefined;
    if (row === undefined) return { result: 'not-found', wokenParentId: null };
    if (isTerminal(row.state)) return { result: 'terminal', wokenParentId: null };
    if (leaseIsLive(row, now)) {
      this.s.flagKill.run(now, id);
      return { result: 'running', wokenParentId: null };
    }
    this.s.kill.run(message, now, id);
    this.s.deleteAwaitsOf.run(id);
    const woken = row.parent_id === null ? null : this.wakeParent(row.parent_id, id);
    return { result: 'killed', wokenParentId: woken };
  }

  async getProcess(id: number): Promise<ProcessRecord | null> {
    checkId(id, 'getProcess');
    return this.guard('getProcess', () => {
      const row = this.s.get.get(id) as ProcessRow | undefined;
      return row === undefined ? null : toRecord(row);
    });
  }

  private readonly listStatements = new Map<string, Database.Statement>();

  async listProcesses(filter?: ProcessFilter): Promise<ProcessRecord[]> {
    const f = checkFilter(filter, 'listProcesses');
    const conds: string[] = [];
    const params: unknown[] = [];
    if (f.ids !== null) {
      conds.push('id IN (SELECT value FROM json_each(?))');
      params.push(JSON.stringify(f.ids));
    }
    if (f.states !== null) {
      conds.push('state IN (SELECT value FROM json_each(?))');
      params.push(JSON.stringify(f.states));
    }
    if (f.type !== null) {
      conds.push('type = ?');
      params.push(f.type);
    }
    if (f.parentId !== null) {
      conds.push('parent_id = ?');
      params.push(f.parentId);
    }
    if (f.pastDays !== null) {
      conds.push('ctime >= ?');
      params.push(Date.now() - f.pastDays * DAY_MS);
    }
    if (f.modifiedBefore !== null) {
      conds.push('mtime < ?');
      params.push(f.modifiedBefore);
    }
    let sql = `SELECT ${COLS} FROM processes`;
    if (conds.length > 0) sql += ` WHERE ${conds.join(' AND ')}`;
    sql += ' ORDER BY id DESC';
    if (f.limit !== null) {
      sql += ' LIMIT ?';
      params.push(f.limit);
    }
    return this.guard('listProcesses', () => {
      let st = this.listStatements.get(sql);
      if (st === undefined) {
        st = this.db.prepare(sql);
        this.listStatements.set(sql, st);
      }
      return (st.all(...params) as ProcessRow[]).map(toRecord);
    });
  }

  async deleteProcesses(ids: readonly number[], opts: { dryRun?: boolean } = {}): Promise<DeleteResult> {
    const list = checkIds(ids, 'deleteProcesses');
    if (list.length === 0) return { deleted: [], refused: [], notFound: [] };
    const dryRun = opts.dryRun === true;
    return this.guard('deleteProcesses', () => this.db.transaction(() => this.deleteTx(list, dryRun)).immediate());
  }

  private deleteTx(list: readonly number[], dryRun: boolean): DeleteResult {
    const one = this.db.prepare('SELECT id, state, parent_id FROM processes WHERE id = ?');
    // Breadth first from the root: reversed, every child comes before its parent.
    const tree = this.db.prepare(
      `WITH RECURSIVE t(id) AS (SELECT ? UNION ALL SELECT p.id FROM processes p JOIN t ON p.parent_id = t.id)
       SELECT processes.id AS id, state FROM t JOIN processes USING (id)`,
    );
    const ofSet = (table: string, col: string): Database.Statement =>
      this.db.prepare(`DELETE FROM ${table} WHERE ${col} IN (SELECT value FROM json_each(?))`);
    const del = [
      ofSet('journal', 'process_id'),
      ofSet('reports', 'process_id'),
      ofSet('process_awaits', 'parent_id'),
      ofSet('process_awaits', 'child_id'),
      ofSet('processes', 'id'),
    ];
    const out: DeleteResult = { deleted: [], refused: [], notFound: [] };
    const gone = new Set<number>();
    for (const id of list) {
      if (gone.has(id)) continue;
      const row = one.get(id) as { id: number; state: ProcessState; parent_id: number | null } | undefined;
      if (row === undefined) {
        out.notFound.push(id);
        continue;
      }
      const refusal = deleteRefusal(
        row,
        row.parent_id === null
          ? undefined
          : (one.get(row.parent_id) as { id: number; state: ProcessState } | undefined),
        tree.all(id) as Array<{ id: number; state: ProcessState }>,
      );
      if (typeof refusal === 'string') {
        out.refused.push({ id, reason: refusal });
        continue;
      }
      const json = JSON.stringify(refusal);
      if (!dryRun) for (const st of del) st.run(json);
      for (const x of refusal) gone.add(x);
    }
    out.deleted = [...gone].sort((a, b) => a - b);
    return out;
  }

  async registerDaemon(reg: DaemonRegistration): Promise<void> {
    const r = checkRegistration(reg);
    this.guard('registerDaemon', () =>
      this.db
        .prepare(
          `INSERT INTO daemons (id, host, pid, version, state, started_at, heartbeat_at, workers)
           VALUES (@id, @host, @pid, @version, @state, @startedAt, @now, @workers)
           ON CONFLICT (id) DO UPDATE SET state = excluded.state, heartbeat_at = excluded.heartbeat_at,
             workers = excluded.workers, version = excluded.version`,
        )
        .run({ ...r, now: Date.now(), workers: JSON.stringify(r.workers) }),
    );
  }

  async unregisterDaemon(id: string, purgeAfterMs = 86_400_000): Promise<void> {
    if (typeof id !== 'string') throw new InputError('unregisterDaemon: id must be a string');
    const ms = checkMs(purgeAfterMs, 'unregisterDaemon', 'purgeAfterMs');
    this.guard('unregisterDaemon', () =>
      this.db.prepare('DELETE FROM daemons WHERE id = ? OR heartbeat_at < ?').run(id, Date.now() - ms),
    );
  }

  async listDaemons(): Promise<RegisteredDaemon[]> {
    return this.guard('listDaemons', () => {
      const now = Date.now();
      const rows = this.db.prepare('SELECT * FROM daemons ORDER BY started_at, id').all() as Array<{
        id: string;
        host: string;
        pid: number;
        version: string;
        state: string;
        started_at: number;
        heartbeat_at: number;
        workers: string;
      }>;
      return rows.map((r) => ({
        id: r.id,
        host: r.host,
        pid: r.pid,
        version: r.version,
        state: r.state,
        startedAt: r.started_at,
        heartbeatAt: r.heartbeat_at,
        ageMs: Math.max(0, now - r.heartbeat_at),
        workers: JSON.parse(r.workers) as RegisteredDaemon['workers'],
      }));
    });
  }

  async getSharedOptions(): Promise<Record<string, JsonValue>> {
    return this.guard('getSharedOptions', () => {
      const rows = this.db.prepare('SELECT key, value FROM profile_options ORDER BY key').all() as Array<{
        key: string;
        value: string;
      }>;
      return Object.fromEntries(rows.map((r) => [r.key, JSON.parse(r.value) as JsonValue]));
    });
  }

  async setSharedOption(key: string, value: JsonValue | undefined): Promise<boolean> {
    const k = checkOptionKey(key);
    if (value === undefined) {
      return this.guard(
        'setSharedOption',
        () => this.db.prepare('DELETE FROM profile_options WHERE key = ?').run(k).changes > 0,
      );
    }
    const json = checkJsonValue(value, `setSharedOption(${k})`, RESULT_LIMITS);
    this.guard('setSharedOption', () =>
      this.db
        .prepare(
          `INSERT INTO profile_options (key, value, updated_at) VALUES (?, ?, ?)
           ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
        )
        .run(k, json, Date.now()),
    );
    return true;
  }

  async countByState(): Promise<Record<ProcessState, number>> {
    return this.guard('countByState', () => {
      const out = emptyCounts();
      for (const r of this.s.counts.all() as { state: ProcessState; n: number }[]) out[r.state] = r.n;
      return out;
    });
  }

  async addReport(id: number, owner: string, claim: number, message: string, at?: ReportPosition): Promise<boolean> {
    const where = `addReport(${id})`;
    checkId(id, 'addReport');
    checkOwner(owner, where);
    checkClaim(claim, where);
    const r = checkReport(id, message, at);
    return this.guard('addReport', () => {
      const params = { id, owner, claim, now: Date.now(), message: r.message, position: r.position, index: r.index };
      if (this.s.addReport.run(params).changes > 0) return true;
      if (this.s.exists.get(id) === undefined)
        throw new ProcessNotFoundError(`addReport: process ${id} does not exist`);
      // Nothing written: a line already at that place (a replay), or a run that lost the lease.
      if (this.s.holdsClaim.get(id, owner, claim) !== undefined) return false;
      throw new LeaseLostError(`${where}: ${owner} does not hold the lease on process ${id} by claim ${claim}`);
    });
  }

  async getReports(id: number): Promise<ReportLine[]> {
    checkId(id, 'getReports');
    return this.guard('getReports', () => this.s.reports.all(id) as ReportLine[]);
  }

  private checkpointer: Worker | null = null;

  /**
   * Starts the background checkpointer (see {@link SqliteCheckpoints}). Should the thread fail, this
   * connection checkpoints inline again, and the workers past their fallback.
   */
  startCheckpointer(): void {
    const data: CheckpointerData = {
      role: 'drover-sqlite-checkpointer',
      file: this.file,
      journalSizeLimit: JOURNAL_SIZE_LIMIT,
    };
    const fallBack = (why: string): void => {
      this.checkpointer = null;
      this.log?.warn(`WAL checkpoints in the background stopped (${why}); checkpointing inline`);
      if (!this.closed) this.db.pragma(`wal_autocheckpoint = ${this.autocheckpointPages}`);
    };
    let thread: Worker;
    try {
      thread = new Worker(new URL('./checkpointer.js', import.meta.url), { workerData: data });
    } catch (err) {
      fallBack(errorMessage(err));
      return;
    }
    thread.unref();
    thread.on('error', (err) => {
      if (this.checkpointer === thread) fallBack(errorMessage(err));
    });
    thread.on('exit', (code) => {
      if (this.checkpointer === thread && !this.closed) fallBack(`the thread exited with code ${code}`);
    });
    this.checkpointer = thread;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const thread = this.checkpointer;
    this.checkpointer = null;
    if (thread !== null) {
      const exited = new Promise<void>((resolve) => thread.once('exit', () => resolve()));
      thread.postMessage('stop');
      // A thread stuck in a checkpoint (a hung disk) is not waited for long.
      const timer = setTimeout(() => void thread.terminate(), 2000);
      await exited;
      clearTimeout(timer);
    }
    this.db.close();
  }
}
