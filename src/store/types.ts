/**
 * The process store: the source of truth for every process. The broker only carries "continue
 * process N" tasks; whatever the broker loses, the store still knows.
 *
 * Outbox: a process row carries a `dispatch pending` flag. It is set in the same transaction that
 * creates the process (or releases its lease, or wakes it) and cleared once its continue task has
 * been confirmed by the broker, so a crash between commit and publish loses nothing: pending rows
 * are re-published at worker start and periodically.
 *
 * Hand-over: once the bus confirmed a process's task ({@link ProcessStore.markDispatched}), the row
 * records when (`dispatched_at`) until a claim clears it. A process handed over and not claimed for
 * long is one whose task the bus may have lost (a purged or deleted queue, a reset broker): the
 * re-dispatch check compares {@link OutboxCounts.unclaimed} with what the bus holds and publishes
 * the oldest of them again ({@link ProcessStore.unclaimedDispatches}); the claim drops the extra copy.
 *
 * Lease: a worker runs a process only after {@link ProcessStore.claim} succeeded, an atomic
 * conditional update that sets `leaseOwner` and `leaseExpiresAt`. The lease is renewed while the
 * process runs and cleared when it ends, checkpoints or is released.
 *
 * Fencing: every successful claim increments the process's claim counter (`runs`), and the new
 * value is that claim's token ({@link ClaimResult} `claim`). Every write of a run (renewal, journal,
 * child submission, checkpoint, report line, outcome, release of given runs) names the owner and the
 * token, and is refused unless the process's lease owner and counter are both still those: a late
 * write of an earlier claim, by another worker or by the same one, changes nothing.
 *
 * All methods are safe to call from several processes (and, for PostgreSQL, machines) at once.
 *
 * @module
 */
import type {
  JournalEntry,
  JsonValue,
  ProcessOutcome,
  ProcessRecord,
  ProcessState,
  ReportLine,
} from '../protocol/index.js';

/** A process to create. */
export interface NewProcess {
  type: string;
  inputs: JsonValue;
  label?: string | null;
  parentId?: number | null;
}

/** Result of a claim attempt. */
export type ClaimResult =
  | {
      claimed: true;
      process: ProcessRecord;
      journal: JournalEntry[];
      /**
       * The fencing token of this claim: the process's claim counter after it (equal to
       * `process.runs`), one more than the previous claim's. Every write of the run passes it.
       */
      claim: number;
    }
  | {
      claimed: false;
      /** Why not: no such process, already terminal, another live lease, paused, or waiting on children. */
      reason: 'not-found' | 'terminal' | 'leased' | 'paused' | 'waiting';
    };

/** Result of completing a process. */
export interface CompleteResult {
  /** False when the caller no longer held the lease (nothing was written). */
  ok: boolean;
  /** The parent that this completion woke up (its last awaited child ended); dispatch it. */
  wokenParentId: number | null;
  /**
   * When this call wrote the outcome: the outcome's columns as stored, with the outputs as a read
   * gives them back (PostgreSQL's jsonb orders an object's keys its own way), and the time written.
   * With the claimed record they make the record as stored (see `StateBroadcast.record`). Null
   * when nothing was written, or when a repeat found the outcome written before.
   */
  stored: StoredOutcome | null;
}

/** An outcome as a completion stored it (see {@link CompleteResult.stored}). */
export type StoredOutcome = Pick<
  ProcessRecord,
  'state' | 'outputs' | 'exitStatus' | 'exitMessage' | 'exception' | 'mtime'
>;

/** Result of a checkpoint before waiting on children. */
export interface WaitResult {
  /**
   * True when the process is now `waiting` (lease released, slot free); it will be marked for
   * dispatch when the last of the children terminates. False when all children had already
   * terminated: the caller goes on running.
   */
  waiting: boolean;
}

/** Filter of {@link ProcessStore.listProcesses}. */
export interface ProcessFilter {
  /** Only these processes (a waiter reading many at once); ids that name none are left out. */
  ids?: readonly number[];
  /** Only these states (default: all). */
  states?: readonly ProcessState[];
  type?: string;
  parentId?: number;
  /** Only processes created within this many days. */
  pastDays?: number;
  /** Only processes last changed before this time (ms since the epoch). */
  modifiedBefore?: number;
  /** Newest first; at most this many (default: no limit). */
  limit?: number;
}

/** Result of {@link ProcessStore.deleteProcesses}. */
export interface DeleteResult {
  /** Every process removed: the ones asked for and their descendants, ascending. */
  deleted: number[];
  /** Ids asked for that were kept, each with why (changing nothing of its tree). */
  refused: Array<{ id: number; reason: string }>;
  /** Ids asked for that name no process. */
  notFound: number[];
}

/**
 * How often a daemon refreshes its row in the store's registry of daemons (`daemon status
 * --cluster`); a row older than {@link REGISTRY_STALE_MS} is shown stale. Every second because
 * the registry is also how the workers of other hosts notice a lost host soon (see
 * `Worker.redispatch`): one small write a second per daemon.
 */
export const REGISTRY_HEARTBEAT_MS = 1000;
/**
 * Age after which a registered daemon is stale (dead, cut off, frozen, or unable to reach the
 * store): four heartbeats missed, so a daemon slowed down by a loaded machine is not taken for lost.
 */
export const REGISTRY_STALE_MS = 4 * REGISTRY_HEARTBEAT_MS;

/** A worker as a daemon records it in the registry. */
export interface RegisteredWorker {
  /** Worker id (`<host>:<uuid>-w<N>-<random>`). */
  id: string;
  pid: number;
  slots: number;
  running: number;
}

/** A daemon as it records itself in the store's registry (every few seconds while it runs). */
export interface DaemonRegistration {
  /** Unique per daemon run: `<host>:<pid>:<started at>`. */
  id: string;
  host: string;
  pid: number;
  version: string;
  /** The daemon's state (starting, running, degraded, stopping). */
  state: string;
  startedAt: number;
  workers: RegisteredWorker[];
}

/** A registry row read back, with its age by the store's clock (hosts' clocks may differ). */
export interface RegisteredDaemon extends DaemonRegistration {
  heartbeatAt: number;
  /** Milliseconds since its last heartbeat, by the store's clock. */
  ageMs: number;
}

/** Outcome of a kill request handled in the store. */
export type KillResult =
  /** The process was not running anywhere and is now `killed`. */
  | 'killed'
  /** A live worker holds it; `killRequested` is set and the worker must be told. */
  | 'running'
  | 'terminal'
  | 'not-found';

/** Result of {@link ProcessStore.requestKillDetailed}. */
export interface KillOutcome {
  result: KillResult;
  /** The parent that this kill woke up (only when `result` is `killed`); dispatch it. */
  wokenParentId: number | null;
}

/** What the outbox holds (see {@link ProcessStore.outboxCounts}). */
export interface OutboxCounts {
  /** Processes whose dispatch is pending (not paused): not handed to the bus yet (local bus: not claimed yet). */
  pending: number;
  /** Processes handed to the bus (`markDispatched`) and not claimed since (not paused). */
  unclaimed: number;
}

/** One claim of a process: its id and the claim's fencing token ({@link ClaimResult} `claim`). */
export interface RunClaim {
  id: number;
  claim: number;
}

/** A lease released by {@link ProcessStore.releaseLeasesByPrefix}. */
export interface ReleasedLease {
  id: number;
  /** The owner that held it. */
  owner: string;
}

/**
 * Where in its run a report line was made (see {@link ProcessStore.addReport}): `position` is the
 * run's journal position at the time (the seq of the next journal entry, or of the step whose
 * function reported it), `index` counts the lines reported at that position, from 0. A replay takes
 * the same path and so reports the same positions again.
 */
export interface ReportPosition {
  position: number;
  index: number;
}

/** The profile a store belongs to (see {@link ProcessStore.storeProfile}). */
export interface StoreOwner {
  /** The profile's uuid. */
  uuid: string;
  /** Its name when it was recorded (for messages only: names differ between hosts). */
  name: string | null;
  /** When it was recorded (ms since the epoch). */
  since: number;
}

/** Result of {@link ProcessStore.adoptProfile}. */
export interface AdoptResult {
  /** The profile the store belongs to now. */
  owner: StoreOwner;
  /** True when this call recorded it (the store recorded no profile before). */
  adopted: boolean;
}

/** An item of {@link ProcessStore.completeMany}. */
export interface Completion {
  id: number;
  owner: string;
  claim: number;
  outcome: ProcessOutcome;
  /**
   * The process's parent as the caller's record has it (null: top-level), when known: a hint.
   * The PostgreSQL store records a child's outcome in the transaction that wakes its parent
   * straight away, without first trying the statement for top-level processes (a round trip of the
   * six). A wrong hint costs that round trip, never a wrong result: the store reads the parent.
   */
  parentId?: number | null;
}

/** The interface every store adapter implements (see the conformance suite in test/store/). */
export interface ProcessStore {
  /** `sqlite` or `postgres`. */
  readonly backend: 'sqlite' | 'postgres';
  /** Schema version after migrations. */
  schemaVersion(): Promise<number>;
  /** Version string of the database server or library. */
  serverVersion(): Promise<string>;

  /**
   * The profile the store belongs to, as the first daemon or worker that opened it recorded it; null
   * when none is recorded (a store nobody consumed yet, or one made before schema version 6).
   */
  storeProfile(): Promise<StoreOwner | null>;
  /**
   * Records the profile `uuid` (named `name` here) as the store's owner unless one is recorded
   * already, atomically (two openers racing: one wins, both get the winner). Never replaces an owner.
   */
  adoptProfile(uuid: string, name: string): Promise<AdoptResult>;

  /** Creates processes in state `created`, dispatch pending, in one transaction; returns their ids in order. */
  createProcesses(specs: readonly NewProcess[]): Promise<number[]>;
  /**
   * Creates a child of `parentId` and journals the submission at `seq` in one transaction, only
   * while `owner` holds the parent's lease by the claim `claim` (LeaseLostError otherwise). Returns
   * the child id, or the id journaled earlier at that seq (a replay never creates a second child).
   */
  submitChild(parentId: number, owner: string, claim: number, seq: number, spec: NewProcess): Promise<number>;
  /**
   * Clears the dispatch-pending flag of processes whose continue task the broker confirmed, and
   * records the hand-over time of each (also of processes handed over before and not claimed since:
   * a re-dispatch refreshes it). A process claimed meanwhile is left alone.
   *
   * `requestedUpTo` (optional, ms since the epoch): clear only requests made at or before this time.
   * Pass a time taken after the rows were marked (e.g. when `createProcesses` or `pendingDispatches`
   * returned) so a late confirmation cannot clear a newer request made in between (a worker that
   * claimed the process and released it again while the confirm was in flight). Without it, every
   * pending request of `ids` is cleared. An array gives one time per id (several submits' flags
   * cleared in one call).
   */
  markDispatched(ids: readonly number[], requestedUpTo?: number | readonly number[]): Promise<void>;
  /**
   * Ids of processes whose dispatch is pending and was requested at least `olderThanMs` ago,
   * oldest first. Also turns expired leases of non-terminal processes into pending dispatches.
   */
  pendingDispatches(olderThanMs: number, limit: number): Promise<number[]>;
  /**
   * Ids of processes whose dispatch is pending now (not paused), oldest request first, at most
   * `limit`, leaving out `excluding` (what a hub already handed out). Read-only: expired leases
   * become pending through {@link ProcessStore.expireLeases} (or `pendingDispatches`).
   */
  nextDispatches(limit: number, excluding?: readonly number[]): Promise<number[]>;
  /** Turns expired leases of active processes into pending dispatches; returns how many. */
  expireLeases(): Promise<number>;
  /** How many dispatches are pending and how many were handed to the bus and not claimed since. */
  outboxCounts(): Promise<OutboxCounts>;
  /**
   * Ids of processes handed to the bus at least `olderThanMs` ago and not claimed since (not
   * paused), the oldest hand-over first, at most `limit`.
   */
  unclaimedDispatches(olderThanMs: number, limit: number): Promise<number[]>;

  /**
   * Atomically claims each process for `owner` for `leaseMs`; see {@link ClaimResult}. A claim
   * clears the process's dispatch-pending flag and its hand-over time, refused or not (a refused process needs no
   * dispatch now: whatever makes it runnable again, a release, a wake-up or an un-pause, marks it
   * pending anew), so a hub reading the outbox never hands out the same refused process twice.
   */
  claim(ids: readonly number[], owner: string, leaseMs: number): Promise<ClaimResult[]>;
  /**
   * Extends the leases `owner` holds by the given claims (each process's lease only while its
   * claim counter is still that claim's token); returns the ids it still holds, in order.
   */
  renewLeases(owner: string, runs: readonly RunClaim[], leaseMs: number): Promise<number[]>;
  /**
   * Releases leases held by `owner` and marks those processes for dispatch; returns the released
   * ids. With `runs`, only those claims (a process whose counter moved on is left alone); without,
   * every lease of the owner. Used by a pausing run, a draining worker and by the daemon when one
   * of its workers died.
   */
  releaseLeases(owner: string, runs?: readonly RunClaim[]): Promise<number[]>;
  /**
   * Releases every lease whose owner id starts with `ownerPrefix`, except those of `liveOwners`,
   * and marks those processes for dispatch; returns what was released. Used by a daemon for every
   * worker it ever had on its host (present or past) that is not alive.
   */
  releaseLeasesByPrefix(ownerPrefix: string, liveOwners: readonly string[]): Promise<ReleasedLease[]>;

  /** Records the outcome of a run; conditional on `owner` holding the lease by the claim `claim`. */
  complete(id: number, owner: string, claim: number, outcome: ProcessOutcome): Promise<CompleteResult>;
  /** Completes several processes in one transaction (one result per item, in order). */
  completeMany(items: readonly Completion[]): Promise<CompleteResult[]>;
  /**
   * Appends a journal entry; conditional on `owner` holding the lease by the claim `claim` (throws
   * LeaseLostError otherwise). An entry at a seq that holds another entry is refused (StoreError);
   * one identical to the entry there is a repeat of a write whose answer was lost, and does nothing.
   */
  appendJournal(id: number, owner: string, claim: number, entry: JournalEntry): Promise<void>;
  /** The journal of a process, in seq order. */
  getJournal(id: number): Promise<JournalEntry[]>;
  /**
   * Checkpoints `id` to wait for `childIds`; see {@link WaitResult}. Conditional on `owner`
   * holding the lease by the claim `claim` (LeaseLostError otherwise), except that a repeat of a
   * checkpoint that went through (the process is waiting, last claimed by that very claim) reports
   * `waiting` again.
   */
  waitForChildren(id: number, owner: string, claim: number, childIds: readonly number[]): Promise<WaitResult>;

  /** Sets or clears the paused flag of non-terminal processes; returns ids changed. */
  setPaused(ids: readonly number[], paused: boolean): Promise<number[]>;
  /** Kills a process that no live worker holds, or flags a running one; see {@link KillResult}. */
  requestKill(id: number, message: string | null): Promise<KillResult>;
  /**
   * {@link ProcessStore.requestKill}, also telling which parent the kill woke (its last awaited
   * child ended), so the caller can dispatch that parent at once.
   */
  requestKillDetailed(id: number, message: string | null): Promise<KillOutcome>;

  /** One process, or null. */
  getProcess(id: number): Promise<ProcessRecord | null>;
  /** Processes matching the filter, newest first. */
  listProcesses(filter?: ProcessFilter): Promise<ProcessRecord[]>;
  /** Number of processes in each state. */
  countByState(): Promise<Record<ProcessState, number>>;
  /**
   * Appends a line to a process's report log, conditional on `owner` holding the lease by the
   * claim `claim` (LeaseLostError otherwise). Returns false when nothing was written because a
   * line at the same `at` (process, position, index) exists already: a replay reporting it again.
   * Lines without `at` are always appended. With `at` the call is idempotent (safe to repeat).
   */
  addReport(id: number, owner: string, claim: number, message: string, at?: ReportPosition): Promise<boolean>;
  /** The report log of a process. */
  getReports(id: number): Promise<ReportLine[]>;
  /**
   * Removes terminated processes with their descendants, journals, reports and awaits, in one
   * transaction. Refuses an id (removing nothing of its tree) when it or a descendant is active,
   * or when its parent is active (the parent still needs its result on a replay). With `dryRun`,
   * says what it would do and changes nothing.
   */
  deleteProcesses(ids: readonly number[], opts?: { dryRun?: boolean }): Promise<DeleteResult>;
  /** Records (or refreshes) a daemon in the registry; its heartbeat is the store's time now. */
  registerDaemon(reg: DaemonRegistration): Promise<void>;
  /** Removes a daemon from the registry (at its clean stop), and rows silent for `purgeAfterMs`. */
  unregisterDaemon(id: string, purgeAfterMs?: number): Promise<void>;
  /** Every daemon in the registry, oldest start first. */
  listDaemons(): Promise<RegisteredDaemon[]>;
  /** The profile's shared options held in the store (option name → value as written). */
  getSharedOptions(): Promise<Record<string, JsonValue>>;
  /** Writes a shared option (`undefined`: removes it); returns false when removing one not there. */
  setSharedOption(key: string, value: JsonValue | undefined): Promise<boolean>;

  /** Closes the connection; safe to call twice. */
  close(): Promise<void>;
}
