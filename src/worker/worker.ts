/**
 * A worker: consumes the profile's tasks from its message bus and runs processes, up to
 * `daemon.worker_process_slots` at once. It does not know which bus it has (see broker/bus.ts).
 *
 * Life of a task ("continue process N"):
 * 1. The bus hands over at most as many tasks as the worker has free slots (its credit).
 * 2. Tasks arriving together are claimed in one store transaction. A claim is an atomic
 *    conditional update that takes a lease; a task for a process that is terminal, leased by
 *    someone alive, paused or still waiting is dropped (its slot's credit returned at once), so a
 *    duplicate task never runs a process twice.
 * 3. The tasks are acknowledged as soon as the claim commits: the lease, not the delivery,
 *    protects the process from then on, so work longer than RabbitMQ's `consumer_timeout` never
 *    gets a channel closed. The lease is renewed every third of its length while running, each
 *    renewal naming the claim's fencing token (a later claim of the process makes it fail).
 *    The worker also keeps each lease's expiry by its own (monotonic) clock, counted from when the
 *    claim or the last successful renewal was sent: a lease it could not renew in time (the store
 *    unreachable, the worker frozen) is lost a guard time before it expires (a sixth of the lease,
 *    at most {@link LEASE_GUARD_MAX_MS}, so that the run is stopped before another worker can claim
 *    the process), whatever the store says later. Its run
 *    is stopped (`ctx.signal` aborted, a command's process group killed) and nothing more of it is
 *    written: no journal entry, report line or outcome. An outcome waiting to be written when its
 *    lease expires is dropped, and the process runs again elsewhere.
 * 4. When a run ends (or suspends: waiting for children, paused, lease lost) its slot's credit goes
 *    back to the bus.
 * 5. Outcomes are written in batches (one transaction per batch); a child's completion that wakes
 *    its waiting parent re-dispatches the parent at once.
 *
 * With a bus in dispatch mode `'publish'` (RabbitMQ) the worker also sweeps the outbox: processes
 * whose dispatch is pending (just created and not yet confirmed by the broker, released by a dead
 * or draining worker, or with an expired lease) are re-published at start, every
 * {@link SWEEP_INTERVAL_MS}, and on request (the daemon asks after a worker died). With `'outbox'`
 * (local) the hub reads the outbox itself.
 *
 * Re-dispatch (`'publish'` only): a task the broker confirmed can still be lost (a purged or
 * deleted queue, a reset node). Every few seconds the worker compares the processes handed to the
 * bus and not claimed since with what the task queue holds; when fewer tasks are queued than such
 * processes wait, the difference is published again, oldest hand-over first, among those waiting
 * longer than `broker.redispatch_seconds` (see {@link Worker.redispatch}). Counting instead of
 * re-publishing everything old keeps a long legitimate backlog (100,000 processes queued behind
 * busy workers) from being published again and again.
 *
 * A lost host (cut off, frozen) is the case where that bound is too long: RabbitMQ keeps handing
 * tasks to its consumers, up to their prefetch, until it drops their connections (two missed
 * heartbeats at best, minutes with heartbeats off), and those tasks wait there. So the check runs
 * every {@link LOST_HOST_CHECK_MS}, and when the queue counts more consumers than the live workers
 * of the store's registry of daemons while some daemon there is stale, some consumer is on a lost
 * host: then the processes handed over at least {@link LOST_HOST_REDISPATCH_MS} ago and missing by
 * the count are published again at once (a healthy consumer with a free slot claims a task within milliseconds). Each goes out once
 * per consumer of the queue, one copy after the other: RabbitMQ hands a queue's deliveries to its
 * consumers in turn, skipping those without credit, so one copy reaches a live consumer in the
 * same round instead of two thirds of them landing on the lost ones again (measured on the test
 * hosts: 8 s for the outage's submissions with single copies, round after round). The claim drops
 * the other copies, and those still held by a lost consumer when it comes back. Meanwhile the
 * outbox is swept every second too (the same copies), so the lost host's runs are taken over soon
 * after their leases expire rather than up to {@link SWEEP_INTERVAL_MS} later.
 *
 * @module
 */
import { describeStorage, keepsSharedOptions, processLogPath, type Profile } from '../config/index.js';
import type { Logger } from '../logging/index.js';
import { BrokerError, errorMessage, isRetryableStoreError } from '../errors/index.js';
import { LogThrottle } from '../logging/throttle.js';
import { MAX_EVENT_RECORD_BYTES, type ControlMessage } from '../protocol/index.js';
import type { MessageBus, TaskConsumer, TaskDelivery } from '../broker/index.js';
import { REGISTRY_STALE_MS, type ProcessStore, type StoredOutcome } from '../store/types.js';
import type { ProcessOutcome, ProcessRecord } from '../protocol/index.js';
import type { ProcessRegistry } from '../engine/index.js';
import { OutputLogFile, startRun, type RunEnd, type RunHandle, type RunnerHost } from '../engine/index.js';
import { sleep, withTimeout } from '../util/index.js';

/** How long a dispatch waits for the broker before leaving the task to the sweep. */
export const DISPATCH_TIMEOUT_MS = 5_000;
/** Period of the outbox sweep. */
export const SWEEP_INTERVAL_MS = 5_000;
/** A pending dispatch younger than this is left to its submitter (it is probably being published). */
export const SWEEP_MIN_AGE_MS = 3_000;
/** How long a drain waits for the runs it stopped to be over (a command's SIGKILL comes after 2 s). */
export const DRAIN_STOP_MS = 5_000;
/** Most processes published again by one re-dispatch check. */
export const REDISPATCH_BATCH = 1000;
/** Most time by which a worker gives up a lease it could not renew before the lease expires. */
export const LEASE_GUARD_MAX_MS = 5_000;
/** Period of the check for consumers on lost hosts (see the module comment). */
export const LOST_HOST_CHECK_MS = 1_000;
/**
 * While a consumer seems lost, a process handed over and unclaimed for this long is published
 * again: a live consumer with credit claims within milliseconds, and one without credit is counted.
 */
export const LOST_HOST_REDISPATCH_MS = 1_000;

/**
 * Largest batch of completions whose ends carry the record (`StateBroadcast.record`): a wait for
 * one process then needs no store read. A larger batch is a bulk run, whose waiters read the ends
 * of an event-loop turn in one go, and whose events every subscriber would receive grown.
 */
export const EVENT_RECORD_BATCH = 8;

/**
 * The record of a process as its completion stored it: the claimed record (nothing else changes a
 * leased process's other columns) with the outcome as stored and the flags a completion clears;
 * null when the store did not say what it wrote, or when the record is too long to go with the event.
 */
function storedRecord(claimed: ProcessRecord, stored: StoredOutcome | null): ProcessRecord | null {
  if (stored === null) return null;
  const r: ProcessRecord = {
    ...claimed,
    ...stored,
    paused: false,
    killRequested: false,
    leaseOwner: null,
    leaseExpiresAt: null,
  };
  return Buffer.byteLength(JSON.stringify(r)) <= MAX_EVENT_RECORD_BYTES ? r : null;
}

/** `ids`, each `copies` times in a row (see the module comment on lost hosts). */
function withCopies(ids: readonly number[], copies: number): readonly number[] {
  return copies === 1 ? ids : ids.flatMap((id) => Array<number>(copies).fill(id));
}

/** Statistics a worker reports. */
export interface WorkerStats {
  workerId: string;
  running: number;
  processIds: number[];
  slots: number;
}

/** Options of {@link Worker.start}. */
export interface WorkerOptions {
  profile: Profile;
  workerId: string;
  store: ProcessStore;
  bus: MessageBus;
  registry: ProcessRegistry;
  logger: Logger;
  /** Called (debounced) when the set of running processes changes. */
  onStats?: (stats: WorkerStats) => void;
}

/** A running worker. */
export class Worker {
  readonly workerId: string;
  readonly slots: number;
  private readonly leaseMs: number;
  /** How long before its expiry a lease not renewed is given up (see the module comment). */
  private readonly guardMs: number;
  private readonly running = new Map<number, RunHandle>();
  /**
   * The leases this worker holds, by process: the claim's token and until when the lease is held
   * by this worker's clock (`performance.now()` when the claim or last renewal was sent, plus the
   * lease length less {@link Worker.guardMs}). Set by a claim, moved on by renewals, gone when the
   * run ended or lost it.
   */
  private readonly held = new Map<number, { claim: number; until: number }>();
  private readonly claiming = new Set<number>();
  /** Processes whose run ended and whose outcome is being written (their leases are still renewed). */
  private readonly completing = new Set<number>();
  private claimQueue: TaskDelivery[] = [];
  private claimScheduled = false;
  private completions: Array<{
    record: ProcessRecord;
    claim: number;
    outcome: ProcessOutcome;
    resolve: () => void;
  }> = [];
  private completionScheduled = false;
  private consumer: TaskConsumer | null = null;
  private stopControl: (() => Promise<void>) | null = null;
  private stopping = false;
  private timers: NodeJS.Timeout[] = [];
  private statsTimer: NodeJS.Timeout | null = null;
  private sweeping: Promise<void> | null = null;
  private redispatching: Promise<number> | null = null;
  private readonly redispatchMs: number;
  /** When the last full re-dispatch check (the store's outbox count) ran, by `performance.now()`. */
  private lastRedispatchCheck = 0;
  private closed: Promise<void> | null = null;
  private readonly host: RunnerHost;
  /** Store and broker failures repeat while an outage lasts: logged once per interval. */
  private readonly trouble: LogThrottle;

  private constructor(private readonly opts: WorkerOptions) {
    this.workerId = opts.workerId;
    this.slots = opts.profile.options['daemon.worker_process_slots'];
    this.leaseMs = opts.profile.options['daemon.lease_seconds'] * 1000;
    this.guardMs = Math.min(this.leaseMs / 6, LEASE_GUARD_MAX_MS);
    this.trouble = new LogThrottle(opts.logger);
    this.redispatchMs = opts.profile.options['broker.redispatch_seconds'] * 1000;
    this.host = {
      store: opts.store,
      registry: opts.registry,
      owner: opts.workerId,
      holds: (id, claim) => this.holds(id, claim),
      logger: opts.logger,
      dispatch: (ids) => this.dispatch(ids),
      openOutput: (r) =>
        new OutputLogFile(
          processLogPath(opts.profile.name, r.id),
          opts.profile.options['processes.log_max_bytes'],
          r.runs <= 1,
          opts.logger,
        ),
      announce: (r) =>
        opts.bus.publishState({
          v: 1,
          kind: 'state',
          processId: r.id,
          type: r.type,
          state: r.state,
          paused: r.paused,
          parentId: r.parentId,
          exitStatus: r.exitStatus,
          time: Date.now(),
          runs: r.runs,
          ...(r.control !== undefined ? { control: r.control } : {}),
          ...(r.endRecord !== undefined ? { record: r.endRecord } : {}),
        }),
    };
  }

  /** Starts consuming and the periodic tasks. */
  static async start(opts: WorkerOptions): Promise<Worker> {
    const w = new Worker(opts);
    w.stopControl = await opts.bus.consumeControl((m) => w.onControl(m));
    w.consumer = await opts.bus.consumeTasks({ slots: w.slots, onTasks: (tasks) => w.onTasks(tasks) });
    w.timers.push(setInterval(() => void w.renewLeases(), Math.max(500, w.leaseMs / 3)));
    w.timers.push(setInterval(() => w.checkLeases(), Math.max(100, Math.min(1000, w.leaseMs / 10))));
    if (opts.bus.dispatch === 'publish') {
      w.timers.push(setInterval(() => void w.sweep(SWEEP_MIN_AGE_MS), SWEEP_INTERVAL_MS));
      w.timers.push(setInterval(() => void w.redispatch(), LOST_HOST_CHECK_MS));
      void w.sweep(SWEEP_MIN_AGE_MS);
    }
    for (const t of w.timers) t.unref();
    return w;
  }

  private get log(): Logger {
    return this.opts.logger;
  }

  /** Current statistics. */
  stats(): WorkerStats {
    return {
      workerId: this.workerId,
      running: this.running.size,
      processIds: [...this.running.keys()],
      slots: this.slots,
    };
  }

  private statsChanged(): void {
    if (!this.opts.onStats || this.statsTimer) return;
    this.statsTimer = setTimeout(() => {
      this.statsTimer = null;
      this.opts.onStats?.(this.stats());
    }, 200);
    this.statsTimer.unref();
  }

  private onControl(msg: ControlMessage): void {
    const h = this.running.get(msg.processId);
    if (!h) return;
    this.log.info(`process ${msg.processId}: ${msg.action} requested`);
    if (msg.action === 'kill') h.kill(msg.message ?? 'killed on request');
    else if (msg.action === 'pause') void h.pause().catch(() => undefined);
    else h.play();
  }

  private onTasks(tasks: TaskDelivery[]): void {
    if (this.stopping) {
      this.consumer?.requeue(tasks);
      return;
    }
    for (const t of tasks) this.claimQueue.push(t);
    // Tasks the bus hands over together are one batch already (it gathers them per event-loop
    // turn): claim them now, not a turn later.
    if (!this.claimScheduled) {
      this.claimScheduled = true;
      void this.flushClaims();
    }
  }

  private async flushClaims(): Promise<void> {
    this.claimScheduled = false;
    const batch = this.claimQueue;
    this.claimQueue = [];
    if (batch.length === 0) return;
    const consumer = this.consumer!;
    const ids = batch.map((t) => t.processId);
    for (const id of ids) this.claiming.add(id);
    let results;
    const sent = performance.now();
    try {
      results = await this.opts.store.claim(ids, this.workerId, this.leaseMs);
    } catch (err) {
      for (const id of ids) this.claiming.delete(id);
      this.trouble.error(
        'claim',
        `claiming ${ids.length} process(es) failed: ${errorMessage(err)}; handing them back in 1 s`,
      );
      await sleep(1000);
      // The claim may have committed without its answer arriving: give back the leases it may
      // have taken (of processes not running here), or they would wait for their expiry.
      if (isRetryableStoreError(err) && err.maybeApplied) {
        const idle = ids.filter((id) => !this.running.has(id) && !this.claiming.has(id));
        if (idle.length > 0) await this.releaseUnknownClaims(idle).catch(() => undefined);
      }
      consumer.requeue(batch);
      return;
    }
    this.trouble.end('claim', 'claiming works again');
    consumer.ack(batch);
    let dropped = 0;
    for (let i = 0; i < batch.length; i++) {
      const id = ids[i]!;
      const r = results[i]!;
      this.claiming.delete(id);
      if (!r.claimed) {
        dropped++;
        if (r.reason === 'not-found') {
          // Acked all the same (the task can never succeed), but said loudly: a task for a process
          // the store does not know means the bus and the store disagree on whose they are.
          this.log.error(
            `dropped task for process ${id}: store ${describeStorage(this.opts.profile.storage)} has no such ` +
              `process (profile '${this.opts.profile.name}', uuid ${this.opts.profile.uuid}); was the store ` +
              `replaced, or does another profile's store publish to this broker? See docs/store.md`,
          );
        } else this.log.debug(`dropped task for process ${id}: ${r.reason}`);
        continue;
      }
      // A run of an earlier claim of ours still going (its lease expired, we claimed it again):
      // it is lost, and its writes are refused by the store (their token is older).
      this.running.get(id)?.leaseLost();
      this.held.set(id, { claim: r.claim, until: sent + this.leaseMs - this.guardMs });
      if (!this.holds(id, r.claim)) {
        // The answer came after the lease expired by our clock (the worker was frozen, the store slow).
        dropped++;
        this.held.delete(id);
        this.log.warn(`process ${id}: claimed, but the lease expired by this worker's clock before it could start`);
        continue;
      }
      this.begin(r.process, r.journal, r.claim);
    }
    consumer.credit(dropped);
  }

  /**
   * Releases the leases a claim whose answer was lost may have taken on `ids` (of processes not
   * running here): their tokens are read back, so a lease that expired and was claimed by
   * someone else since is left alone.
   */
  private async releaseUnknownClaims(ids: number[]): Promise<void> {
    const runs = [];
    for (const id of ids) {
      const p = await this.opts.store.getProcess(id);
      if (p !== null && p.leaseOwner === this.workerId && !this.running.has(id)) runs.push({ id, claim: p.runs });
    }
    if (runs.length > 0) await this.opts.store.releaseLeases(this.workerId, runs);
  }

  /** True while the lease of `id` by `claim` is held by this worker's clock (see {@link Worker.held}). */
  private holds(id: number, claim: number): boolean {
    const h = this.held.get(id);
    return h !== undefined && h.claim === claim && h.until > performance.now();
  }

  /** The lease of `id` by `claim` is lost: forget it and stop its run (which then writes nothing). */
  private lose(id: number, claim: number, why: string): void {
    const h = this.held.get(id);
    if (h === undefined || h.claim !== claim) return;
    this.held.delete(id);
    const run = this.running.get(id);
    if (run !== undefined) {
      this.log.warn(`process ${id}: ${why}; stopping its run`);
      run.leaseLost();
    } else if (this.completing.has(id)) {
      this.log.warn(`process ${id}: ${why}; its outcome will not be recorded here`);
    }
  }

  /** Drops every lease that expired by this worker's clock (see the module comment). */
  private checkLeases(): void {
    const now = performance.now();
    for (const [id, h] of [...this.held]) {
      if (h.until <= now) this.lose(id, h.claim, `lease not renewed before it expired by this worker's clock`);
    }
  }

  private begin(record: ProcessRecord, journal: Parameters<typeof startRun>[2], claim: number): void {
    let def;
    try {
      def = this.opts.registry.get(record.type);
      const problem = def.validateInputs?.(record.inputs) ?? null;
      if (problem !== null) throw new Error(`invalid inputs for '${record.type}': ${problem}`);
    } catch (err) {
      const outcome: ProcessOutcome = { state: 'excepted', exception: errorMessage(err) };
      const stub: RunHandle = {
        processId: record.id,
        done: Promise.resolve({ kind: 'outcome', outcome }),
        kill: () => undefined,
        pause: () => Promise.resolve('pausing'),
        play: () => undefined,
        leaseLost: () => undefined,
      };
      this.running.set(record.id, stub);
      void this.finish(record, claim, stub, { kind: 'outcome', outcome });
      return;
    }
    this.host.announce({ ...record, state: 'running' });
    const handle = startRun(def, record, journal, this.host, claim);
    if (record.killRequested) handle.kill('killed on request');
    this.running.set(record.id, handle);
    this.statsChanged();
    void handle.done.then((end) => this.finish(record, claim, handle, end));
  }

  private async finish(record: ProcessRecord, claim: number, handle: RunHandle, end: RunEnd): Promise<void> {
    // The run is over: its slot is free at once. Writing its outcome runs no user code, so the
    // next task may start while the write is under way (and the lease is renewed until it landed).
    // A run of an earlier claim leaves a later one's entries alone.
    const current = this.running.get(record.id) === handle;
    if (current) this.running.delete(record.id);
    this.statsChanged();
    if (!this.stopping) this.consumer?.credit(1);
    if (end.kind === 'outcome' && current) {
      this.completing.add(record.id);
      try {
        await new Promise<void>((resolve) => {
          this.completions.push({ record, claim, outcome: end.outcome, resolve });
          if (!this.completionScheduled) {
            this.completionScheduled = true;
            setImmediate(() => void this.flushCompletions());
          }
        });
      } finally {
        this.completing.delete(record.id);
        if (this.held.get(record.id)?.claim === claim) this.held.delete(record.id);
      }
      return;
    }
    if (this.held.get(record.id)?.claim === claim) this.held.delete(record.id);
    if (end.kind === 'outcome') {
      this.log.warn(`process ${record.id}: outcome of an earlier claim (${claim}) not recorded`);
    } else if (end.reason !== 'lease-lost') {
      this.log.debug(`process ${record.id}: ${end.reason}; slot released`);
    } else {
      this.log.warn(`process ${record.id}: lease lost (claim ${claim}); nothing more of that run is written`);
    }
  }

  private async flushCompletions(): Promise<void> {
    this.completionScheduled = false;
    const batch = this.completions;
    this.completions = [];
    if (batch.length === 0) return;
    let todo = batch;
    for (;;) {
      // An outcome whose lease expired by our clock meanwhile is not written (see the module comment).
      todo = todo.filter((c) => {
        if (this.holds(c.record.id, c.claim)) return true;
        this.log.warn(`process ${c.record.id}: outcome not recorded, the lease expired before it could be written`);
        return false;
      });
      if (todo.length === 0) break;
      try {
        const results = await this.opts.store.completeMany(
          todo.map((c) => ({
            id: c.record.id,
            owner: this.workerId,
            claim: c.claim,
            outcome: c.outcome,
            parentId: c.record.parentId,
          })),
        );
        const woken: number[] = [];
        for (let i = 0; i < todo.length; i++) {
          const c = todo[i]!;
          const r = results[i]!;
          if (!r.ok) {
            this.log.warn(`process ${c.record.id}: outcome not recorded, the lease was lost`);
            continue;
          }
          if (r.wokenParentId !== null) woken.push(r.wokenParentId);
          const o = c.outcome;
          if (o.state === 'excepted')
            this.log.warn(`process ${c.record.id} (${c.record.type}) excepted: ${o.exception.split('\n')[0]}`);
          const endRecord = todo.length <= EVENT_RECORD_BATCH ? storedRecord(c.record, r.stored) : null;
          this.host.announce({
            ...c.record,
            state: o.state,
            paused: false,
            exitStatus: o.state === 'finished' ? o.exitStatus : null,
            ...(endRecord !== null ? { endRecord } : {}),
          });
        }
        if (woken.length > 0) await this.dispatch(woken);
        break;
      } catch (err) {
        if (this.stopping && this.closed) break;
        this.trouble.error('complete', `recording ${todo.length} outcome(s) failed: ${errorMessage(err)}; retrying`);
        await sleep(1000);
      }
    }
    this.trouble.end('complete', 'recording outcomes works again');
    for (const c of batch) c.resolve();
  }

  private async renewLeases(): Promise<void> {
    // A lease already expired by our clock is not renewed: it is lost (its run stopped) first.
    this.checkLeases();
    const runs = [...this.held].map(([id, h]) => ({ id, claim: h.claim }));
    if (runs.length === 0) return;
    const sent = performance.now();
    try {
      const kept = new Set(await this.opts.store.renewLeases(this.workerId, runs, this.leaseMs));
      for (const { id, claim } of runs) {
        const h = this.held.get(id);
        if (kept.has(id)) {
          if (h !== undefined && h.claim === claim) h.until = Math.max(h.until, sent + this.leaseMs - this.guardMs);
        } else {
          this.lose(id, claim, 'lease lost (another claim holds it now)');
        }
      }
      this.trouble.end('renew', 'renewing leases works again');
    } catch (err) {
      this.trouble.warn('renew', `renewing ${runs.length} lease(s) failed: ${errorMessage(err)}`);
    }
  }

  /**
   * Publishes continue tasks and (dispatch mode `'publish'`) clears the dispatch flag; failures
   * leave them to the sweep.
   */
  async dispatch(ids: number[]): Promise<void> {
    if (ids.length === 0) return;
    const markedBy = Date.now();
    const { bus } = this.opts;
    try {
      // While the broker is away, do not hold up the caller (and its slot): the dispatch stays
      // pending in the store and the sweep publishes it after the reconnect.
      await withTimeout(bus.publishContinue(ids), DISPATCH_TIMEOUT_MS, () => {
        return new BrokerError(`broker did not confirm within ${DISPATCH_TIMEOUT_MS / 1000} s`);
      });
      if (bus.dispatch === 'publish') await this.opts.store.markDispatched(ids, markedBy);
      this.trouble.end('dispatch');
    } catch (err) {
      this.trouble.warn(
        'dispatch',
        `dispatching ${ids.length} process(es) failed (the sweep will retry): ${errorMessage(err)}`,
      );
    }
  }

  /**
   * Re-publishes pending dispatches at least `minAgeMs` old (0: all, e.g. right after the daemon
   * released a dead worker's leases), each `copies` times in a row (see the module comment on lost
   * hosts). Concurrent calls share one run. Nothing to do on a bus that reads the outbox itself.
   */
  sweep(minAgeMs = 0, copies = 1): Promise<void> {
    if (this.opts.bus.dispatch !== 'publish') return Promise.resolve();
    if (this.sweeping) return this.sweeping;
    this.sweeping = (async () => {
      try {
        for (let round = 0; round < 100; round++) {
          const ids = await this.opts.store.pendingDispatches(minAgeMs, 1000);
          const markedBy = Date.now();
          if (ids.length === 0) break;
          this.log.debug(`sweep: re-publishing ${ids.length} pending dispatch(es)`);
          await this.opts.bus.publishContinue(withCopies(ids, copies));
          await this.opts.store.markDispatched(ids, markedBy);
          if (ids.length < 1000) break;
        }
        this.trouble.end('sweep');
      } catch (err) {
        this.trouble.warn('sweep', `outbox sweep failed: ${errorMessage(err)}`);
      } finally {
        this.sweeping = null;
      }
    })();
    return this.sweeping;
  }

  /**
   * Publishes again the tasks the bus seems to have lost; returns how many (see the module comment).
   *
   * The queue is read first, then the store: a task delivered in between is still counted as
   * unclaimed and as delivered, and one published and marked in between (a submit marks at least
   * 50 ms after its confirm) is the only way to count one too many. When tasks wait in the queue,
   * every consumer has its prefetch (its slots) full of deliveries that are not in the ready count
   * yet not lost: those are not missing. When none wait, consumers may hold a few that count as
   * missing; publishing them again costs one duplicate each, which the claim drops, and the next
   * check finds the queue holding them.
   *
   * Runs every {@link LOST_HOST_CHECK_MS}. The queue's state (one passive declare) and the registry
   * (one read) are looked at every time; the outbox is counted only every
   * `min(5 s, broker.redispatch_seconds / 2)`, or at once while a consumer seems lost: the queue
   * has more consumers than the registry's live daemons have workers. Then the prefetch of the
   * live workers alone is counted as held, and what is missing is published again after
   * {@link LOST_HOST_REDISPATCH_MS} instead of `broker.redispatch_seconds`.
   */
  redispatch(): Promise<number> {
    if (this.opts.bus.dispatch !== 'publish' || this.stopping) return Promise.resolve(0);
    if (this.redispatching) return this.redispatching;
    this.redispatching = (async () => {
      const { bus, store } = this.opts;
      try {
        const queue = await withTimeout(bus.taskQueueState(), DISPATCH_TIMEOUT_MS, () => {
          return new BrokerError(`broker did not answer within ${DISPATCH_TIMEOUT_MS / 1000} s`);
        });
        if (queue === null) return 0;
        const live = await this.liveWorkers();
        const lostConsumers = live === null || live.stale === 0 ? 0 : queue.consumers - live.workers;
        const now = performance.now();
        const every = Math.max(1000, Math.min(SWEEP_INTERVAL_MS, this.redispatchMs / 2));
        // The lost host's leases expire within the lease: sweep every second meanwhile, so that its
        // runs are taken over soon after, not up to a sweep period later.
        if (lostConsumers > 0) void this.sweep(SWEEP_MIN_AGE_MS, queue.consumers);
        if (lostConsumers <= 0 && now - this.lastRedispatchCheck < every) return 0;
        this.lastRedispatchCheck = now;
        const { unclaimed } = await store.outboxCounts();
        const heldSlots = lostConsumers > 0 ? live!.slots : queue.consumers * this.slots;
        const held = queue.ready > 0 ? heldSlots : 0;
        const missing = unclaimed - queue.ready - held;
        if (missing <= 0) return 0;
        const olderThanMs = lostConsumers > 0 ? LOST_HOST_REDISPATCH_MS : this.redispatchMs;
        const ids = await store.unclaimedDispatches(olderThanMs, Math.min(missing, REDISPATCH_BATCH));
        if (ids.length === 0) return 0;
        const markedBy = Date.now();
        const copies = lostConsumers > 0 ? queue.consumers : 1;
        await bus.publishContinue(withCopies(ids, copies));
        await store.markDispatched(ids, markedBy);
        this.log.warn(
          lostConsumers > 0
            ? `re-dispatched ${ids.length} process(es) handed to the broker over ${olderThanMs / 1000} s ago and ` +
                `never claimed: the task queue has ${queue.consumers} consumer(s) but the live daemons of the ` +
                `registry only ${live!.workers} worker(s), so ${lostConsumers} consumer(s) seem to be on a lost host ` +
                `(${copies} copies each)`
            : `re-dispatched ${ids.length} process(es) handed to the broker over ${olderThanMs / 1000} s ago and ` +
                `never claimed: the task queue holds ${queue.ready} task(s) for ${unclaimed} such process(es)`,
        );
        this.trouble.end('redispatch');
        return ids.length;
      } catch (err) {
        this.trouble.warn('redispatch', `re-dispatch check failed: ${errorMessage(err)}`);
        return 0;
      } finally {
        this.redispatching = null;
      }
    })();
    return this.redispatching;
  }

  /**
   * The workers of the daemons live in the store's registry (heard from within
   * {@link REGISTRY_STALE_MS}), their slots, and how many daemons are stale; null when the registry
   * is empty or cannot be read (then no consumer is taken for lost: a store without the registry,
   * or one that is down). A consumer is taken for lost only while some daemon is stale too, so
   * that workers the registry does not know (started by hand, not by a daemon) are not.
   */
  private async liveWorkers(): Promise<{ workers: number; slots: number; stale: number } | null> {
    // A store that is not shared between hosts (SQLite) has no other host to lose: skip the read.
    if (!keepsSharedOptions(this.opts.profile.storage)) return null;
    let daemons;
    try {
      daemons = await this.opts.store.listDaemons();
    } catch {
      return null;
    }
    if (daemons.length === 0) return null;
    let workers = 0;
    let slots = 0;
    let stale = 0;
    for (const d of daemons) {
      if (d.ageMs > REGISTRY_STALE_MS) {
        stale++;
        continue;
      }
      workers += d.workers.length;
      for (const w of d.workers) slots += w.slots;
    }
    return { workers, slots, stale };
  }

  /**
   * Stops taking work, lets running processes finish within `graceSeconds`, then releases what is
   * left to other workers (their leases are cleared and they are re-published) and closes.
   */
  async drain(graceSeconds: number): Promise<{ finished: number; released: number[] }> {
    this.stopping = true;
    await this.consumer?.cancel();
    const before = this.running.size;
    const deadline = Date.now() + graceSeconds * 1000;
    while ((this.running.size > 0 || this.claiming.size > 0) && Date.now() < deadline) await sleep(50);
    // Outcomes being written are not given up: let them land (the store retry loop bounds it).
    while (this.completing.size > 0 && Date.now() < deadline + 5000) await sleep(20);
    let released: number[] = [];
    const left = [...this.running.keys()];
    // Runs still going are stopped, and their leases released only once they are over (a command
    // of theirs gone), so another worker never starts one while it still runs here.
    const stopped = left.map((id) => this.running.get(id)?.done);
    for (const id of left) this.running.get(id)?.leaseLost();
    await withTimeout(Promise.all(stopped), DRAIN_STOP_MS, () => new Error('runs did not stop')).catch(() => {
      this.log.warn(`some of ${left.length} run(s) did not stop within ${DRAIN_STOP_MS / 1000} s; releasing anyway`);
    });
    try {
      // Every lease of this worker, not only those of the runs left: nothing may wait for an expiry.
      released = await this.opts.store.releaseLeases(this.workerId);
      await this.dispatch(released);
    } catch (err) {
      this.log.error(
        `releasing the leases of ${left.length} process(es) failed (they will expire): ${errorMessage(err)}`,
      );
    }
    if (released.length > 0) this.log.info(`released ${released.length} process(es) to other workers`);
    await this.close();
    return { finished: before - left.length, released };
  }

  /** Stops timers and closes the connections; safe to call twice. */
  close(): Promise<void> {
    if (!this.closed) {
      this.stopping = true;
      this.closed = (async () => {
        for (const t of this.timers) clearInterval(t);
        if (this.statsTimer) clearTimeout(this.statsTimer);
        await this.consumer?.cancel();
        await this.stopControl?.();
        await this.opts.bus.close();
        await this.opts.store.close();
      })();
    }
    return this.closed;
  }
}
