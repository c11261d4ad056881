/**
 * The `local` adapter of {@link MessageBus}: a peer of the hub that the profile's daemon runs (see
 * hub.ts), over a {@link BusLink} (a forked worker's IPC channel, or the control socket).
 *
 * Dispatch mode `'outbox'`: the hub reads the store's pending dispatches itself, so
 * `publishContinue` is a fire-and-forget hint, nobody marks dispatches, and nobody sweeps. When no
 * daemon runs, hints go nowhere and the processes wait in the store until a daemon starts.
 *
 * @module
 */
import { BrokerError } from '../../errors/index.js';
import type { Logger } from '../../logging/index.js';
import type { BusHubMessage, BusPeerMessage, ControlMessage, StateBroadcast } from '../../protocol/index.js';
import {
  wantsEvent,
  type BusHealth,
  type MessageBus,
  type SubscribeOptions,
  type TaskConsumer,
  type TaskConsumerOptions,
  type TaskDelivery,
} from '../bus.js';
import type { BusLink } from './link.js';

/** How long a control request waits for the daemon to take it. */
const CONTROL_TIMEOUT_MS = 5000;

class LocalTaskConsumer implements TaskConsumer {
  /** Free credit as this side counts it (re-announced after a reconnect). */
  credits: number;
  cancelled = false;
  /** Credit freed in this event-loop turn, sent as one message (runs end in batches). */
  private unsent = 0;

  constructor(
    private readonly bus: LocalBus,
    readonly opts: TaskConsumerOptions,
    readonly workerId: string | null,
  ) {
    this.credits = opts.slots;
  }

  announce(): void {
    // What is still to be sent is part of `credits` already.
    this.unsent = 0;
    if (!this.cancelled) this.bus.postNow({ kind: 'consume', credit: this.credits, workerId: this.workerId });
  }

  deliver(ids: number[]): void {
    if (this.cancelled) return;
    this.credits = Math.max(0, this.credits - ids.length);
    this.opts.onTasks(ids.map((processId) => ({ processId })));
  }

  ack(tasks: readonly TaskDelivery[]): void {
    if (tasks.length > 0) this.bus.postSoon({ kind: 'ack', ids: tasks.map((t) => t.processId) });
  }

  requeue(tasks: readonly TaskDelivery[]): void {
    if (tasks.length === 0) return;
    this.credits += tasks.length;
    this.bus.postSoon({ kind: 'requeue', ids: tasks.map((t) => t.processId) });
  }

  credit(n: number): void {
    if (n <= 0 || this.cancelled) return;
    this.credits += n;
    this.unsent += n;
    this.bus.flushSoon();
  }

  /** The credit freed since the last send, as a message (null: none), counted as sent. */
  takeCredit(): BusPeerMessage | null {
    const k = this.unsent;
    this.unsent = 0;
    return k > 0 && !this.cancelled ? { kind: 'credit', n: k } : null;
  }

  async cancel(): Promise<void> {
    if (this.cancelled) return;
    this.cancelled = true;
    this.bus.postNow({ kind: 'cancel' });
    this.bus.forgetConsumer(this);
  }
}

/** Options of {@link LocalBus}. */
export interface LocalBusOptions {
  logger: Logger;
  /** The lease owner id of the worker this bus serves (shown by the hub), or null. */
  workerId?: string | null;
}

/** The `local` {@link MessageBus}. */
export class LocalBus implements MessageBus {
  readonly kind = 'local' as const;
  readonly dispatch = 'outbox' as const;
  private consumer: LocalTaskConsumer | null = null;
  private readonly controlHandlers = new Set<(msg: ControlMessage) => void>();
  private readonly subscribers = new Set<{ fn: (msg: StateBroadcast) => void; opts: SubscribeOptions }>();
  /**
   * What goes to the hub at the end of this event-loop turn, in one IPC message or socket write
   * (each is a wake-up of the daemon): acks and requeues in order, then the credit freed and the
   * state changes of the turn. A run's claim, start and end are so two messages, not four.
   */
  private outbox: BusPeerMessage[] = [];
  private pendingStates: StateBroadcast[] = [];
  private flushScheduled = false;
  private closing: Promise<void> | null = null;
  private connects = 0;

  constructor(
    /** @internal */
    readonly link: BusLink,
    private readonly opts: LocalBusOptions,
  ) {
    link.onMessage = (msg) => this.onHubMessage(msg);
    link.onConnect = () => this.onLinkConnect();
  }

  private onLinkConnect(): void {
    // A (new) hub knows nothing of us: tell it what we consume and listen to.
    const again = this.connects++ > 0;
    this.consumer?.announce();
    if (this.controlHandlers.size > 0) this.postNow({ kind: 'consume-control', on: true });
    if (this.subscribers.size > 0) {
      this.postNow(this.subscription());
      if (again) for (const s of this.subscribers) s.opts.onGap?.();
    }
  }

  private onHubMessage(msg: BusHubMessage): void {
    switch (msg.kind) {
      case 'tasks':
        this.consumer?.deliver(msg.ids);
        break;
      case 'control':
        for (const fn of this.controlHandlers) fn(msg.message);
        break;
      case 'states':
        for (const s of this.subscribers) {
          // The hub sends every change when one of our subscribers wants them all.
          for (const e of msg.events) if (wantsEvent(s.opts, e)) s.fn(e);
        }
        break;
    }
  }

  private updatePersistence(): void {
    this.link.setPersistent(
      !this.closing && (this.consumer !== null || this.controlHandlers.size > 0 || this.subscribers.size > 0),
    );
  }

  /** @internal Sends `msg` now, after what the outbox holds (the order of posts is kept). */
  postNow(msg: BusPeerMessage): void {
    this.outbox.push(msg);
    this.flush();
  }

  /** @internal Sends `msg` with the rest of this turn's messages. */
  postSoon(msg: BusPeerMessage): void {
    this.outbox.push(msg);
    this.flushSoon();
  }

  /** @internal Sends what this turn gathered (outbox, freed credit, state changes) at its end. */
  flushSoon(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    const msgs = this.outbox;
    this.outbox = [];
    const credit = this.consumer?.takeCredit() ?? null;
    if (credit !== null) msgs.push(credit);
    if (this.pendingStates.length > 0) {
      msgs.push({ kind: 'states', events: this.pendingStates });
      this.pendingStates = [];
    }
    if (msgs.length > 0) this.link.post(msgs);
  }

  async publishContinue(ids: readonly number[]): Promise<void> {
    // Now: a hint is what a waiting worker's start waits for. The events of this turn (a submit's
    // `created`) go with it, after it.
    if (ids.length > 0 && !this.closing) this.postNow({ kind: 'dispatch', ids: [...ids] });
  }

  async consumeTasks(opts: TaskConsumerOptions): Promise<TaskConsumer> {
    if (this.consumer) throw new BrokerError('this bus already has a task consumer');
    const c = new LocalTaskConsumer(this, opts, this.opts.workerId ?? null);
    this.consumer = c;
    this.updatePersistence();
    if (this.link.connected) c.announce();
    return c;
  }

  /** @internal */
  forgetConsumer(c: LocalTaskConsumer): void {
    if (this.consumer === c) this.consumer = null;
    this.updatePersistence();
  }

  /**
   * Tells the hub `msg` (a subscription, a control consumer) and waits for its answer, so that
   * the caller's next request, or another peer's event, comes after it. A mere post could still be
   * in flight then: a CLI that subscribed and sent a pause missed the worker's 'pausing' answer,
   * which reached the hub first. With no hub, nothing to wait for: the link re-announces what this
   * bus has on connect ({@link LocalBus.onLinkConnect}).
   */
  private async inPlace(msg: BusPeerMessage): Promise<void> {
    this.flush();
    try {
      await this.link.call(msg, CONTROL_TIMEOUT_MS);
    } catch {
      // Not reachable now (or slow): announced again when the link (re)connects.
    }
  }

  async publishControl(msg: ControlMessage): Promise<void> {
    if (this.closing) throw new BrokerError('the bus is closed');
    this.flush();
    await this.link.call({ kind: 'control', message: msg }, CONTROL_TIMEOUT_MS);
  }

  async consumeControl(onMessage: (msg: ControlMessage) => void): Promise<() => Promise<void>> {
    this.controlHandlers.add(onMessage);
    this.updatePersistence();
    await this.inPlace({ kind: 'consume-control', on: true });
    return async () => {
      if (!this.controlHandlers.delete(onMessage)) return;
      if (this.controlHandlers.size === 0) this.postNow({ kind: 'consume-control', on: false });
      this.updatePersistence();
    };
  }

  publishState(msg: StateBroadcast): void {
    if (this.closing) return;
    this.pendingStates.push(msg);
    this.flushSoon();
  }

  async subscribeEvents(
    onMessage: (msg: StateBroadcast) => void,
    opts: SubscribeOptions = {},
  ): Promise<() => Promise<void>> {
    const entry = { fn: onMessage, opts };
    this.subscribers.add(entry);
    this.updatePersistence();
    // Told again even when unchanged: the reply says the hub has it, so no change is missed after.
    await this.inPlace(this.subscription());
    return async () => {
      const was = this.subscription();
      if (!this.subscribers.delete(entry)) return;
      const now = this.subscription();
      if (now.on !== was.on || now.terminalOnly !== was.terminalOnly) this.postNow(now);
      this.updatePersistence();
    };
  }

  /** What the hub is to send us: every change if one subscriber wants them all, else only ends. */
  private subscription(): Extract<BusPeerMessage, { kind: 'subscribe' }> {
    if (this.subscribers.size === 0) return { kind: 'subscribe', on: false };
    for (const s of this.subscribers) if (s.opts.terminalOnly !== true) return { kind: 'subscribe', on: true };
    return { kind: 'subscribe', on: true, terminalOnly: true };
  }

  /** The hub holds no tasks: the store's outbox is the queue. */
  async taskQueueState(): Promise<null> {
    return null;
  }

  health(): BusHealth {
    return { kind: 'local', connected: this.link.connected, peer: this.link.peerName };
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.flush();
      await this.consumer?.cancel();
      this.controlHandlers.clear();
      this.subscribers.clear();
      await this.link.close();
    })();
    return this.closing;
  }
}
