/**
 * A worker: consumes the profile's task queue and runs processes, up to
 * `daemon.worker_process_slots` at once.
 *
 * Life of a delivery ("continue process N"):
 * 1. Malformed bodies are rejected without requeue (dead-lettered to `drover.<uuid>.dead`) with
 *    one log line: they never crash the worker and never loop.
 * 2. Deliveries arriving together are claimed in one store transaction. A claim is an atomic
 *    conditional update that takes a lease; a delivery for a process that is terminal, leased by
 *    someone alive, paused or still waiting is acknowledged and dropped, so a duplicate task never
 *    runs a process twice.
 * 3. The delivery is acknowledged as soon as the claim commits: the lease, not the delivery,
 *    protects the process from then on, so work longer than RabbitMQ's `consumer_timeout` never
 *    gets the channel closed. The lease is renewed every third of its length while running.
 * 4. When all slots are busy, further deliveries (at most `slots`, the prefetch) wait unacked in
 *    memory; if they would wait longer than {@link HOLD_LIMIT_MS} the consumer is cancelled and they
 *    are requeued for other workers, and consuming resumes when a slot frees. So no delivery is
 *    held unacked for long, whatever runs.
 * 5. Outcomes are written in batches (one transaction per batch); a child's completion that wakes
 *    its waiting parent re-dispatches the parent at once.
 *
 * The outbox (processes whose dispatch is pending: just created and not yet confirmed by the
 * broker, released by a dead or draining worker, or with an expired lease) is swept at start, every
 * {@link SWEEP_INTERVAL_MS}, and on request (the daemon asks after a worker died).
 *
 * @module
 */
import type { Channel, ConsumeMessage } from 'amqplib';
import type { Profile } from '../config/index.js';
import type { Logger } from '../logging/index.js';
import { BrokerError, errorMessage, isRetryableStoreError } from '../errors/index.js';
import { LogThrottle } from '../logging/throttle.js';
import type { BrokerConnection } from '../broker/index.js';
import type { ProcessStore } from '../store/types.js';
import { parseBrokerMessage, type ProcessOutcome, type ProcessRecord } from '../protocol/index.js';
import type { ProcessRegistry } from '../engine/index.js';
import { startRun, type RunEnd, type RunHandle, type RunnerHost } from '../engine/index.js';
import { sleep, withTimeout } from '../util/index.js';

/** Longest time a delivery may wait unacked for a free slot before it is handed back. */
export const HOLD_LIMIT_MS = 60_000;
/** How long a dispatch waits for the broker before leaving the task to the sweep. */
export const DISPATCH_TIMEOUT_MS = 5_000;
/** Period of the outbox sweep. */
export const SWEEP_INTERVAL_MS = 5_000;
/** A pending dispatch younger than this is left to its submitter (it is probably being published). */
export const SWEEP_MIN_AGE_MS = 3_000;

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
  broker: BrokerConnection;
  registry: ProcessRegistry;
  logger: Logger;
  /** Called (debounced) when the set of running processes changes. */
  onStats?: (stats: WorkerStats) => void;
}

interface Held {
  id: number;
  msg: ConsumeMessage;
  ch: Channel;
  since: number;
}

/** A running worker. */
export class Worker {
  readonly workerId: string;
  readonly slots: number;
  private readonly leaseMs: number;
  private readonly running = new Map<number, RunHandle>();
  private readonly claiming = new Set<number>();
  private held: Held[] = [];
  /** Delivery tags not yet acked or nacked, per channel (see ackAll). */
  private readonly unacked = new Map<Channel, Set<number>>();
  private claimQueue: Held[] = [];
  private claimScheduled = false;
  private completions: Array<{ record: ProcessRecord; outcome: ProcessOutcome; resolve: () => void }> = [];
  private completionScheduled = false;
  private consumeCh: Channel | null = null;
  private consumerTag: string | null = null;
  private consuming = false;
  private stopping = false;
  private timers: NodeJS.Timeout[] = [];
  private statsTimer: NodeJS.Timeout | null = null;
  private sweeping: Promise<void> | null = null;
  private closed: Promise<void> | null = null;
  private readonly host: RunnerHost;
  /** Store and broker failures repeat while an outage lasts: logged once per interval. */
  private readonly trouble: LogThrottle;

  private constructor(private readonly opts: WorkerOptions) {
    this.workerId = opts.workerId;
    this.slots = opts.profile.options['daemon.worker_process_slots'];
    this.leaseMs = opts.profile.options['daemon.lease_seconds'] * 1000;
    this.trouble = new LogThrottle(opts.logger);
    this.host = {
      store: opts.store,
      registry: opts.registry,
      owner: opts.workerId,
      logger: opts.logger,
      dispatch: (ids) => this.dispatch(ids),
      announce: (r) =>
        opts.broker.publishState({
          v: 1,
          kind: 'state',
          processId: r.id,
          type: r.type,
          state: r.state,
          paused: r.paused,
          parentId: r.parentId,
          exitStatus: r.exitStatus,
          time: Date.now(),
        }),
    };
  }

  /** Starts consuming and the periodic tasks. */
  static async start(opts: WorkerOptions): Promise<Worker> {
    const w = new Worker(opts);
    await w.startControlConsumer();
    await w.startTaskConsumer();
    w.timers.push(setInterval(() => void w.renewLeases(), Math.max(500, w.leaseMs / 3)));
    w.timers.push(setInterval(() => void w.sweep(SWEEP_MIN_AGE_MS), SWEEP_INTERVAL_MS));
    w.timers.push(setInterval(() => w.housekeeping(), 1000));
    for (const t of w.timers) t.unref();
    void w.sweep(SWEEP_MIN_AGE_MS);
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

  private async startTaskConsumer(): Promise<void> {
    const { broker } = this.opts;
    await broker.addSetup(async (model) => {
      const ch = await model.createChannel();
      ch.on('error', (err: Error) => this.log.warn(`task channel error: ${errorMessage(err)}`));
      ch.on('close', () => {
        if (this.consumeCh === ch) {
          this.consumeCh = null;
          this.consumerTag = null;
          this.consuming = false;
          // Unacked deliveries of a closed channel are requeued by the broker.
          this.held = this.held.filter((h) => h.ch !== ch);
          this.unacked.delete(ch);
          this.claimQueue = this.claimQueue.filter((h) => h.ch !== ch);
        }
      });
      await ch.prefetch(this.slots);
      this.consumeCh = ch;
      if (!this.stopping) await this.consume();
    });
  }

  private async consume(): Promise<void> {
    const ch = this.consumeCh;
    if (!ch || this.consuming || this.stopping) return;
    this.consuming = true;
    try {
      const ok = await ch.consume(this.opts.broker.topology.taskQueue, (msg) => {
        if (msg === null) {
          this.log.warn('task consumer cancelled by the broker; resubscribing');
          this.consumerTag = null;
          this.consuming = false;
          setTimeout(() => void this.consume(), 1000).unref();
          return;
        }
        this.onDelivery(msg, ch);
      });
      this.consumerTag = ok.consumerTag;
    } catch (err) {
      this.consuming = false;
      throw err;
    }
  }

  private async stopConsuming(): Promise<void> {
    const ch = this.consumeCh;
    const tag = this.consumerTag;
    this.consumerTag = null;
    this.consuming = false;
    if (ch && tag) await ch.cancel(tag).catch(() => undefined);
  }

  private async startControlConsumer(): Promise<void> {
    const { broker } = this.opts;
    await broker.addSetup(async (model) => {
      const ch = await model.createChannel();
      ch.on('error', (err: Error) => this.log.warn(`control channel error: ${errorMessage(err)}`));
      const q = await ch.assertQueue('', { exclusive: true, autoDelete: true });
      await ch.bindQueue(q.queue, broker.topology.controlExchange, '');
      await ch.consume(
        q.queue,
        (msg) => {
          if (msg === null) return;
          this.onControl(msg.content);
        },
        { noAck: true },
      );
    });
  }

  private onControl(body: Buffer): void {
    let msg;
    try {
      msg = parseBrokerMessage(body);
    } catch (err) {
      this.log.warn(`dropped malformed control message: ${errorMessage(err)}`);
      return;
    }
    if (msg.kind !== 'control') return;
    const h = this.running.get(msg.processId);
    if (!h) return;
    this.log.info(`process ${msg.processId}: ${msg.action} requested`);
    if (msg.action === 'kill') h.kill(msg.message ?? 'killed on request');
    else if (msg.action === 'pause') h.pause();
    else h.play();
  }

  private ack(h: Held): void {
    this.unackedOn(h.ch).delete(h.msg.fields.deliveryTag);
    try {
      h.ch.ack(h.msg);
    } catch {
      // Channel closed meanwhile: the broker requeued the delivery; the claim decides again.
    }
  }

  /**
   * Acknowledges a batch. Where every outstanding delivery of a channel up to the batch's highest
   * tag is in the batch, one `multiple` ack covers them all (one frame instead of one per task).
   */
  private ackAll(batch: readonly Held[]): void {
    const byChannel = new Map<Channel, Held[]>();
    for (const h of batch) {
      const list = byChannel.get(h.ch);
      if (list) list.push(h);
      else byChannel.set(h.ch, [h]);
    }
    for (const [ch, hs] of byChannel) {
      const outstanding = this.unackedOn(ch);
      let top = hs[0]!;
      const tags = new Set<number>();
      for (const h of hs) {
        tags.add(h.msg.fields.deliveryTag);
        if (h.msg.fields.deliveryTag > top.msg.fields.deliveryTag) top = h;
      }
      const max = top.msg.fields.deliveryTag;
      let covered = true;
      for (const t of outstanding) {
        if (t <= max && !tags.has(t)) {
          covered = false;
          break;
        }
      }
      if (!covered) {
        for (const h of hs) this.ack(h);
        continue;
      }
      for (const t of tags) outstanding.delete(t);
      try {
        ch.ack(top.msg, true);
      } catch {
        // as in ack()
      }
    }
  }

  private nack(h: Held, requeue: boolean): void {
    this.unackedOn(h.ch).delete(h.msg.fields.deliveryTag);
    try {
      h.ch.nack(h.msg, false, requeue);
    } catch {
      // as above
    }
  }

  private unackedOn(ch: Channel): Set<number> {
    let set = this.unacked.get(ch);
    if (!set) {
      set = new Set();
      this.unacked.set(ch, set);
    }
    return set;
  }

  private freeSlots(): number {
    return this.slots - this.running.size - this.claiming.size;
  }

  private onDelivery(msg: ConsumeMessage, ch: Channel): void {
    this.unackedOn(ch).add(msg.fields.deliveryTag);
    let parsed;
    try {
      parsed = parseBrokerMessage(msg.content);
    } catch (err) {
      this.log.warn(`rejected malformed task (dead-lettered): ${errorMessage(err)}`);
      this.nack({ id: 0, msg, ch, since: 0 }, false);
      return;
    }
    if (parsed.kind !== 'continue') {
      this.log.warn(`rejected task of unexpected kind '${parsed.kind}' (dead-lettered)`);
      this.nack({ id: 0, msg, ch, since: 0 }, false);
      return;
    }
    const h: Held = { id: parsed.processId, msg, ch, since: Date.now() };
    if (this.stopping) {
      this.nack(h, true);
      return;
    }
    if (this.freeSlots() - this.claimQueue.length <= 0) {
      this.held.push(h);
      return;
    }
    this.enqueueClaim(h);
  }

  private enqueueClaim(h: Held): void {
    this.claimQueue.push(h);
    if (!this.claimScheduled) {
      this.claimScheduled = true;
      setImmediate(() => void this.flushClaims());
    }
  }

  private async flushClaims(): Promise<void> {
    this.claimScheduled = false;
    const batch = this.claimQueue;
    this.claimQueue = [];
    if (batch.length === 0) return;
    const ids = batch.map((h) => h.id);
    for (const id of ids) this.claiming.add(id);
    let results;
    try {
      results = await this.opts.store.claim(ids, this.workerId, this.leaseMs);
    } catch (err) {
      for (const id of ids) this.claiming.delete(id);
      this.trouble.error('claim', `claiming ${ids.length} process(es) failed: ${errorMessage(err)}; requeueing in 1 s`);
      await sleep(1000);
      // The claim may have committed without its answer arriving: give back the leases it may
      // have taken (of processes not running here), or they would wait for their expiry.
      if (isRetryableStoreError(err) && err.maybeApplied) {
        const idle = ids.filter((id) => !this.running.has(id) && !this.claiming.has(id));
        if (idle.length > 0) await this.opts.store.releaseLeases(this.workerId, idle).catch(() => undefined);
      }
      for (const h of batch) this.nack(h, true);
      return;
    }
    this.trouble.end('claim', 'claiming works again');
    this.ackAll(batch);
    for (let i = 0; i < batch.length; i++) {
      const id = ids[i]!;
      const r = results[i]!;
      this.claiming.delete(id);
      if (!r.claimed) {
        if (r.reason === 'not-found') this.log.warn(`dropped task for process ${id}: no such process`);
        else this.log.debug(`dropped task for process ${id}: ${r.reason}`);
        continue;
      }
      this.begin(r.process, r.journal);
    }
    this.pullHeld();
  }

  private begin(record: ProcessRecord, journal: Parameters<typeof startRun>[2]): void {
    let def;
    try {
      def = this.opts.registry.get(record.type);
      const problem = def.validateInputs?.(record.inputs) ?? null;
      if (problem !== null) throw new Error(`invalid inputs for '${record.type}': ${problem}`);
    } catch (err) {
      const outcome: ProcessOutcome = { state: 'excepted', exception: errorMessage(err) };
      this.running.set(record.id, {
        processId: record.id,
        done: Promise.resolve({ kind: 'outcome', outcome }),
        kill: () => undefined,
        pause: () => undefined,
        play: () => undefined,
        leaseLost: () => undefined,
      });
      void this.finish(record, { kind: 'outcome', outcome });
      return;
    }
    this.host.announce({ ...record, state: 'running' });
    const handle = startRun(def, record, journal, this.host);
    if (record.killRequested) handle.kill('killed on request');
    this.running.set(record.id, handle);
    this.statsChanged();
    void handle.done.then((end) => this.finish(record, end));
  }

  private async finish(record: ProcessRecord, end: RunEnd): Promise<void> {
    try {
      if (end.kind === 'outcome') {
        await new Promise<void>((resolve) => {
          this.completions.push({ record, outcome: end.outcome, resolve });
          if (!this.completionScheduled) {
            this.completionScheduled = true;
            setImmediate(() => void this.flushCompletions());
          }
        });
      } else if (end.reason !== 'lease-lost') {
        this.log.debug(`process ${record.id}: ${end.reason}; slot released`);
      } else {
        this.log.warn(`process ${record.id}: lease lost; another worker owns it now`);
      }
    } finally {
      this.running.delete(record.id);
      this.statsChanged();
      this.pullHeld();
    }
  }

  private async flushCompletions(): Promise<void> {
    this.completionScheduled = false;
    const batch = this.completions;
    this.completions = [];
    if (batch.length === 0) return;
    for (;;) {
      try {
        const results = await this.opts.store.completeMany(
          batch.map((c) => ({ id: c.record.id, owner: this.workerId, outcome: c.outcome })),
        );
        const woken: number[] = [];
        for (let i = 0; i < batch.length; i++) {
          const c = batch[i]!;
          const r = results[i]!;
          if (!r.ok) {
            this.log.warn(`process ${c.record.id}: outcome not recorded, the lease was lost`);
            continue;
          }
          if (r.wokenParentId !== null) woken.push(r.wokenParentId);
          const o = c.outcome;
          if (o.state === 'excepted')
            this.log.warn(`process ${c.record.id} (${c.record.type}) excepted: ${o.exception.split('\n')[0]}`);
          this.host.announce({
            ...c.record,
            state: o.state,
            paused: false,
            exitStatus: o.state === 'finished' ? o.exitStatus : null,
          });
        }
        if (woken.length > 0) await this.dispatch(woken);
        break;
      } catch (err) {
        if (this.stopping && this.closed) break;
        this.trouble.error('complete', `recording ${batch.length} outcome(s) failed: ${errorMessage(err)}; retrying`);
        await sleep(1000);
      }
    }
    this.trouble.end('complete', 'recording outcomes works again');
    for (const c of batch) c.resolve();
  }

  private pullHeld(): void {
    if (this.stopping) return;
    while (this.held.length > 0 && this.freeSlots() - this.claimQueue.length > 0) {
      this.enqueueClaim(this.held.shift()!);
    }
    if (!this.consuming && this.freeSlots() > 0 && this.held.length === 0) void this.consume().catch(() => undefined);
  }

  private housekeeping(): void {
    // Deliveries waiting too long for a slot go back to the queue for other workers, and this
    // worker stops consuming until a slot frees (see step 4 in the module comment).
    const oldest = this.held[0];
    if (oldest && Date.now() - oldest.since > HOLD_LIMIT_MS) {
      const give = this.held;
      this.held = [];
      void this.stopConsuming().then(() => {
        for (const h of give) this.nack(h, true);
        this.log.info(`all ${this.slots} slots busy for ${HOLD_LIMIT_MS / 1000} s: handed ${give.length} task(s) back`);
      });
    }
  }

  private async renewLeases(): Promise<void> {
    const ids = [...this.running.keys()];
    if (ids.length === 0) return;
    try {
      const kept = new Set(await this.opts.store.renewLeases(this.workerId, ids, this.leaseMs));
      for (const id of ids) {
        if (!kept.has(id) && this.running.has(id)) this.running.get(id)!.leaseLost();
      }
      this.trouble.end('renew', 'renewing leases works again');
    } catch (err) {
      this.trouble.warn('renew', `renewing ${ids.length} lease(s) failed: ${errorMessage(err)}`);
    }
  }

  /** Publishes continue tasks and clears the dispatch flag; failures leave them to the sweep. */
  async dispatch(ids: number[]): Promise<void> {
    if (ids.length === 0) return;
    const markedBy = Date.now();
    try {
      // While the broker is away, do not hold up the caller (and its slot): the dispatch stays
      // pending in the store and the sweep publishes it after the reconnect.
      await withTimeout(this.opts.broker.publishContinue(ids), DISPATCH_TIMEOUT_MS, () => {
        return new BrokerError(`broker did not confirm within ${DISPATCH_TIMEOUT_MS / 1000} s`);
      });
      await this.opts.store.markDispatched(ids, markedBy);
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
   * released a dead worker's leases). Concurrent calls share one run.
   */
  sweep(minAgeMs = 0): Promise<void> {
    if (this.sweeping) return this.sweeping;
    this.sweeping = (async () => {
      try {
        for (let round = 0; round < 100; round++) {
          const ids = await this.opts.store.pendingDispatches(minAgeMs, 1000);
          const markedBy = Date.now();
          if (ids.length === 0) break;
          this.log.debug(`sweep: re-publishing ${ids.length} pending dispatch(es)`);
          await this.opts.broker.publishContinue(ids);
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
   * Stops taking work, lets running processes finish within `graceSeconds`, then releases what is
   * left to other workers (their leases are cleared and they are re-published) and closes.
   */
  async drain(graceSeconds: number): Promise<{ finished: number; released: number[] }> {
    this.stopping = true;
    await this.stopConsuming();
    for (const h of this.held.splice(0)) this.nack(h, true);
    const before = this.running.size;
    const deadline = Date.now() + graceSeconds * 1000;
    while ((this.running.size > 0 || this.claiming.size > 0) && Date.now() < deadline) await sleep(50);
    let released: number[] = [];
    const left = [...this.running.keys()];
    if (left.length > 0) {
      for (const id of left) this.running.get(id)?.leaseLost();
      try {
        released = await this.opts.store.releaseLeases(this.workerId, left);
        await this.dispatch(released);
      } catch (err) {
        this.log.error(`releasing ${left.length} process(es) failed (their leases will expire): ${errorMessage(err)}`);
      }
      this.log.info(`released ${released.length} running process(es) to other workers`);
    }
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
        await this.opts.broker.close();
        await this.opts.store.close();
      })();
    }
    return this.closed;
  }
}
