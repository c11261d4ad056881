/**
 * The PostgreSQL process store, on a `pg` Pool.
 *
 * Transactions run at READ COMMITTED, so every race is settled by row locks, never by a snapshot:
 * - A claim is one conditional `UPDATE … WHERE <lease free or expired> RETURNING`. Two workers
 *   claiming the same row: the second blocks on the row lock, then re-checks the WHERE clause on the
 *   committed row, finds a live lease and updates nothing. Exactly one wins.
 * - Lost wake-up. A parent checkpointing ({@link PostgresStore.waitForChildren}) counts its children
 *   that have not terminated; a child terminating ({@link PostgresStore.complete},
 *   {@link PostgresStore.requestKill}) decrements the parent's count if the parent awaits it. Both
 *   lock the PARENT row first (`SELECT … FOR NO KEY UPDATE`), so they are serialized, and because each
 *   statement of a READ COMMITTED transaction takes a fresh snapshot, the one that gets the lock
 *   second sees the other's committed effect: the parent counts the child as terminated, or the
 *   child finds the parent waiting and wakes it. Without the lock both could miss each other and
 *   the parent would wait forever.
 * - Deadlocks: every transaction that locks several process rows locks them in ascending id order
 *   (a child's id is always greater than its parent's), and a transaction that still dies of a
 *   deadlock or serialization failure is retried (it has no effect outside the database).
 * - Time is the database server's clock (`statement_timestamp()` in ms), so leases compare right
 *   when workers on several machines share one database.
 * `FOR NO KEY UPDATE` (not `FOR UPDATE`) lets children be inserted (their foreign key takes
 * `FOR KEY SHARE` on the parent) while the parent row is locked.
 *
 * Connection failures (the server restarting, `pg_ctl stop -m fast` or `-m immediate`, a dropped
 * connection, too many clients) are waited out:
 * - Every connection, idle in the pool or checked out by a call, has an `'error'` listener: a
 *   connection that dies never crashes the process; the pool drops it and opens a new one.
 * - A call that fails for such a reason is retried with back-off for up to `retryMs` (default
 *   {@link DEFAULT_RETRY_MS}), then fails with {@link StoreUnavailableError}. It is retried only
 *   when repeating it cannot apply it twice: when nothing was written (the connection could not
 *   be opened, or the server answered with an error, which rolls the statement back), or when the
 *   call is idempotent. When the connection broke while a write was in flight (its commit may or
 *   may not have happened), calls are repeated only if a second application changes nothing:
 *   conditional updates keyed by the lease owner and claim, and the writes that check on a repeat whether
 *   the first went through (`createProcesses` by the processes' uuids, `complete`, `appendJournal`,
 *   `waitForChildren`). `claim` and `addReport` then fail with `maybeApplied` set.
 * - Repeated failures are logged at most once per interval ({@link LogThrottle}).
 *
 * Semantics are otherwise those of the SQLite adapter and docs/store.md.
 *
 * @module
 */
import crypto from 'node:crypto';
import pg from 'pg';
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
import { LogThrottle } from '../../logging/throttle.js';
import { sleep } from '../../util/index.js';
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
  type CheckedCompletion,
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
  checkAdoptArgs,
  ownerFromRows,
  type CheckedNewProcess,
  type MetaRow,
} from '../common.js';
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
  ProcessStore,
  RegisteredDaemon,
  ReleasedLease,
  ReportPosition,
  RunClaim,
  StoredOutcome,
  WaitResult,
  AdoptResult,
  StoreOwner,
} from '../types.js';
import { migratePostgres } from './migrations.js';
import { STATISTICS_CHECK_MS, StatisticsKeeper } from './statistics.js';
import { displayPostgresUrl } from './url.js';

/** Options of {@link openPostgresStore}. */
export interface PostgresStoreOptions {
  /** Receives migrations and connection trouble (rate-limited). */
  logger?: Logger;
  /** Most connections the pool opens (default 10). */
  maxConnections?: number;
  /** How long to wait for a connection (default 10 s). */
  connectTimeoutMs?: number;
  /**
   * How long a call that fails for a passing reason (see the module comment) is retried before it
   * fails with {@link StoreUnavailableError} (default {@link DEFAULT_RETRY_MS}; 0: never retried).
   */
  retryMs?: number;
  /**
   * Analyze the hot tables as soon as one has doubled since its statistics were taken (the
   * daemon's store does, once per machine): see statistics.ts. A number is the check interval in
   * ms (tests); true is {@link STATISTICS_CHECK_MS}.
   */
  keepStatistics?: boolean | number;
}

/** Default of {@link PostgresStoreOptions.retryMs}: long enough for a server restart. */
export const DEFAULT_RETRY_MS = 15_000;

/** Back-off between retries: 50 ms doubling to 1 s. */
function retryDelay(attempt: number): number {
  return Math.min(1000, 50 * 2 ** attempt) * (0.75 + Math.random() * 0.5);
}

/**
 * SQLSTATEs that pass: connection exceptions (class 08), server shutting down or starting
 * (57P01-57P03), too many connections or out of resources (53xxx; 53100 is a full disk),
 * serialization failure and deadlock (40001, 40P01: PostgreSQL aborted one side of a race).
 */
function transientSqlState(code: string): boolean {
  return (
    code.startsWith('08') ||
    code === '57P01' ||
    code === '57P02' ||
    code === '57P03' ||
    code.startsWith('53') ||
    code === '40001' ||
    code === '40P01'
  );
}

/** One attempt of a call: what a failure of it means. */
interface Attempt {
  /** True when an earlier attempt of this call may have been committed (the body checks for it). */
  readonly afterMaybeApplied: boolean;
  /** Set by the body while a statement that commits a write is in flight. */
  committing: boolean;
  /** Set by the body once a write of this attempt has committed. */
  committed: boolean;
}

/** The database clock in ms since the epoch, fixed for the duration of one statement. */
const NOW = '(extract(epoch from statement_timestamp()) * 1000)::bigint';

const COLS =
  'id, uuid, type, label, state, paused, kill_requested, inputs, outputs, exit_status, exit_message, exception, ' +
  'parent_id, worker_id, lease_owner, lease_expires_at, runs, ctime, mtime';

const ACTIVE = "('created', 'running', 'waiting')";

/** int8 (bigint, count(*)) as a JS number: ids, times and counts all fit in 2^53. */
const INT8_OID = 20;
const typeParsers: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === INT8_OID && format !== 'binary'
      ? (v: string) => Number(v)
      : (pg.types.getTypeParser as (o: number, f?: string) => unknown)(
          oid,
          format,
        )) as pg.CustomTypesConfig['getTypeParser'],
};

interface ProcessRow {
  id: number;
  uuid: string;
  type: string;
  label: string | null;
  state: ProcessState;
  paused: boolean;
  kill_requested: boolean;
  inputs: JsonValue;
  outputs: JsonValue | null;
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

interface LeaseRow {
  id: number;
  state: ProcessState;
  paused: boolean;
  waiting_on: number;
  lease_owner: string | null;
  lease_expires_at: number | null;
  parent_id: number | null;
  now: number;
}

interface JournalRow {
  process_id: number;
  seq: number;
  kind: 'step' | 'submit';
  name: string;
  result: JsonValue;
}

function toRecord(r: ProcessRow): ProcessRecord {
  return {
    id: r.id,
    uuid: r.uuid,
    type: r.type,
    label: r.label,
    state: r.state,
    paused: r.paused,
    killRequested: r.kill_requested,
    inputs: r.inputs,
    outputs: r.outputs,
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
  return { seq: r.seq, kind: r.kind, name: r.name, result: r.result };
}

function pgCode(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : '';
}

function isLive(r: LeaseRow): boolean {
  return leaseIsLive(r, r.now);
}

/*
 * The `…One` statements: the same over one process's scalars, for calls that pass one (a worker
 * under light load, a script's submits one by one). PostgreSQL assumes 100 elements for a parameter
 * array, so it plans an array statement again at every execution, while a statement over scalars
 * keeps its plan (an index scan, also as a new table fills up). Figures: docs/store.md, PostgreSQL.
 */

/** The scalar parameters of a `…One` statement: the single element of each array parameter. */
function firsts(columns: readonly unknown[][]): unknown[] {
  return columns.map((col) => col[0]);
}

/** The statements of {@link Q} that have a `…One` variant over scalars. */
type WithOne = 'create' | 'markDispatched' | 'completeTop' | 'complete' | 'lockWithParents' | 'wakeParents';

/**
 * The named statement `name` over `columns` (its parameter arrays, of one length), or its `…One`
 * variant over their single elements when they hold one.
 */
function overColumns(name: WithOne, columns: unknown[][]): { name: string; text: string; values: unknown[] } {
  if (columns[0]!.length !== 1) return { name, text: Q[name], values: columns };
  const one = `${name}One` as const;
  return { name: one, text: Q[one], values: firsts(columns) };
}

/** The columns of a completion, in parameter order, and their types. */
const COMPLETION = `v(id, owner, claim, state, outputs, exit_status, exit_message, exception)`;
const COMPLETION_TYPES = ['bigint', 'text', 'integer', 'text', 'text', 'integer', 'text', 'text'];

/** Records the outcomes of `source` (rows named by COMPLETION) whose lease and claim still match. */
function completeFrom(source: string): string {
  return `UPDATE processes p SET state = v.state, outputs = v.outputs::jsonb, exit_status = v.exit_status,
      exit_message = v.exit_message, exception = v.exception, lease_owner = NULL, lease_expires_at = NULL,
      kill_requested = false, paused = false, dispatch_requested_at = NULL, waiting_on = 0, mtime = ${NOW}
    FROM ${source} AS ${COMPLETION}
    WHERE p.id = v.id AND p.lease_owner = v.owner AND p.runs = v.claim`;
}

/** Completions of parameter arrays (the WHERE clause can be extended). */
const COMPLETE = completeFrom(`unnest(${COMPLETION_TYPES.map((t, i) => `$${i + 1}::${t}[]`).join(', ')})`);
/** The same for one completion, its columns as scalars. */
const COMPLETE_ONE = completeFrom(`(SELECT ${COMPLETION_TYPES.map((t, i) => `$${i + 1}::${t}`).join(', ')})`);

/** Claims the processes `which` selects, returning their rows and journals (see Q.claim). */
function claimWhere(which: string): string {
  return `WITH c AS (
      UPDATE processes SET state = 'running', lease_owner = $2, lease_expires_at = ${NOW} + $3,
        worker_id = $2, runs = runs + 1, dispatch_requested_at = NULL, dispatched_at = NULL, mtime = ${NOW}
      WHERE ${which} AND state IN ${ACTIVE} AND NOT paused AND waiting_on = 0
        AND (lease_owner IS NULL OR lease_expires_at <= ${NOW})
      RETURNING ${COLS})
    SELECT c.*, coalesce((
        SELECT jsonb_agg(jsonb_build_object('seq', j.seq, 'kind', j.kind, 'name', j.name, 'result', j.result)
          ORDER BY j.seq)
        FROM journal j WHERE j.process_id = c.id), '[]'::jsonb) AS journal
    FROM c`;
}

/**
 * Locks the rows of the processes `list` yields and of their parents, in id order (parents have
 * the lower ids); `match` is the same set as a condition on `id`. The parents' ids are looked up
 * by `id` alone: with `AND parent_id IS NOT NULL` the planner could take the partial index on
 * `parent_id` and filter the siblings by id, which it did while the index's statistics were of
 * before a fan-out (1,500 siblings read per child completion, 0.6 ms; every completion of a
 * fan-out then costs as much as the fan-out is wide). A top-level process adds a NULL, which
 * matches no id.
 */
function lockWithParentsOf(list: string, match: string): string {
  return `SELECT id, state, paused, waiting_on, lease_owner, lease_expires_at, parent_id, ${NOW} AS now
    FROM processes
    WHERE id IN (SELECT ${list} UNION SELECT parent_id FROM processes WHERE ${match})
    ORDER BY id FOR NO KEY UPDATE`;
}

/**
 * Counts the terminated children of `source`'s rows (parent_id, child_id) off their waiting
 * parents (rows locked by the caller); returns the parents whose count changed, with the children
 * counted.
 */
function wakeParentsFrom(source: string): string {
  return `WITH d AS (
      DELETE FROM process_awaits a USING ${source} AS v(parent_id, child_id)
      WHERE a.parent_id = v.parent_id AND a.child_id = v.child_id
      RETURNING a.parent_id, a.child_id),
    n AS (SELECT parent_id, count(*)::integer AS n, array_agg(child_id) AS children FROM d GROUP BY parent_id)
    UPDATE processes p SET waiting_on = p.waiting_on - n.n,
      dispatch_requested_at = CASE WHEN p.waiting_on = n.n THEN ${NOW} ELSE p.dispatch_requested_at END,
      mtime = ${NOW}
    FROM n WHERE p.id = n.parent_id AND p.state = 'waiting' AND p.waiting_on > 0
    RETURNING p.id, p.waiting_on, n.children`;
}

/** Clears the outbox flag of `source`'s rows (id, up_to): see Q.markDispatched. */
function markDispatchedFrom(source: string): string {
  return `UPDATE processes p SET dispatch_requested_at = NULL, dispatched_at = ${NOW}
    FROM ${source} AS v(id, up_to)
    WHERE p.id = v.id AND CASE WHEN p.dispatch_requested_at IS NULL THEN p.dispatched_at IS NOT NULL
                               ELSE p.dispatch_requested_at <= v.up_to END`;
}

const INSERT_PROCESS = `INSERT INTO processes (uuid, type, label, state, inputs, parent_id, dispatch_requested_at, ctime, mtime)`;

/** The parameters of {@link COMPLETE}, one array per column, in its unnest order. */
function completionValues(list: ReadonlyArray<CheckedCompletion>): unknown[][] {
  return [
    list.map((it) => it.id),
    list.map((it) => it.owner),
    list.map((it) => it.claim),
    list.map((it) => it.o.state),
    list.map((it) => it.o.outputsJson),
    list.map((it) => it.o.exitStatus),
    list.map((it) => it.o.exitMessage),
    list.map((it) => it.o.exception),
  ];
}

/** What the completion statements return besides the id: the time written and the outputs as stored. */
interface StoredRow {
  mtime: number;
  outputs: JsonValue | null;
}

/** Named (server-side prepared) statements of the hot paths. */
const Q = {
  // The claim and the claimed processes' journals in one round trip; no explicit transaction is
  // needed: the UPDATE is atomic, and once claimed nobody else may append to those journals.
  claim: claimWhere('id = ANY($1::bigint[])'),
  claimOne: claimWhere('id = $1::bigint'),
  leaseRows: `SELECT id, state, paused, waiting_on, lease_owner, lease_expires_at, parent_id, ${NOW} AS now
    FROM processes WHERE id = ANY($1::bigint[])`,
  lockWithParents: lockWithParentsOf('unnest($1::bigint[])', 'id = ANY($1::bigint[])'),
  lockWithParentsOne: lockWithParentsOf('$1::bigint', 'id = $1::bigint'),
  complete: `${COMPLETE} RETURNING p.id, p.parent_id, p.mtime, p.outputs`,
  completeOne: `${COMPLETE_ONE} RETURNING p.id, p.parent_id, p.mtime, p.outputs`,
  // The same for processes without a parent, in one statement outside a transaction: no parent
  // row to lock first (parent_id never changes), so nothing to wake. Returns the ids recorded.
  completeTop: `${COMPLETE} AND p.parent_id IS NULL RETURNING p.id, p.mtime, p.outputs`,
  completeTopOne: `${COMPLETE_ONE} AND p.parent_id IS NULL RETURNING p.id, p.mtime, p.outputs`,
  wakeParents: wakeParentsFrom('unnest($1::bigint[], $2::bigint[])'),
  wakeParentsOne: wakeParentsFrom('(SELECT $1::bigint, $2::bigint)'),
  create: `${INSERT_PROCESS}
    SELECT t.uuid, t.type, t.label, 'created', t.inputs::jsonb, t.parent_id, ${NOW}, ${NOW}, ${NOW}
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[]) WITH ORDINALITY
      AS t(uuid, type, label, inputs, parent_id, ord)
    ORDER BY t.ord
    RETURNING id, uuid`,
  createOne: `${INSERT_PROCESS}
    VALUES ($1::uuid, $2::text, $3::text, 'created', $4::jsonb, $5::bigint, ${NOW}, ${NOW}, ${NOW})
    RETURNING id, uuid`,
  // The same, repeated after a connection broke mid-insert: rows that the first attempt committed
  // (found by their uuids, which the caller chose) are returned, not inserted again. The outer
  // SELECT reads the snapshot from before the statement, so it sees only those earlier rows.
  createAgain: `WITH ins AS (
      ${INSERT_PROCESS}
      SELECT t.uuid, t.type, t.label, 'created', t.inputs::jsonb, t.parent_id, ${NOW}, ${NOW}, ${NOW}
      FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[]) WITH ORDINALITY
        AS t(uuid, type, label, inputs, parent_id, ord)
      ORDER BY t.ord
      ON CONFLICT (uuid) DO NOTHING
      RETURNING id, uuid)
    SELECT id, uuid FROM ins UNION ALL SELECT id, uuid FROM processes WHERE uuid = ANY($1::uuid[])`,
  // A pending request up to its time, or a hand-over not claimed since (a re-dispatch).
  markDispatched: markDispatchedFrom('unnest($1::bigint[], $2::bigint[])'),
  markDispatchedOne: markDispatchedFrom('(SELECT $1::bigint, $2::bigint)'),
  outboxCounts: `SELECT
      (SELECT count(*) FROM processes WHERE dispatch_requested_at IS NOT NULL AND NOT paused) AS pending,
      (SELECT count(*) FROM processes
        WHERE dispatched_at IS NOT NULL AND dispatch_requested_at IS NULL AND NOT paused) AS unclaimed`,
  unclaimed: `SELECT id FROM processes
    WHERE dispatched_at IS NOT NULL AND dispatch_requested_at IS NULL AND NOT paused AND dispatched_at <= ${NOW} - $1
    ORDER BY dispatched_at, id LIMIT $2`,
  expireLeases: `UPDATE processes SET lease_owner = NULL, lease_expires_at = NULL,
      dispatch_requested_at = least(lease_expires_at, ${NOW} - $1), mtime = ${NOW}
    WHERE lease_owner IS NOT NULL AND lease_expires_at <= ${NOW} AND state IN ${ACTIVE}`,
  next: `SELECT id FROM processes
    WHERE dispatch_requested_at IS NOT NULL AND NOT paused
    ORDER BY dispatch_requested_at, id LIMIT $1`,
  // Refused processes that cannot be claimed now need no dispatch (see ProcessStore.claim); one
  // that became claimable since the claim (released meanwhile) keeps its request.
  clearRefused: `UPDATE processes SET dispatch_requested_at = NULL, dispatched_at = NULL
    WHERE id = ANY($1::bigint[]) AND (dispatch_requested_at IS NOT NULL OR dispatched_at IS NOT NULL)
      AND NOT (state IN ${ACTIVE} AND NOT paused AND waiting_on = 0
               AND (lease_owner IS NULL OR lease_expires_at <= ${NOW}))`,
  pending: `SELECT id FROM processes
    WHERE dispatch_requested_at IS NOT NULL AND dispatch_requested_at <= ${NOW} - $1 AND NOT paused
    ORDER BY dispatch_requested_at, id LIMIT $2`,
  renew: `UPDATE processes p SET lease_expires_at = ${NOW} + $4, mtime = ${NOW}
    FROM unnest($1::bigint[], $2::integer[]) AS v(id, claim)
    WHERE p.id = v.id AND p.runs = v.claim AND p.lease_owner = $3 RETURNING p.id`,
  release: `UPDATE processes p SET lease_owner = NULL, lease_expires_at = NULL, dispatch_requested_at = ${NOW},
      mtime = ${NOW}
    FROM unnest($1::bigint[], $2::integer[]) AS v(id, claim)
    WHERE p.id = v.id AND p.runs = v.claim AND p.lease_owner = $3 RETURNING p.id`,
  releaseAll: `UPDATE processes SET lease_owner = NULL, lease_expires_at = NULL, dispatch_requested_at = ${NOW},
      mtime = ${NOW}
    WHERE lease_owner = $1 RETURNING id`,
  // The lease owner as it was before the update: a FROM of the same rows, locked in the subquery.
  releaseByPrefix: `UPDATE processes p SET lease_owner = NULL, lease_expires_at = NULL,
      dispatch_requested_at = ${NOW}, mtime = ${NOW}
    FROM (SELECT id, lease_owner FROM processes
          WHERE lease_owner IS NOT NULL AND left(lease_owner, length($1)) = $1 AND NOT (lease_owner = ANY($2::text[]))
          FOR NO KEY UPDATE) AS old
    WHERE p.id = old.id AND p.lease_owner = old.lease_owner
    RETURNING p.id, old.lease_owner`,
  appendJournal: `WITH p AS (SELECT id FROM processes WHERE id = $1 AND lease_owner = $2 AND runs = $7 FOR SHARE)
    INSERT INTO journal (process_id, seq, kind, name, result) SELECT p.id, $3, $4, $5, $6::jsonb FROM p`,
  addReport: `WITH p AS (SELECT id FROM processes WHERE id = $1 AND lease_owner = $2 AND runs = $3 FOR SHARE)
    INSERT INTO reports (process_id, time, message, step_position, step_index) SELECT p.id, ${NOW}, $4, $5, $6 FROM p
    ON CONFLICT (process_id, step_position, step_index) DO NOTHING`,
  journal: 'SELECT process_id, seq, kind, name, result FROM journal WHERE process_id = $1 ORDER BY seq',
  get: `SELECT ${COLS} FROM processes WHERE id = $1`,
};

/**
 * Opens the PostgreSQL store at `url` and brings its schema up to date.
 *
 * @throws StoreUnavailableError when the server cannot be reached, is starting or shutting down,
 *   or has no connection free (the message names the URL, without its password).
 * @throws StoreError when the server refuses the connection for good (unknown database, bad
 *   password) or the migration fails.
 * @throws StoreVersionError when the schema is newer than this code.
 */
export async function openPostgresStore(url: string, options: PostgresStoreOptions = {}): Promise<PostgresStore> {
  const where = displayPostgresUrl(url);
  const log = options.logger?.child('store');
  let pool: pg.Pool;
  try {
    pool = new pg.Pool({
      connectionString: url,
      max: options.maxConnections ?? 10,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
      application_name: 'drover',
      keepAlive: true,
      types: typeParsers,
    });
  } catch (err) {
    throw new StoreError(`cannot open PostgreSQL store ${where}: ${errorMessage(err)}`, { cause: err });
  }
  const throttle = log ? new LogThrottle(log) : null;
  // An idle connection that the server drops must not crash the process; the pool replaces it.
  // A server restart drops all of them at once: one line, not one per connection.
  pool.on('error', (err) =>
    throttle?.warn('idle', `PostgreSQL store ${where}: idle connection dropped: ${errorMessage(err)}`),
  );
  // Between the pool handing over a new connection and the caller's listener there is a gap: the
  // pool resolves from inside the socket's data handler, and a FATAL the server sent right after
  // the startup (a restart: 57P01) is parsed in the same turn, when the connection has no query and
  // no 'error' listener, and would crash the process (seen in the PostgreSQL restart test). Every
  // connection gets one that does nothing from the start; what breaks is reported by the query
  // that fails, or by the pool for an idle one.
  pool.on('connect', (c) => c.on('error', () => undefined));
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    await pool.end().catch(() => undefined);
    const message = `cannot connect to PostgreSQL store ${where}: ${errorMessage(err)}`;
    if (connectFailurePasses(err)) throw unavailable(message, err, false);
    throw new StoreError(message, { cause: err });
  }
  const onError = (): void => undefined; // the migration's query fails and says why
  client.on('error', onError);
  try {
    const version = await migratePostgres(client, where, (m) =>
      log?.info(`applied migration ${m.version}: ${m.description}`),
    );
    client.release();
    const keep = options.keepStatistics ?? false;
    const keeper = keep === false ? null : new StatisticsKeeper(pool, log, keep === true ? STATISTICS_CHECK_MS : keep);
    return new PostgresStore(pool, where, version, options.retryMs ?? DEFAULT_RETRY_MS, throttle, keeper);
  } catch (err) {
    client.release(true);
    await pool.end().catch(() => undefined);
    if (err instanceof DroverError) throw err;
    const message = `cannot open PostgreSQL store ${where}: migration failed: ${errorMessage(err)}`;
    if (!(err instanceof pg.DatabaseError) || transientSqlState(pgCode(err))) throw unavailable(message, err, false);
    throw new StoreError(message, { cause: err });
  } finally {
    client.removeListener('error', onError);
  }
}

/** True when a failure to open a connection may pass (not a refusal for good). */
function connectFailurePasses(err: unknown): boolean {
  // The server answered: it knows (an unknown database or a wrong password stays so).
  if (err instanceof pg.DatabaseError) return transientSqlState(pgCode(err));
  // Refused, reset, timed out, host unreachable: the server is not (yet) there.
  return true;
}

/** A {@link StoreUnavailableError}, or a {@link StoreFullError} for SQLSTATE 53100 (disk full). */
function unavailable(message: string, cause: unknown, maybeApplied: boolean): StoreUnavailableError {
  if (pgCode(cause) === '53100') return new StoreFullError(`${message} (disk full)`, { cause, maybeApplied });
  return new StoreUnavailableError(message, { cause, maybeApplied });
}

/** Reads the store's owner rows. */
const META_SQL = `SELECT key, value, set_at FROM store_meta WHERE key IN ('profile_uuid', 'profile_name')`;

/** The PostgreSQL adapter of {@link ProcessStore}; create it with {@link openPostgresStore}. */
export class PostgresStore implements ProcessStore {
  readonly backend = 'postgres' as const;
  private closing: Promise<void> | null = null;

  /** @internal use {@link openPostgresStore}. */
  constructor(
    private readonly pool: pg.Pool,
    /** The database URL without its password. */
    readonly where: string,
    private readonly version: number,
    private readonly retryMs: number,
    private readonly throttle: LogThrottle | null,
    private readonly statistics: StatisticsKeeper | null = null,
  ) {}

  private wrap(op: string, err: unknown): Error {
    if (err instanceof DroverError) return err;
    return new StoreError(`PostgreSQL store ${this.where}: ${op} failed: ${errorMessage(err)}`, { cause: err });
  }

  private checkOpen(op: string): void {
    if (this.closing !== null) throw new StoreError(`PostgreSQL store ${this.where}: ${op} called after close()`);
  }

  /**
   * Runs `body` on a connection of the pool, retrying failures that pass (see the module comment).
   * `idempotent`: the call may be repeated even when an attempt may have committed (the body
   * checks `attempt.afterMaybeApplied` where a repeat needs to know).
   */
  private async call<T>(
    op: string,
    idempotent: boolean,
    body: (c: pg.PoolClient, attempt: Attempt) => Promise<T>,
  ): Promise<T> {
    this.checkOpen(op);
    const deadline = Date.now() + this.retryMs;
    let maybeApplied = false;
    for (let n = 0; ; n++) {
      if (n > 0) this.checkOpen(op); // closed while waiting to retry
      const attempt: Attempt = { afterMaybeApplied: maybeApplied, committing: false, committed: false };
      let client: pg.PoolClient | null = null;
      let dropped = false;
      const onError = (): void => {
        dropped = true; // the pending query fails too and says why; the pool discards the client
      };
      let failure: unknown = null;
      try {
        try {
          client = await this.pool.connect();
        } catch (err) {
          failure = err;
          if (!connectFailurePasses(err)) throw this.wrap(op, err);
          throw err;
        }
        client.on('error', onError);
        const r = await body(client, attempt);
        this.throttle?.end('unavailable', `PostgreSQL store ${this.where}: reachable again`);
        return r;
      } catch (err) {
        failure = err;
        if (err instanceof DroverError) throw err; // ours: an answer, not a failure
        const passes =
          client === null
            ? true
            : err instanceof pg.DatabaseError
              ? transientSqlState(pgCode(err))
              : dropped || isSystemError(err) || !queryable(client);
        if (!passes) throw this.wrap(op, err);
        // The server answered with an ERROR: the statement (or transaction) was rolled back. A
        // FATAL (the backend was terminated) or a dropped connection during a commit leaves the
        // commit's fate unknown.
        const answeredError = err instanceof pg.DatabaseError && err.severity === 'ERROR';
        const thisMaybe = client !== null && (attempt.committed || (attempt.committing && !answeredError));
        maybeApplied ||= thisMaybe;
        const message = `PostgreSQL store ${this.where}: ${op} failed: ${errorMessage(err)}`;
        if (this.closing !== null || Date.now() >= deadline || (maybeApplied && !idempotent)) {
          throw unavailable(
            maybeApplied && !idempotent
              ? `${message} (the connection broke mid-write; it may have been applied)`
              : message,
            err,
            maybeApplied,
          );
        }
        const code = pgCode(err);
        if (code === '40001' || code === '40P01') {
          // A race PostgreSQL settled by aborting this side: go again at once (a little apart).
          await sleep(Math.random() * 10);
          continue;
        }
        this.throttle?.warn('unavailable', `${message}; retrying for up to ${Math.round(this.retryMs / 1000)} s`);
        await sleep(retryDelay(n));
      } finally {
        if (client !== null) {
          // A client that failed other than by a plain ERROR answer may be mid-transaction or
          // broken: do not hand it out again.
          const clean =
            failure === null ||
            (!dropped &&
              (failure instanceof DroverError ||
                (failure instanceof pg.DatabaseError && failure.severity === 'ERROR')));
          client.release(clean ? undefined : true);
          client.removeListener('error', onError);
        }
      }
    }
  }

  /** One statement outside an explicit transaction (named: prepared once per connection). */
  private async q<R extends pg.QueryResultRow>(
    op: string,
    kind: 'read' | 'write',
    name: string | null,
    text: string,
    values: unknown[],
  ): Promise<pg.QueryResult<R>> {
    // Every single-statement write here is idempotent (conditional on the lease owner, or clearing
    // a flag); the ones that are not do not come through this helper.
    return this.call(op, true, (c, a) => this.stmt<R>(c, a, kind, name, text, values));
  }

  /** One statement on `c`; a write marks `a` while it commits. */
  private async stmt<R extends pg.QueryResultRow>(
    c: pg.PoolClient,
    a: Attempt,
    kind: 'read' | 'write',
    name: string | null,
    text: string,
    values: unknown[],
  ): Promise<pg.QueryResult<R>> {
    if (kind === 'write') a.committing = true;
    const r = await c.query<R>(name === null ? { text, values } : { name, text, values });
    if (kind === 'write') {
      a.committing = false;
      a.committed = true;
    }
    return r;
  }

  /**
   * Runs `fn` in a transaction (retried as {@link PostgresStore.call} says; a deadlock or
   * serialization failure, which PostgreSQL resolves by aborting one side, is retried too).
   */
  private tx<T>(op: string, idempotent: boolean, fn: (c: pg.PoolClient, a: Attempt) => Promise<T>): Promise<T> {
    return this.call(op, idempotent, (c, a) => this.inTx(c, a, () => fn(c, a)));
  }

  /** `fn` between BEGIN and COMMIT on `c`, marking `a` while it commits. */
  private async inTx<T>(c: pg.PoolClient, a: Attempt, fn: () => Promise<T>): Promise<T> {
    await c.query('BEGIN');
    let r: T;
    try {
      r = await fn();
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined); // a broken client is discarded anyway
      throw err;
    }
    a.committing = true;
    await c.query('COMMIT');
    a.committing = false;
    a.committed = true;
    return r;
  }

  async schemaVersion(): Promise<number> {
    return this.version;
  }

  async storeProfile(): Promise<StoreOwner | null> {
    const r = await this.q<MetaRow>('storeProfile', 'read', null, META_SQL, []);
    return ownerFromRows(r.rows);
  }

  async adoptProfile(uuid: string, name: string): Promise<AdoptResult> {
    checkAdoptArgs(uuid, name);
    // A repeat after a broken commit finds its own row: the owner is right either way.
    return this.tx('adoptProfile', true, async (c) => {
      const now = Date.now();
      const ins = await c.query(
        `INSERT INTO store_meta (key, value, set_at) VALUES ('profile_uuid', $1, $2) ON CONFLICT (key) DO NOTHING`,
        [uuid, now],
      );
      const adopted = ins.rowCount === 1;
      if (adopted) {
        await c.query(
          `INSERT INTO store_meta (key, value, set_at) VALUES ('profile_name', $1, $2)
           ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, set_at = EXCLUDED.set_at`,
          [name, now],
        );
      }
      const r = await c.query<MetaRow>(META_SQL);
      return { owner: ownerFromRows(r.rows)!, adopted };
    });
  }

  async serverVersion(): Promise<string> {
    const r = await this.q<{ server_version: string }>('serverVersion', 'read', null, 'SHOW server_version', []);
    return `PostgreSQL ${r.rows[0]!.server_version}`;
  }

  async createProcesses(specs: readonly NewProcess[]): Promise<number[]> {
    if (!Array.isArray(specs)) throw new InputError('createProcesses: specs must be an array');
    const checked = specs.map((s, i) => checkNewProcess(s, `createProcesses: spec #${i}`));
    if (checked.length === 0) return [];
    // The uuids are chosen once, so a repeat after a broken connection finds what it created.
    const uuids = checked.map(() => crypto.randomUUID());
    return this.call('createProcesses', true, async (c, a) => {
      a.committing = true;
      const ids = await this.insertProcesses(c, checked, uuids, a.afterMaybeApplied);
      a.committing = false;
      a.committed = true;
      return ids;
    });
  }

  /** Inserts processes with the given uuids; `again`: some may exist already (see `Q.createAgain`). */
  private async insertProcesses(
    c: pg.PoolClient,
    specs: CheckedNewProcess[],
    uuids: string[],
    again: boolean,
  ): Promise<number[]> {
    let r: pg.QueryResult<{ id: number; uuid: string }>;
    try {
      const values = [
        uuids,
        specs.map((s) => s.type),
        specs.map((s) => s.label),
        specs.map((s) => s.inputsJson),
        specs.map((s) => s.parentId),
      ];
      r = await c.query<{ id: number; uuid: string }>(
        again ? { name: 'createAgain', text: Q.createAgain, values } : overColumns('create', values),
      );
    } catch (err) {
      if (pgCode(err) === '23503') {
        const parents = [...new Set(specs.map((s) => s.parentId).filter((p) => p !== null))];
        throw new ProcessNotFoundError(`createProcesses: a parent process does not exist (of ${parents.join(', ')})`, {
          cause: err,
        });
      }
      throw err;
    }
    const byUuid = new Map(r.rows.map((row) => [row.uuid, row.id]));
    return uuids.map((u) => byUuid.get(u)!);
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
    // Idempotent: a repeat finds the submission journaled at `seq` and returns that child.
    return this.tx('submitChild', true, async (c) => {
      const p = await c.query<{ lease_owner: string | null; runs: number }>(
        'SELECT lease_owner, runs FROM processes WHERE id = $1 FOR NO KEY UPDATE',
        [parentId],
      );
      if (p.rows.length === 0) throw new ProcessNotFoundError(`${where}: no such process`);
      if (p.rows[0]!.lease_owner !== owner || p.rows[0]!.runs !== claim) {
        throw new LeaseLostError(`${where}: ${owner} does not hold the lease on process ${parentId} by claim ${claim}`);
      }
      const j = await c.query<JournalRow>(
        'SELECT process_id, seq, kind, name, result FROM journal WHERE process_id = $1 AND seq = $2',
        [parentId, seq],
      );
      const existing = j.rows[0];
      if (existing !== undefined) {
        if (existing.kind !== 'submit') {
          throw new NonDeterminismError(
            `${where}: the journal has ${existing.kind} '${existing.name}' at seq ${seq}, not a submission`,
          );
        }
        return existing.result as number;
      }
      const [childId] = await this.insertProcesses(c, [checked], [crypto.randomUUID()], false);
      await c.query('INSERT INTO journal (process_id, seq, kind, name, result) VALUES ($1, $2, $3, $4, $5::jsonb)', [
        parentId,
        seq,
        'submit',
        checked.type,
        JSON.stringify(childId),
      ]);
      return childId!;
    });
  }

  async markDispatched(ids: readonly number[], requestedUpTo?: number | readonly number[]): Promise<void> {
    if (!Array.isArray(ids)) throw new InputError('markDispatched: ids must be an array of process ids');
    for (const id of ids) checkId(id, 'markDispatched');
    const upTo = checkUpTo(ids, requestedUpTo, 'markDispatched');
    if (ids.length === 0) return;
    const values = [[...ids], upTo];
    // One id (a client's submits confirmed one at a time, a woken parent): see the `…One` statements.
    const st = overColumns('markDispatched', values);
    await this.q('markDispatched', 'write', st.name, st.text, st.values);
  }

  async pendingDispatches(olderThanMs: number, limit: number): Promise<number[]> {
    const age = checkMs(olderThanMs, 'pendingDispatches', 'olderThanMs');
    const max = checkLimit(limit, 'pendingDispatches');
    await this.q('pendingDispatches', 'write', 'expireLeases', Q.expireLeases, [age]);
    const r = await this.q<{ id: number }>('pendingDispatches', 'read', 'pending', Q.pending, [age, max]);
    return r.rows.map((row) => row.id);
  }

  async nextDispatches(limit: number, excluding: readonly number[] = []): Promise<number[]> {
    const max = checkLimit(limit, 'nextDispatches');
    const skip = new Set(checkIds(excluding, 'nextDispatches'));
    const r = await this.q<{ id: number }>('nextDispatches', 'read', 'next', Q.next, [max + skip.size]);
    const out: number[] = [];
    for (const row of r.rows) {
      if (skip.has(row.id)) continue;
      out.push(row.id);
      if (out.length === max) break;
    }
    return out;
  }

  async expireLeases(): Promise<number> {
    const r = await this.q('expireLeases', 'write', 'expireLeases', Q.expireLeases, [0]);
    return r.rowCount ?? 0;
  }

  async outboxCounts(): Promise<OutboxCounts> {
    const r = await this.q<OutboxCounts>('outboxCounts', 'read', 'outboxCounts', Q.outboxCounts, []);
    return { pending: r.rows[0]!.pending, unclaimed: r.rows[0]!.unclaimed };
  }

  async unclaimedDispatches(olderThanMs: number, limit: number): Promise<number[]> {
    const age = checkMs(olderThanMs, 'unclaimedDispatches', 'olderThanMs');
    const max = checkLimit(limit, 'unclaimedDispatches');
    const r = await this.q<{ id: number }>('unclaimedDispatches', 'read', 'unclaimed', Q.unclaimed, [age, max]);
    return r.rows.map((row) => row.id);
  }

  async claim(ids: readonly number[], owner: string, leaseMs: number): Promise<ClaimResult[]> {
    if (!Array.isArray(ids)) throw new InputError('claim: ids must be an array of process ids');
    for (const id of ids) checkId(id, 'claim');
    checkOwner(owner, 'claim');
    const ms = checkMs(leaseMs, 'claim', 'leaseMs');
    if (ids.length === 0) return [];
    const unique = [...new Set(ids)].sort((a, b) => a - b);
    // Not idempotent: a repeat of a claim that committed would find the caller's own lease and
    // report `leased`. So a claim whose connection broke mid-write fails with `maybeApplied`.
    const { won, reasons } = await this.call('claim', false, async (c, a) => {
      type Claimed = ProcessRow & { journal: JsonValue[] };
      const w =
        unique.length === 1
          ? await this.stmt<Claimed>(c, a, 'write', 'claimOne', Q.claimOne, [unique[0], owner, ms])
          : await this.stmt<Claimed>(c, a, 'write', 'claim', Q.claim, [unique, owner, ms]);
      const claimed = new Map(w.rows.map((r) => [r.id, r]));
      const lost = unique.filter((id) => !claimed.has(id));
      const rs = new Map<number, LeaseRow>();
      if (lost.length > 0) {
        const r = await c.query<LeaseRow>({ name: 'leaseRows', text: Q.leaseRows, values: [lost] });
        for (const row of r.rows) rs.set(row.id, row);
        // Refused ones need no dispatch now (see ProcessStore.claim).
        await c.query({ name: 'clearRefused', text: Q.clearRefused, values: [lost] });
      }
      return { won: claimed, reasons: rs };
    });
    const given = new Set<number>();
    return ids.map((id): ClaimResult => {
      const row = won.get(id);
      if (row !== undefined && !given.has(id)) {
        given.add(id);
        const { journal, ...rec } = row;
        return {
          claimed: true,
          process: toRecord(rec),
          journal: journal as unknown as JournalEntry[],
          claim: rec.runs,
        };
      }
      // A second copy of an id in one call is a duplicate delivery: its first copy holds the lease.
      if (row !== undefined) return { claimed: false, reason: 'leased' };
      const r = reasons.get(id);
      return claimRefusal(r, r?.now ?? 0);
    });
  }

  async renewLeases(owner: string, runs: readonly RunClaim[], leaseMs: number): Promise<number[]> {
    checkOwner(owner, 'renewLeases');
    const list = checkRunClaims(runs, 'renewLeases');
    const ms = checkMs(leaseMs, 'renewLeases', 'leaseMs');
    if (list.length === 0) return [];
    const r = await this.q<{ id: number }>('renewLeases', 'write', 'renew', Q.renew, [
      list.map((x) => x.id),
      list.map((x) => x.claim),
      owner,
      ms,
    ]);
    const held = new Set(r.rows.map((row) => row.id));
    return [...new Set(list.map((x) => x.id))].filter((id) => held.has(id));
  }

  async releaseLeases(owner: string, runs?: readonly RunClaim[]): Promise<number[]> {
    checkOwner(owner, 'releaseLeases');
    // A repeat of a release that committed returns fewer ids; those are marked for dispatch in
    // the store all the same, and the outbox sweep publishes them.
    if (runs === undefined) {
      const r = await this.q<{ id: number }>('releaseLeases', 'write', 'releaseAll', Q.releaseAll, [owner]);
      return r.rows.map((row) => row.id).sort((a, b) => a - b);
    }
    const list = checkRunClaims(runs, 'releaseLeases');
    if (list.length === 0) return [];
    const r = await this.q<{ id: number }>('releaseLeases', 'write', 'release', Q.release, [
      list.map((x) => x.id),
      list.map((x) => x.claim),
      owner,
    ]);
    const released = new Set(r.rows.map((row) => row.id));
    return [...new Set(list.map((x) => x.id))].filter((id) => released.has(id));
  }

  async releaseLeasesByPrefix(ownerPrefix: string, liveOwners: readonly string[]): Promise<ReleasedLease[]> {
    const prefix = checkOwner(ownerPrefix, 'releaseLeasesByPrefix');
    const live = checkOwners(liveOwners, 'releaseLeasesByPrefix');
    // A repeat of a release that committed releases nothing more; those processes are pending all the same.
    const r = await this.q<{ id: number; lease_owner: string }>(
      'releaseLeasesByPrefix',
      'write',
      'releaseByPrefix',
      Q.releaseByPrefix,
      [prefix, live],
    );
    return r.rows.map((row) => ({ id: row.id, owner: row.lease_owner })).sort((a, b) => a.id - b.id);
  }

  async complete(id: number, owner: string, claim: number, outcome: ProcessOutcome): Promise<CompleteResult> {
    const [r] = await this.completeMany([{ id, owner, claim, outcome }]);
    return r!;
  }

  async completeMany(items: readonly Completion[]): Promise<CompleteResult[]> {
    const checked = checkCompletions(items);
    if (checked.length === 0) return [];
    // A repeated id counts once (its first item), as if run one by one.
    const first = new Map<number, number>();
    checked.forEach((it, i) => {
      if (!first.has(it.id)) first.set(it.id, i);
    });
    const unique = [...first.values()].map((i) => checked[i]!).sort((x, y) => x.id - y.id);
    return this.call('complete', true, async (c, a) => {
      // Top-level processes first, in one statement and one round trip (most batches are only
      // those): what it did not record has a parent to wake or lost its lease, and takes the
      // transaction below. A repeat after a lost answer skips it: the transaction's check for
      // outcomes recorded before recognizes these too.
      const top = new Map<number, StoredOutcome>();
      let items = unique;
      // Those the caller knows to be children go to the transaction at once.
      const maybeTop = unique.filter((it) => typeof it.parentId !== 'number');
      if (!a.afterMaybeApplied && maybeTop.length > 0) {
        // One completion (a worker under light load): see the `…One` statements.
        const st = overColumns('completeTop', completionValues(maybeTop));
        const r = await this.stmt<{ id: number } & StoredRow>(c, a, 'write', st.name, st.text, st.values);
        const byId = new Map(maybeTop.map((it) => [it.id, it]));
        for (const row of r.rows) top.set(row.id, storedOutcome(byId.get(row.id)!.o, row.outputs, row.mtime));
        items = unique.filter((it) => !top.has(it.id));
      }
      const rest = items.length === 0 ? null : await this.inTx(c, a, () => this.completeRest(c, a, items));
      return checked.map((it, i): CompleteResult => {
        if (first.get(it.id) !== i) return { ok: false, wokenParentId: null, stored: null };
        const t = top.get(it.id);
        if (t !== undefined) return { ok: true, wokenParentId: null, stored: t };
        return rest!.get(it.id)!;
      });
    });
  }

  /** The completions of {@link PostgresStore.completeMany} that need a transaction (ids unique, sorted). */
  private async completeRest(
    c: pg.PoolClient,
    a: Attempt,
    items: ReadonlyArray<CheckedCompletion>,
  ): Promise<Map<number, CompleteResult>> {
    // Parents first (they have the lower ids), then the children, all in id order. One child
    // (a workflow's children ending one at a time): the `…One` statements.
    await c.query(overColumns('lockWithParents', [items.map((it) => it.id)]));
    const done = await c.query<{ id: number; parent_id: number | null } & StoredRow>(
      overColumns('complete', completionValues(items)),
    );
    const rowOf = new Map(done.rows.map((r) => [r.id, r]));
    // A repeat after a commit whose answer was lost: the outcomes the first attempt wrote are
    // there (terminal, in the state written, last claimed by this very claim, lease cleared): they
    // count as recorded. Their woken parents were marked for dispatch then; the sweep sends them.
    const recordedBefore = new Set<number>();
    if (a.afterMaybeApplied) {
      const missing = items.filter((it) => !rowOf.has(it.id));
      if (missing.length > 0) {
        const r = await c.query<{
          id: number;
          state: string;
          worker_id: string | null;
          lease_owner: string | null;
          runs: number;
        }>('SELECT id, state, worker_id, lease_owner, runs FROM processes WHERE id = ANY($1::bigint[])', [
          missing.map((it) => it.id),
        ]);
        const rows = new Map(r.rows.map((row) => [row.id, row]));
        for (const it of missing) {
          const row = rows.get(it.id);
          if (
            row &&
            row.state === it.o.state &&
            row.worker_id === it.owner &&
            row.runs === it.claim &&
            row.lease_owner === null
          ) {
            recordedBefore.add(it.id);
          }
        }
      }
    }
    const pairs: [number, number][] = [];
    for (const it of items) {
      const parent = rowOf.get(it.id)?.parent_id;
      if (parent !== undefined && parent !== null) pairs.push([parent, it.id]);
    }
    const woken = await this.wakeParents(c, pairs);
    const out = new Map<number, CompleteResult>();
    for (const it of items) {
      if (recordedBefore.has(it.id)) out.set(it.id, { ok: true, wokenParentId: null, stored: null });
      else {
        const row = rowOf.get(it.id);
        if (row === undefined) {
          out.set(it.id, { ok: false, wokenParentId: null, stored: null });
          continue;
        }
        const parent = row.parent_id;
        // The wake-up is reported by the child that took the count to 0 had the batch run item by item.
        const last = parent !== null && woken.has(parent) && woken.get(parent) === it.id;
        out.set(it.id, {
          ok: true,
          wokenParentId: last ? parent : null,
          stored: storedOutcome(it.o, row.outputs, row.mtime),
        });
      }
    }
    return out;
  }

  /**
   * Children terminated (their parents' rows locked): counts the awaited ones off; returns each
   * woken parent with the child that woke it (its last awaited child in `pairs` order).
   */
  private async wakeParents(c: pg.PoolClient, pairs: [number, number][]): Promise<Map<number, number>> {
    const out = new Map<number, number>();
    if (pairs.length === 0) return out;
    const r = await c.query<{ id: number; waiting_on: number; children: (string | number)[] }>(
      overColumns('wakeParents', [pairs.map((p) => p[0]), pairs.map((p) => p[1])]),
    );
    for (const row of r.rows) {
      if (row.waiting_on !== 0) continue;
      const counted = new Set(row.children.map(Number)); // int8[] arrives as strings
      const last = pairs.filter(([parent, child]) => parent === row.id && counted.has(child)).pop();
      out.set(row.id, last![1]);
    }
    return out;
  }

  async appendJournal(id: number, owner: string, claim: number, entry: JournalEntry): Promise<void> {
    const where = `appendJournal(${id})`;
    checkId(id, where);
    checkOwner(owner, where);
    checkClaim(claim, where);
    const e = checkJournalEntry(entry, where);
    await this.call('appendJournal', true, async (c, a) => {
      let r: pg.QueryResult;
      try {
        r = await this.stmt(c, a, 'write', 'appendJournal', Q.appendJournal, [
          id,
          owner,
          e.seq,
          e.kind,
          e.name,
          e.resultJson,
          claim,
        ]);
      } catch (err) {
        if (pgCode(err) !== '23505') throw err;
        // A repeat of a write whose answer was lost finds the very entry it wrote: done.
        const j = await c.query<{ kind: string; name: string; same: boolean }>(
          'SELECT kind, name, result = $3::jsonb AS same FROM journal WHERE process_id = $1 AND seq = $2',
          [id, e.seq, e.resultJson],
        );
        const row = j.rows[0];
        if (row && row.kind === e.kind && row.name === e.name && row.same) return;
        throw new StoreError(`${where}: the journal already has an entry at seq ${e.seq}`, { cause: err });
      }
      if (r.rowCount === 0) {
        const p = await c.query('SELECT 1 FROM processes WHERE id = $1', [id]);
        if (p.rows.length === 0) throw new ProcessNotFoundError(`${where}: no such process`);
        throw new LeaseLostError(`${where}: ${owner} does not hold the lease on process ${id} by claim ${claim}`);
      }
    });
  }

  async getJournal(id: number): Promise<JournalEntry[]> {
    checkId(id, 'getJournal');
    const r = await this.q<JournalRow>('getJournal', 'read', 'journal', Q.journal, [id]);
    return r.rows.map(toEntry);
  }

  async waitForChildren(id: number, owner: string, claim: number, childIds: readonly number[]): Promise<WaitResult> {
    const where = `waitForChildren(${id})`;
    checkId(id, where);
    checkOwner(owner, where);
    checkClaim(claim, where);
    const list = checkIds(childIds, where);
    return this.tx('waitForChildren', true, async (c) => {
      // Lock the parent before counting: see the module header (lost wake-up).
      const p = await c.query<{
        lease_owner: string | null;
        state: ProcessState;
        worker_id: string | null;
        runs: number;
      }>('SELECT lease_owner, state, worker_id, runs FROM processes WHERE id = $1 FOR NO KEY UPDATE', [id]);
      if (p.rows.length === 0) throw new ProcessNotFoundError(`${where}: no such process`);
      const row = p.rows[0]!;
      if (row.lease_owner !== owner || row.runs !== claim) {
        // A repeat of a checkpoint that went through (its answer lost): the process is waiting,
        // last claimed by this very claim, which released the lease by waiting.
        if (row.state === 'waiting' && row.worker_id === owner && row.runs === claim && row.lease_owner === null) {
          return { waiting: true };
        }
        throw new LeaseLostError(`${where}: ${owner} does not hold the lease by claim ${claim}`);
      }
      if (list.length === 0) return { waiting: false };
      const found = await c.query<{ id: number; state: ProcessState }>(
        'SELECT id, state FROM processes WHERE parent_id = $1 AND id = ANY($2::bigint[])',
        [id, list],
      );
      if (found.rows.length !== list.length) {
        const have = new Set(found.rows.map((r) => r.id));
        const bad = list.filter((cid) => !have.has(cid));
        throw new InputError(`${where}: process(es) ${bad.join(', ')} are not children of process ${id}`);
      }
      const open = found.rows.filter((r) => !isTerminal(r.state)).map((r) => r.id);
      if (open.length === 0) return { waiting: false };
      await c.query('DELETE FROM process_awaits WHERE parent_id = $1', [id]);
      await c.query('INSERT INTO process_awaits (parent_id, child_id) SELECT $1, unnest($2::bigint[])', [id, open]);
      await c.query(
        `UPDATE processes SET state = 'waiting', waiting_on = $2, lease_owner = NULL, lease_expires_at = NULL,
           dispatch_requested_at = NULL, mtime = ${NOW}
         WHERE id = $1`,
        [id, open.length],
      );
      return { waiting: true };
    });
  }

  async setPaused(ids: readonly number[], paused: boolean): Promise<number[]> {
    const list = checkIds(ids, 'setPaused');
    if (typeof paused !== 'boolean') throw new InputError('setPaused: paused must be a boolean');
    if (list.length === 0) return [];
    const sql = paused
      ? `UPDATE processes SET paused = true, mtime = ${NOW}
         WHERE id = ANY($1::bigint[]) AND NOT paused AND state IN ${ACTIVE} RETURNING id`
      : `UPDATE processes SET paused = false, mtime = ${NOW},
           dispatch_requested_at = CASE
             WHEN (lease_owner IS NULL OR lease_expires_at <= ${NOW}) AND waiting_on = 0
             THEN coalesce(dispatch_requested_at, ${NOW}) ELSE dispatch_requested_at END
         WHERE id = ANY($1::bigint[]) AND paused AND state IN ${ACTIVE} RETURNING id`;
    const r = await this.q<{ id: number }>('setPaused', 'write', null, sql, [list]);
    const changed = new Set(r.rows.map((row) => row.id));
    return list.filter((id) => changed.has(id));
  }

  async requestKill(id: number, message: string | null): Promise<KillResult> {
    return (await this.requestKillDetailed(id, message)).result;
  }

  async requestKillDetailed(id: number, message: string | null): Promise<KillOutcome> {
    checkId(id, 'requestKill');
    const msg = checkMessage(message, `requestKill(${id})`);
    // Idempotent in effect: a repeat of a kill that committed finds the process terminal.
    return this.tx('requestKill', true, async (c): Promise<KillOutcome> => {
      // Parent (if any) then the process itself, in id order: killing ends a child like complete().
      const locked = await c.query<LeaseRow>(overColumns('lockWithParents', [[id]]));
      const row = locked.rows.find((r) => r.id === id);
      if (row === undefined) return { result: 'not-found', wokenParentId: null };
      if (isTerminal(row.state)) return { result: 'terminal', wokenParentId: null };
      if (isLive(row)) {
        await c.query(`UPDATE processes SET kill_requested = true, mtime = ${NOW} WHERE id = $1`, [id]);
        return { result: 'running', wokenParentId: null };
      }
      await c.query(
        `UPDATE processes SET state = 'killed', exit_message = $2, lease_owner = NULL, lease_expires_at = NULL,
           kill_requested = false, paused = false, dispatch_requested_at = NULL, dispatched_at = NULL, waiting_on = 0,
           mtime = ${NOW}
         WHERE id = $1`,
        [id, msg],
      );
      await c.query('DELETE FROM process_awaits WHERE parent_id = $1', [id]);
      const woken =
        row.parent_id === null
          ? null
          : (await this.wakeParents(c, [[row.parent_id, id]])).has(row.parent_id)
            ? row.parent_id
            : null;
      return { result: 'killed', wokenParentId: woken };
    });
  }

  async getProcess(id: number): Promise<ProcessRecord | null> {
    checkId(id, 'getProcess');
    const r = await this.q<ProcessRow>('getProcess', 'read', 'get', Q.get, [id]);
    const row = r.rows[0];
    return row === undefined ? null : toRecord(row);
  }

  async listProcesses(filter?: ProcessFilter): Promise<ProcessRecord[]> {
    const f = checkFilter(filter, 'listProcesses');
    const conds: string[] = [];
    const params: unknown[] = [];
    const param = (v: unknown): string => {
      params.push(v);
      return `$${params.length}`;
    };
    if (f.ids !== null) conds.push(`id = ANY(${param(f.ids)}::bigint[])`);
    if (f.states !== null) conds.push(`state = ANY(${param(f.states)}::text[])`);
    if (f.type !== null) conds.push(`type = ${param(f.type)}`);
    if (f.parentId !== null) conds.push(`parent_id = ${param(f.parentId)}`);
    if (f.pastDays !== null) conds.push(`ctime >= ${NOW} - ${param(Math.round(f.pastDays * DAY_MS))}::bigint`);
    if (f.modifiedBefore !== null) conds.push(`mtime < ${param(Math.round(f.modifiedBefore))}::bigint`);
    // One id and no other condition (a wait's check of a single submit; a limit is at least 1):
    // getProcess's named statement, planned once, not a new statement parsed and planned each time.
    if (f.ids?.length === 1 && conds.length === 1) {
      const p = await this.getProcess(f.ids[0]!);
      return p === null ? [] : [p];
    }
    let sql = `SELECT ${COLS} FROM processes`;
    if (conds.length > 0) sql += ` WHERE ${conds.join(' AND ')}`;
    sql += ' ORDER BY id DESC';
    if (f.limit !== null) sql += ` LIMIT ${param(f.limit)}`;
    const r = await this.q<ProcessRow>('listProcesses', 'read', null, sql, params);
    return r.rows.map(toRecord);
  }

  async deleteProcesses(ids: readonly number[], opts: { dryRun?: boolean } = {}): Promise<DeleteResult> {
    const list = checkIds(ids, 'deleteProcesses');
    const dryRun = opts.dryRun === true;
    if (list.length === 0) return { deleted: [], refused: [], notFound: [] };
    // Idempotent in effect: a repeat of a delete that committed finds the ids gone (not found).
    return this.tx('deleteProcesses', true, async (c): Promise<DeleteResult> => {
      const out: DeleteResult = { deleted: [], refused: [], notFound: [] };
      const gone = new Set<number>();
      for (const id of list) {
        if (gone.has(id)) continue;
        // Breadth first from the root; the rows are then locked in id order (as every writer
        // locks), and judged by their locked states.
        const treeIds = await c.query<{ id: number }>(
          `WITH RECURSIVE t(id) AS (SELECT $1::bigint UNION ALL SELECT p.id FROM processes p JOIN t ON p.parent_id = t.id)
           SELECT id FROM t`,
          [id],
        );
        const locked = await c.query<{ id: number; state: ProcessState; parent_id: number | null }>(
          'SELECT id, state, parent_id FROM processes WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE',
          [treeIds.rows.map((r) => r.id)],
        );
        const byId = new Map(locked.rows.map((r) => [r.id, r]));
        const row = byId.get(id);
        if (row === undefined) {
          out.notFound.push(id);
          continue;
        }
        const parent =
          row.parent_id === null
            ? undefined
            : (
                await c.query<{ id: number; state: ProcessState }>('SELECT id, state FROM processes WHERE id = $1', [
                  row.parent_id,
                ])
              ).rows[0];
        const tree = treeIds.rows.flatMap((r) => (byId.has(r.id) ? [byId.get(r.id)!] : []));
        const refusal = deleteRefusal(row, parent, tree);
        if (typeof refusal === 'string') {
          out.refused.push({ id, reason: refusal });
          continue;
        }
        if (dryRun) {
          for (const x of refusal) gone.add(x);
          continue;
        }
        await c.query(
          `WITH j AS (DELETE FROM journal WHERE process_id = ANY($1::bigint[])),
                r AS (DELETE FROM reports WHERE process_id = ANY($1::bigint[])),
                a AS (DELETE FROM process_awaits WHERE parent_id = ANY($1::bigint[]) OR child_id = ANY($1::bigint[]))
           SELECT 1`,
          [refusal],
        );
        await c.query('DELETE FROM processes WHERE id = ANY($1::bigint[])', [refusal]);
        for (const x of refusal) gone.add(x);
      }
      out.deleted = [...gone].sort((a, b) => a - b);
      return out;
    });
  }

  async registerDaemon(reg: DaemonRegistration): Promise<void> {
    const r = checkRegistration(reg);
    await this.q(
      'registerDaemon',
      'write',
      null,
      `INSERT INTO daemons (id, host, pid, version, state, started_at, heartbeat_at, workers)
       VALUES ($1, $2, $3, $4, $5, $6, ${NOW}, $7::jsonb)
       ON CONFLICT (id) DO UPDATE SET state = excluded.state, heartbeat_at = excluded.heartbeat_at,
         workers = excluded.workers, version = excluded.version`,
      [r.id, r.host, r.pid, r.version, r.state, r.startedAt, JSON.stringify(r.workers)],
    );
  }

  async unregisterDaemon(id: string, purgeAfterMs = 86_400_000): Promise<void> {
    if (typeof id !== 'string') throw new InputError('unregisterDaemon: id must be a string');
    const ms = checkMs(purgeAfterMs, 'unregisterDaemon', 'purgeAfterMs');
    await this.q(
      'unregisterDaemon',
      'write',
      null,
      `DELETE FROM daemons WHERE id = $1 OR heartbeat_at < ${NOW} - $2::bigint`,
      [id, ms],
    );
  }

  async listDaemons(): Promise<RegisteredDaemon[]> {
    const r = await this.q<{
      id: string;
      host: string;
      pid: number;
      version: string;
      state: string;
      started_at: number;
      heartbeat_at: number;
      workers: RegisteredDaemon['workers'];
      age: number;
    }>('listDaemons', 'read', null, `SELECT *, ${NOW} - heartbeat_at AS age FROM daemons ORDER BY started_at, id`, []);
    return r.rows.map((x) => ({
      id: x.id,
      host: x.host,
      pid: x.pid,
      version: x.version,
      state: x.state,
      startedAt: Number(x.started_at),
      heartbeatAt: Number(x.heartbeat_at),
      ageMs: Math.max(0, Number(x.age)),
      workers: x.workers,
    }));
  }

  async getSharedOptions(): Promise<Record<string, JsonValue>> {
    const r = await this.q<{ key: string; value: JsonValue }>(
      'getSharedOptions',
      'read',
      null,
      'SELECT key, value FROM profile_options ORDER BY key',
      [],
    );
    return Object.fromEntries(r.rows.map((x) => [x.key, x.value]));
  }

  async setSharedOption(key: string, value: JsonValue | undefined): Promise<boolean> {
    const k = checkOptionKey(key);
    if (value === undefined) {
      const r = await this.q('setSharedOption', 'write', null, 'DELETE FROM profile_options WHERE key = $1', [k]);
      return (r.rowCount ?? 0) > 0;
    }
    const json = checkJsonValue(value, `setSharedOption(${k})`, RESULT_LIMITS);
    await this.q(
      'setSharedOption',
      'write',
      null,
      `INSERT INTO profile_options (key, value, updated_at) VALUES ($1, $2::jsonb, ${NOW})
       ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
      [k, json],
    );
    return true;
  }

  async countByState(): Promise<Record<ProcessState, number>> {
    const r = await this.q<{ state: ProcessState; n: number }>(
      'countByState',
      'read',
      null,
      'SELECT state, count(*) AS n FROM processes GROUP BY state',
      [],
    );
    const out = emptyCounts();
    for (const row of r.rows) out[row.state] = row.n;
    return out;
  }

  async addReport(id: number, owner: string, claim: number, message: string, at?: ReportPosition): Promise<boolean> {
    const where = `addReport(${id})`;
    checkId(id, 'addReport');
    checkOwner(owner, where);
    checkClaim(claim, where);
    const r = checkReport(id, message, at);
    // A line without a position is not idempotent (a repeat would add it twice): not repeated after a
    // broken write. One with a position is: a repeat finds the first and does nothing.
    return this.call('addReport', r.position !== null, async (c, a) => {
      const res = await this.stmt(c, a, 'write', 'addReport', Q.addReport, [
        id,
        owner,
        claim,
        r.message,
        r.position,
        r.index,
      ]);
      if (res.rowCount !== 0) return true;
      const p = await c.query<{ held: boolean }>(
        'SELECT lease_owner = $2 AND runs = $3 AS held FROM processes WHERE id = $1',
        [id, owner, claim],
      );
      if (p.rows.length === 0) throw new ProcessNotFoundError(`addReport: process ${id} does not exist`);
      // Nothing written: a line already at that place (a replay), or a run that lost the lease.
      if (p.rows[0]!.held) return false;
      throw new LeaseLostError(`${where}: ${owner} does not hold the lease on process ${id} by claim ${claim}`);
    });
  }

  async getReports(id: number): Promise<ReportLine[]> {
    checkId(id, 'getReports');
    const r = await this.q<ReportLine>(
      'getReports',
      'read',
      'reports',
      'SELECT time, message FROM reports WHERE process_id = $1 ORDER BY id',
      [id],
    );
    return r.rows.map((row) => ({ time: row.time, message: row.message }));
  }

  async close(): Promise<void> {
    this.closing ??= (async () => {
      await this.statistics?.stop();
      await this.pool.end().catch(() => undefined);
    })();
    return this.closing;
  }
}

/**
 * False once a client's connection has failed. pg has no public flag for it; pg-pool reads this
 * one (`_queryable`) to discard broken clients, and so do we, to tell a connection that broke
 * before our listener was attached from a statement that failed.
 */
function queryable(client: pg.PoolClient): boolean {
  return (client as unknown as { _queryable?: boolean })._queryable !== false;
}

/** A Node system error (refused, reset, broken pipe, timed out): the socket, not the statement. */
function isSystemError(err: unknown): boolean {
  const e = err as { syscall?: unknown; errno?: unknown };
  return typeof e.syscall === 'string' || typeof e.errno === 'number';
}
