/**
 * The daemon as the hub of a local profile's message bus (see broker/local/hub.ts): it feeds the
 * hub its workers' IPC traffic and the bus requests of socket clients, reads the outbox through the
 * daemon's store connection, and turns expired leases into pending dispatches (on a local profile
 * nobody else sweeps).
 *
 * @module
 */
import type { Logger } from '../logging/index.js';
import { HUB_POLL_MS, LocalHub, type HubPeer, type HubStats } from '../broker/index.js';
import { errorMessage } from '../errors/index.js';
import { parseBusPeerMessage, type BusHubMessage, type BusPeerMessage } from '../protocol/index.js';
import type { SocketBusHooks } from './control-server.js';
import type { LazyStore } from './store-access.js';
import type { SupervisorBusHooks } from './supervisor.js';

/** The daemon's hub. */
export class DaemonHub {
  readonly hub: LocalHub;
  private readonly workers = new Map<string, HubPeer>();
  private expiryTimer: NodeJS.Timeout | null = null;
  private expiring = false;

  constructor(
    private readonly store: LazyStore,
    private readonly logger: Logger,
    private readonly leaseMs: number,
    /** Period of the hub's own read of the outbox (tests turn it off to see what hints alone do). */
    private readonly pollMs: number = HUB_POLL_MS,
  ) {
    this.hub = new LocalHub(
      { nextDispatches: async (limit, excluding) => (await store.get()).nextDispatches(limit, excluding) },
      logger,
    );
  }

  /** Starts reading the outbox and the lease expiry. */
  start(): void {
    this.hub.start(this.pollMs);
    // A lease expires only when its worker vanished without the daemon noticing (a worker of another
    // daemon, a foreground worker): checking a few times per lease bounds the delay.
    const every = Math.max(1000, Math.min(5000, this.leaseMs / 4));
    this.expiryTimer = setInterval(() => void this.expire(), every);
    this.expiryTimer.unref();
  }

  private async expire(): Promise<void> {
    if (this.expiring) return;
    this.expiring = true;
    try {
      const n = await (await this.store.get()).expireLeases();
      if (n > 0) {
        this.logger.info(`${n} lease(s) expired; dispatching those processes again`);
        this.hub.wake();
      }
    } catch (err) {
      this.logger.debug(`lease expiry check failed: ${errorMessage(err)}`);
    } finally {
      this.expiring = false;
    }
  }

  /** Pending dispatches may exist that no hint announced. */
  wake(): void {
    this.hub.wake();
  }

  /** Counters for status. */
  stats(): HubStats {
    return this.hub.stats();
  }

  /** Hooks for the supervisor (workers over IPC). */
  supervisorHooks(): SupervisorBusHooks {
    return {
      spawned: (workerId: string, name: string, send: (m: BusHubMessage) => boolean) => {
        const peer: HubPeer = { name, send };
        this.workers.set(workerId, peer);
        this.hub.attach(peer);
      },
      message: (workerId: string, msg: BusPeerMessage) => {
        const peer = this.workers.get(workerId);
        if (peer) this.hub.handle(peer, msg);
      },
      exited: (workerId: string) => {
        const peer = this.workers.get(workerId);
        if (!peer) return;
        this.workers.delete(workerId);
        this.hub.detach(peer);
      },
    };
  }

  /** Hooks for the control socket (other programs of the user). */
  socketHooks(): SocketBusHooks {
    return {
      attach: (peer) => {
        const hubPeer: HubPeer = { name: peer.name, send: (m) => peer.push(m) };
        this.hub.attach(hubPeer);
        const state = { consuming: false, control: false, subscribed: false };
        return {
          handle: (params: unknown) => {
            const msg = parseBusPeerMessage(params);
            if (msg.kind === 'consume') state.consuming = true;
            else if (msg.kind === 'cancel') state.consuming = false;
            else if (msg.kind === 'consume-control') state.control = msg.on;
            else if (msg.kind === 'subscribe') state.subscribed = msg.on;
            return this.hub.handle(hubPeer, msg);
          },
          get longLived() {
            return state.consuming || state.control || state.subscribed;
          },
          close: () => this.hub.detach(hubPeer),
        };
      },
    };
  }

  close(): void {
    if (this.expiryTimer) clearInterval(this.expiryTimer);
    this.expiryTimer = null;
    this.hub.close();
  }
}
