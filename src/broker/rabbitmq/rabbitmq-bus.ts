/**
 * The `rabbitmq` adapter of {@link MessageBus}: the profile's topology on a RabbitMQ vhost (see
 * topology.ts and docs/broker.md), over one recovering {@link BrokerConnection}.
 *
 * Task consumption, per delivery:
 * 1. Malformed bodies are rejected without requeue (dead-lettered to `drover.<uuid>.dead`) with one
 *    log line: they never reach the worker, never crash it and never loop.
 * 2. Deliveries are handed to the consumer while it has credit (free slots); deliveries arriving
 *    together go over as one batch. The consumer acknowledges them once its claim committed, so
 *    work longer than RabbitMQ's `consumer_timeout` never holds a delivery.
 * 3. With no credit left, further deliveries (at most the prefetch, which is the slots) are held
 *    here, unacked; a delivery held longer than {@link HOLD_LIMIT_MS} is handed back (requeued) for
 *    other workers and the consumer is cancelled until credit returns. So no delivery is held
 *    unacked for long, whatever runs.
 * 4. When the broker cancels the consumer (its queue was deleted) or closes the channel, the
 *    channel is re-opened, the topology declared again and consuming resumes (see ManagedChannel).
 *    Deliveries of a closed channel are requeued by the broker.
 *
 * @module
 */
import type { Channel, ConsumeMessage } from 'amqplib';
import { errorMessage } from '../../errors/index.js';
import type { Logger } from '../../logging/index.js';
import { parseBrokerMessage, type ControlMessage, type StateBroadcast } from '../../protocol/index.js';
import {
  wantsEvent,
  type BusHealth,
  type MessageBus,
  type SubscribeOptions,
  type TaskConsumer,
  type TaskConsumerOptions,
  type TaskDelivery,
  type TaskQueueState,
} from '../bus.js';
import type { BrokerConnection, ManagedChannel } from './connection.js';
import { assertTopology, STATES_ENDS_KEY, STATES_LEGACY_KEY } from './topology.js';

/** Longest time a delivery may wait unacked for a free slot before it is handed back. */
export const HOLD_LIMIT_MS = 60_000;

interface RabbitDelivery extends TaskDelivery {
  readonly msg: ConsumeMessage;
  readonly ch: Channel;
  readonly since: number;
}

class RabbitTaskConsumer implements TaskConsumer {
  private credits: number;
  private held: RabbitDelivery[] = [];
  private outgoing: RabbitDelivery[] = [];
  private flushScheduled = false;
  /** Delivery tags not yet acked or nacked, per channel (see ack). */
  private readonly unacked = new Map<Channel, Set<number>>();
  private consumerTag: string | null = null;
  private consumerCh: Channel | null = null;
  private cancelled = false;
  private pausedForHold = false;
  private readonly timer: NodeJS.Timeout;
  readonly managed: ManagedChannel;

  constructor(
    private readonly conn: BrokerConnection,
    private readonly opts: TaskConsumerOptions,
    private readonly logger: Logger,
  ) {
    this.credits = opts.slots;
    this.managed = conn.managedChannel('task', false, (ch) => this.setup(ch));
    this.timer = setInterval(() => this.housekeeping(), 1000);
    this.timer.unref();
  }

  private async setup(ch: Channel): Promise<void> {
    // The queue may have been deleted under us: declare it again before consuming.
    await assertTopology(ch, this.conn.topology);
    await ch.prefetch(this.opts.slots);
    ch.on('close', () => {
      // The broker requeues unacked deliveries of a closed channel; forget ours.
      this.held = this.held.filter((h) => h.ch !== ch);
      this.outgoing = this.outgoing.filter((h) => h.ch !== ch);
      this.unacked.delete(ch);
      if (this.consumerCh === ch) {
        this.consumerCh = null;
        this.consumerTag = null;
      }
    });
    this.consumerCh = ch;
    this.consumerTag = null;
    if (!this.cancelled && !this.pausedForHold) await this.consume(ch);
  }

  private async consume(ch: Channel): Promise<void> {
    if (this.consumerTag !== null || this.cancelled) return;
    const ok = await ch.consume(this.conn.topology.taskQueue, (msg) => {
      if (msg === null) {
        // Cancelled by the broker (the queue was deleted): re-open the channel, which declares the
        // queue again and consumes anew.
        this.logger.warn('task consumer cancelled by the broker (queue deleted?); re-declaring and resubscribing');
        this.consumerTag = null;
        void ch.close().catch(() => undefined);
        return;
      }
      this.onDelivery(msg, ch);
    });
    this.consumerTag = ok.consumerTag;
  }

  private async stopConsuming(): Promise<void> {
    const ch = this.consumerCh;
    const tag = this.consumerTag;
    this.consumerTag = null;
    if (ch && tag) await ch.cancel(tag).catch(() => undefined);
  }

  private unackedOn(ch: Channel): Set<number> {
    let set = this.unacked.get(ch);
    if (!set) {
      set = new Set();
      this.unacked.set(ch, set);
    }
    return set;
  }

  private onDelivery(msg: ConsumeMessage, ch: Channel): void {
    this.unackedOn(ch).add(msg.fields.deliveryTag);
    let parsed;
    try {
      parsed = parseBrokerMessage(msg.content);
    } catch (err) {
      this.logger.warn(`rejected malformed task (dead-lettered): ${errorMessage(err)}`);
      this.nack(msg, ch, false);
      return;
    }
    if (parsed.kind !== 'continue') {
      this.logger.warn(`rejected task of unexpected kind '${parsed.kind}' (dead-lettered)`);
      this.nack(msg, ch, false);
      return;
    }
    const d: RabbitDelivery = { processId: parsed.processId, msg, ch, since: Date.now() };
    if (this.cancelled) {
      this.nack(msg, ch, true);
      return;
    }
    if (this.credits > 0) this.handOver(d);
    else this.held.push(d);
  }

  private handOver(d: RabbitDelivery): void {
    this.credits--;
    this.outgoing.push(d);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        const batch = this.outgoing;
        this.outgoing = [];
        if (batch.length > 0) this.opts.onTasks(batch);
      });
    }
  }

  private nack(msg: ConsumeMessage, ch: Channel, requeue: boolean): void {
    this.unackedOn(ch).delete(msg.fields.deliveryTag);
    try {
      ch.nack(msg, false, requeue);
    } catch {
      // Channel closed meanwhile: the broker requeued the delivery.
    }
  }

  /**
   * Where every outstanding delivery of a channel up to the batch's highest tag is in the batch,
   * one `multiple` ack covers them all (one frame instead of one per task).
   */
  ack(tasks: readonly TaskDelivery[]): void {
    const byChannel = new Map<Channel, RabbitDelivery[]>();
    for (const t of tasks as readonly RabbitDelivery[]) {
      const list = byChannel.get(t.ch);
      if (list) list.push(t);
      else byChannel.set(t.ch, [t]);
    }
    for (const [ch, ds] of byChannel) {
      const outstanding = this.unackedOn(ch);
      let max = 0;
      let top = ds[0]!;
      const tags = new Set<number>();
      for (const d of ds) {
        const tag = d.msg.fields.deliveryTag;
        tags.add(tag);
        if (tag > max) {
          max = tag;
          top = d;
        }
      }
      let covered = true;
      for (const t of outstanding) {
        if (t <= max && !tags.has(t)) {
          covered = false;
          break;
        }
      }
      try {
        if (covered) {
          for (const t of tags) outstanding.delete(t);
          ch.ack(top.msg, true);
        } else {
          for (const d of ds) {
            outstanding.delete(d.msg.fields.deliveryTag);
            ch.ack(d.msg);
          }
        }
      } catch {
        // Channel closed meanwhile: the broker requeued the deliveries; the claim decides again.
      }
    }
  }

  requeue(tasks: readonly TaskDelivery[]): void {
    for (const t of tasks as readonly RabbitDelivery[]) this.nack(t.msg, t.ch, true);
    this.credit(tasks.length);
  }

  credit(n: number): void {
    if (n <= 0) return;
    this.credits += n;
    while (this.credits > 0 && this.held.length > 0) this.handOver(this.held.shift()!);
    if (this.pausedForHold && this.credits > 0 && this.held.length === 0 && !this.cancelled) {
      this.pausedForHold = false;
      const ch = this.consumerCh;
      if (ch) {
        void this.consume(ch).catch((err: unknown) => {
          this.logger.warn(`resuming the task consumer failed (${errorMessage(err)}); re-opening its channel`);
          void ch.close().catch(() => undefined);
        });
      }
    }
  }

  private housekeeping(): void {
    // Deliveries waiting too long for a slot go back to the queue for other workers, and this
    // consumer stops until credit returns (see step 3 in the module comment).
    const oldest = this.held[0];
    if (oldest && Date.now() - oldest.since > HOLD_LIMIT_MS) {
      const give = this.held;
      this.held = [];
      this.pausedForHold = true;
      void this.stopConsuming().then(() => {
        for (const h of give) this.nack(h.msg, h.ch, true);
        this.logger.info(
          `all ${this.opts.slots} slots busy for ${HOLD_LIMIT_MS / 1000} s: handed ${give.length} task(s) back`,
        );
      });
    }
  }

  async cancel(): Promise<void> {
    if (this.cancelled) return;
    this.cancelled = true;
    clearInterval(this.timer);
    await this.stopConsuming();
    for (const h of this.held.splice(0)) this.nack(h.msg, h.ch, true);
  }

  /** Closes the channel (unacked deliveries go back to the queue). */
  async close(): Promise<void> {
    await this.cancel();
    await this.managed.close();
  }
}

/** The `rabbitmq` {@link MessageBus}. */
export class RabbitBus implements MessageBus {
  readonly kind = 'rabbitmq' as const;
  readonly dispatch = 'publish' as const;
  private readonly consumers = new Set<RabbitTaskConsumer>();
  private closing: Promise<void> | null = null;

  constructor(
    /** The underlying connection (tests and tools publish raw messages on it). */
    readonly connection: BrokerConnection,
    private readonly logger: Logger,
  ) {}

  publishContinue(ids: readonly number[]): Promise<void> {
    return this.connection.publishContinue(ids);
  }

  async consumeTasks(opts: TaskConsumerOptions): Promise<TaskConsumer> {
    const c = new RabbitTaskConsumer(this.connection, opts, this.logger);
    this.consumers.add(c);
    await this.connection.openManaged(c.managed);
    return c;
  }

  publishControl(msg: ControlMessage): Promise<void> {
    return this.connection.publishControl(msg);
  }

  async consumeControl(onMessage: (msg: ControlMessage) => void): Promise<() => Promise<void>> {
    const topo = this.connection.topology;
    const m = this.connection.managedChannel('control', false, async (ch) => {
      await assertTopology(ch, topo);
      const q = await ch.assertQueue('', { exclusive: true, autoDelete: true });
      await ch.bindQueue(q.queue, topo.controlExchange, '');
      await ch.consume(
        q.queue,
        (msg) => {
          if (msg === null) {
            void ch.close().catch(() => undefined); // exchange or queue deleted: re-open
            return;
          }
          let parsed;
          try {
            parsed = parseBrokerMessage(msg.content);
          } catch (err) {
            this.logger.warn(`dropped malformed control message: ${errorMessage(err)}`);
            return;
          }
          if (parsed.kind === 'control') onMessage(parsed);
        },
        { noAck: true },
      );
    });
    await this.connection.openManaged(m);
    return () => m.close();
  }

  publishState(msg: StateBroadcast): void {
    this.connection.publishState(msg);
  }

  async subscribeEvents(
    onMessage: (msg: StateBroadcast) => void,
    opts: SubscribeOptions = {},
  ): Promise<() => Promise<void>> {
    const topo = this.connection.topology;
    const terminalOnly = opts.terminalOnly === true;
    let opened = 0;
    const m = this.connection.managedChannel('event subscription', false, async (ch) => {
      await assertTopology(ch, topo);
      const q = await ch.assertQueue('', { exclusive: true, autoDelete: true });
      if (terminalOnly) {
        // Batches with an end; and every batch of an older sender, which used one key for all.
        await ch.bindQueue(q.queue, topo.eventsExchange, STATES_ENDS_KEY);
        await ch.bindQueue(q.queue, topo.eventsExchange, STATES_LEGACY_KEY);
      } else {
        await ch.bindQueue(q.queue, topo.eventsExchange, '#');
      }
      await ch.consume(
        q.queue,
        (msg) => {
          if (msg === null) {
            void ch.close().catch(() => undefined);
            return;
          }
          let parsed;
          try {
            parsed = parseBrokerMessage(msg.content);
          } catch (err) {
            this.logger.debug(`dropped malformed broadcast: ${errorMessage(err)}`);
            return;
          }
          // A batch with an end may hold other changes too.
          const take = (e: StateBroadcast): void => {
            if (wantsEvent(opts, e)) onMessage(e);
          };
          if (parsed.kind === 'state') take(parsed);
          else if (parsed.kind === 'states') for (const e of parsed.events) take(e);
        },
        { noAck: true },
      );
      // Every subscription after the first may have missed what was published in between.
      if (opened++ > 0) opts.onGap?.();
    });
    await this.connection.openManaged(m);
    return () => m.close();
  }

  taskQueueState(): Promise<TaskQueueState> {
    return this.connection.taskQueueState();
  }

  health(): BusHealth {
    const c = this.connection;
    return { kind: 'rabbitmq', connected: c.connected, peer: c.connected ? c.serverVersion : null };
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const c of this.consumers) await c.close();
      await this.connection.close();
    })();
    return this.closing;
  }
}
