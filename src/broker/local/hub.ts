/**
 * The hub of the `local` message bus, run by the profile's daemon. Its peers are the daemon's
 * workers (over their IPC channels) and the user's other programs (over the control socket): the
 * CLI, scripts, a `drover daemon worker` in the foreground.
 *
 * Nothing durable lives here. The store's outbox (processes whose dispatch is pending) is the
 * queue: the hub reads the oldest pending dispatches whenever consumers have free credit and hands
 * each to the consumer with the most free slots, never more than its credit. A pending dispatch
 * stays pending until a worker's claim clears it, so a hub that dies (daemon SIGKILLed) loses
 * nothing: the next one reads the same rows. What the hub keeps in memory is only what it handed
 * out and has not seen acknowledged (`inflight`, per consumer), so it never hands the same process
 * to two consumers at once, and what goes back to the pool at once when a consumer dies or drains.
 *
 * Hints: a publisher that committed new processes says so (`dispatch`). While the hub is caught up
 * (its last read of the outbox found less than it asked for), it hands hinted ids straight out,
 * without reading the store; otherwise a hint only makes it read sooner. A periodic read
 * ({@link HUB_POLL_MS}) picks up what no hint announced (leases released or expired, processes
 * submitted while no daemon ran), so no hint is ever needed for correctness.
 *
 * @module
 */
import { errorMessage } from '../../errors/index.js';
import type { Logger } from '../../logging/index.js';
import {
  MAX_BUS_BATCH,
  isTerminal,
  type BusHubMessage,
  type BusPeerMessage,
  type BusReply,
  type StateBroadcast,
} from '../../protocol/index.js';

/** Period of the hub's own read of the outbox when no hint came. */
export const HUB_POLL_MS = 1000;

/** A peer of the hub: something it can send messages to. */
export interface HubPeer {
  /** For logs: `worker w1 (pid 123)`, `socket client 7`. */
  readonly name: string;
  /** Sends a message; returns false when the peer is gone (the message was not sent). */
  send(msg: BusHubMessage): boolean;
}

/** What the hub reads from the store. */
export interface HubOutbox {
  /**
   * Ids of processes whose dispatch is pending (not paused), oldest request first, at most `limit`,
   * leaving out `excluding`.
   */
  nextDispatches(limit: number, excluding: readonly number[]): Promise<number[]>;
}

/** Counters for status displays and tests. */
export interface HubStats {
  consumers: number;
  /** Free slots of all consumers. */
  credit: number;
  /** Tasks handed out and not yet acknowledged. */
  inflight: number;
  subscribers: number;
  /** Tasks handed out since the hub started. */
  dispatched: number;
  /** True when the last read of the outbox found everything pending (no backlog). */
  caughtUp: boolean;
}

interface PeerState {
  readonly peer: HubPeer;
  consuming: boolean;
  credit: number;
  readonly inflight: Set<number>;
  control: boolean;
  /** Which state changes the peer receives. */
  subscribed: Subscription;
  workerId: string | null;
}

/** What a peer subscribed to: nothing, every state change, or only those reaching an end. */
type Subscription = 'none' | 'all' | 'terminal';

/** The hub. Create it, attach peers as they come, feed it their messages. */
export class LocalHub {
  private readonly peers = new Map<HubPeer, PeerState>();
  private pumping = false;
  private pumpAgain = false;
  private caughtUp = false;
  private closed = false;
  private timer: NodeJS.Timeout | null = null;
  private dispatched = 0;
  private pendingStates: StateBroadcast[] = [];
  private lastReadError = '';

  constructor(
    private readonly outbox: HubOutbox,
    private readonly logger: Logger,
  ) {}

  /** Starts the periodic read of the outbox (and reads it once now). */
  start(pollMs: number = HUB_POLL_MS): void {
    if (this.timer || this.closed) return;
    this.timer = setInterval(() => this.wake(), pollMs);
    this.timer.unref();
    this.wake();
  }

  /** Something may be pending that no hint announced (e.g. leases were released): read the outbox. */
  wake(): void {
    this.caughtUp = false;
    this.schedulePump();
  }

  /** A new peer. */
  attach(peer: HubPeer): void {
    if (this.peers.has(peer)) return;
    this.peers.set(peer, {
      peer,
      consuming: false,
      credit: 0,
      inflight: new Set(),
      control: false,
      subscribed: 'none',
      workerId: null,
    });
  }

  /** A peer is gone: what it held unacknowledged goes to the others at once. */
  detach(peer: HubPeer): void {
    const st = this.peers.get(peer);
    if (!st) return;
    this.peers.delete(peer);
    if (st.inflight.size > 0) {
      this.logger.debug(`${peer.name} left with ${st.inflight.size} unacknowledged task(s); handing them out again`);
      this.wake();
    }
  }

  /** Handles a message of `peer` (attached first if it is new). */
  handle(peer: HubPeer, msg: BusPeerMessage): BusReply {
    if (this.closed) return {};
    this.attach(peer);
    const st = this.peers.get(peer)!;
    switch (msg.kind) {
      case 'dispatch':
        this.onHint(msg.ids);
        return {};
      case 'consume':
        st.consuming = true;
        st.credit = msg.credit;
        st.workerId = msg.workerId;
        this.onCredit();
        return {};
      case 'credit':
        if (st.consuming) {
          st.credit += msg.n;
          this.onCredit();
        }
        return {};
      case 'ack':
        for (const id of msg.ids) st.inflight.delete(id);
        return {};
      case 'requeue': {
        let back = 0;
        for (const id of msg.ids) if (st.inflight.delete(id)) back++;
        if (st.consuming) st.credit += back;
        this.wake();
        return {};
      }
      case 'cancel': {
        const had = st.inflight.size;
        st.consuming = false;
        st.credit = 0;
        st.inflight.clear();
        if (had > 0) this.wake();
        return {};
      }
      case 'control': {
        let delivered = 0;
        for (const other of this.peers.values()) {
          if (other.control && other.peer.send({ kind: 'control', message: msg.message })) delivered++;
        }
        return { delivered };
      }
      case 'consume-control':
        st.control = msg.on;
        return {};
      case 'states':
        // Publishers batch their events per event-loop turn already: pass them on at once.
        for (const e of msg.events) this.pendingStates.push(e);
        this.flushStates();
        return {};
      case 'subscribe':
        st.subscribed = !msg.on ? 'none' : msg.terminalOnly === true ? 'terminal' : 'all';
        return {};
    }
  }

  /** Forwards the state changes peers published to every subscriber. */
  private flushStates(): void {
    const events = this.pendingStates;
    this.pendingStates = [];
    if (events.length === 0) return;
    for (let i = 0; i < events.length; i += MAX_BUS_BATCH) {
      const chunk = events.slice(i, i + MAX_BUS_BATCH);
      let ends: StateBroadcast[] | null = null;
      for (const st of this.peers.values()) {
        if (st.subscribed === 'all') st.peer.send({ kind: 'states', events: chunk });
        else if (st.subscribed === 'terminal') {
          ends ??= chunk.filter((e) => isTerminal(e.state));
          if (ends.length > 0) st.peer.send({ kind: 'states', events: ends });
        }
      }
    }
  }

  private onHint(ids: readonly number[]): void {
    if (this.caughtUp && !this.pumping) {
      const busy = this.inflightIds();
      const fresh = ids.filter((id) => !busy.has(id));
      const sent = this.distribute(fresh);
      // What did not fit waits in the store; it is read when credit returns.
      if (sent < fresh.length) this.caughtUp = false;
      return;
    }
    this.caughtUp = false;
    this.schedulePump();
  }

  private onCredit(): void {
    if (!this.caughtUp) this.schedulePump();
  }

  private pumpScheduled = false;

  /** A pump at the end of this event-loop turn: credit from many peers is read in one go. */
  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      void this.pump();
    });
  }

  private totalCredit(): number {
    let n = 0;
    for (const st of this.peers.values()) if (st.consuming) n += st.credit;
    return n;
  }

  private inflightIds(): Set<number> {
    const out = new Set<number>();
    for (const st of this.peers.values()) for (const id of st.inflight) out.add(id);
    return out;
  }

  /** Reads the outbox and hands out what it finds while there is credit. Concurrent calls share one loop. */
  private async pump(): Promise<void> {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      for (;;) {
        this.pumpAgain = false;
        const credit = this.totalCredit();
        if (credit <= 0 || this.closed) break;
        let ids: number[];
        try {
          ids = await this.outbox.nextDispatches(credit, [...this.inflightIds()]);
          this.lastReadError = '';
        } catch (err) {
          const text = errorMessage(err);
          // Once per distinct error: a store that is away for a while must not flood the log.
          if (text !== this.lastReadError) this.logger.warn(`reading pending dispatches failed: ${text}`);
          this.lastReadError = text;
          break; // the next poll tries again
        }
        this.caughtUp = ids.length < credit;
        this.distribute(ids); // a failed send clears caughtUp again
        if (!this.pumpAgain && this.caughtUp) break;
        if (ids.length === 0 && !this.pumpAgain) break;
      }
    } finally {
      this.pumping = false;
    }
  }

  /** Hands `ids` to consumers, each to the one with the most free credit; returns how many were sent. */
  private distribute(ids: readonly number[]): number {
    if (ids.length === 0) return 0;
    const consumers = [...this.peers.values()].filter((st) => st.consuming && st.credit > 0);
    if (consumers.length === 0) return 0;
    const batches = new Map<PeerState, number[]>();
    let sent = 0;
    for (const id of ids) {
      let best: PeerState | null = null;
      for (const st of consumers) if (st.credit > 0 && (best === null || st.credit > best.credit)) best = st;
      if (best === null) break;
      best.credit--;
      best.inflight.add(id);
      let b = batches.get(best);
      if (!b) batches.set(best, (b = []));
      b.push(id);
      sent++;
    }
    for (const [st, list] of batches) {
      for (let i = 0; i < list.length; i += MAX_BUS_BATCH) {
        const chunk = list.slice(i, i + MAX_BUS_BATCH);
        if (!st.peer.send({ kind: 'tasks', ids: chunk })) {
          // Gone before we noticed: those go back to the pool (they are still pending in the store).
          for (const id of chunk) st.inflight.delete(id);
          sent -= chunk.length;
          this.caughtUp = false;
        }
      }
    }
    this.dispatched += sent;
    return sent;
  }

  /** Counters for status. */
  stats(): HubStats {
    let consumers = 0;
    let credit = 0;
    let inflight = 0;
    let subscribers = 0;
    for (const st of this.peers.values()) {
      if (st.consuming) {
        consumers++;
        credit += st.credit;
      }
      inflight += st.inflight.size;
      if (st.subscribed !== 'none') subscribers++;
    }
    return { consumers, credit, inflight, subscribers, dispatched: this.dispatched, caughtUp: this.caughtUp };
  }

  /** Stops the periodic read; peers are left to their transports. */
  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
