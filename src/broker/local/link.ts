/**
 * How a peer of the local bus reaches the hub (the profile's daemon):
 * - {@link IpcLink}: a worker forked by the daemon, over the IPC channel it already has. It lives
 *   and dies with the worker's tie to its daemon (no reconnect: a worker whose daemon died drains),
 *   and nobody else can reach it.
 * - {@link SocketLink}: any other program of the user, over the daemon's control socket (0600 in
 *   the 0700 runtime dir). It connects when first needed and, while it carries a consumer or a
 *   subscription, reconnects whenever the daemon comes back (a new daemon knows nothing of the old
 *   one's peers, so the bus re-sends what it holds: see {@link BusLink.onConnect}).
 *
 * @module
 */
import net from 'node:net';
import { BrokerError } from '../../errors/index.js';
import type { Logger } from '../../logging/index.js';
import {
  CONTROL_PROTOCOL_VERSION,
  LineSplitter,
  MAX_BUS_BATCH,
  MAX_CONTROL_LINE_BYTES,
  MAX_IPC_BUS_MESSAGES,
  parseBusHubMessage,
  type BusHubMessage,
  type BusPeerMessage,
  type BusReply,
} from '../../protocol/index.js';
import { isJsonObject } from '../../protocol/index.js';

/** A peer's connection to the hub. */
export interface BusLink {
  /** True while the hub can be reached now. */
  readonly connected: boolean;
  /** Who is at the other end, for status: `daemon pid 123`, or null. */
  readonly peerName: string | null;
  /**
   * Sends messages, in order and together (one IPC message, one socket write); silently dropped
   * when the hub cannot be reached (hints, credit). The hub does not answer them.
   */
  post(msgs: readonly BusPeerMessage[]): void;
  /** Sends a message and waits for the hub's reply; throws {@link BrokerError} when unreachable. */
  call(msg: BusPeerMessage, timeoutMs: number): Promise<BusReply>;
  /** Receives the hub's messages. */
  onMessage: ((msg: BusHubMessage) => void) | null;
  /** Called after each (re)connection to a hub: a new hub holds none of this peer's state. */
  onConnect: (() => void) | null;
  /** While true the link stays connected and reconnects when the hub comes back. */
  setPersistent(on: boolean): void;
  close(): Promise<void>;
}

/** The part of `process` (a forked child) an {@link IpcLink} uses. */
export interface IpcChannel {
  send?: (msg: unknown, cb?: (err: Error | null) => void) => boolean;
  readonly connected?: boolean;
  on(event: 'message', fn: (msg: unknown) => void): unknown;
  off(event: 'message', fn: (msg: unknown) => void): unknown;
}

/** A worker's link to the daemon that forked it. */
export class IpcLink implements BusLink {
  onMessage: ((msg: BusHubMessage) => void) | null = null;
  onConnect: (() => void) | null = null;
  private readonly listener: (raw: unknown) => void;

  constructor(
    private readonly channel: IpcChannel,
    private readonly workerId: string,
    private readonly logger: Logger,
  ) {
    this.listener = (raw) => {
      if (!isJsonObject(raw) || raw.kind !== 'bus') return;
      let msg: BusHubMessage;
      try {
        msg = parseBusHubMessage(raw.message);
      } catch (err) {
        this.logger.warn(`ignored malformed bus message from the daemon: ${(err as Error).message}`);
        return;
      }
      this.onMessage?.(msg);
    };
    channel.on('message', this.listener);
  }

  get connected(): boolean {
    return this.channel.connected === true;
  }

  get peerName(): string | null {
    return this.connected ? 'daemon (IPC)' : null;
  }

  post(msgs: readonly BusPeerMessage[]): void {
    if (!this.connected || !this.channel.send || msgs.length === 0) return;
    const parts = msgs.flatMap(splitByCount);
    for (let i = 0; i < parts.length; i += MAX_IPC_BUS_MESSAGES) {
      try {
        // One IPC message for all of them: each send is a write the daemon wakes up for.
        // The callback keeps a write to a channel that closes meanwhile from throwing.
        this.channel.send(
          { kind: 'bus', workerId: this.workerId, messages: parts.slice(i, i + MAX_IPC_BUS_MESSAGES) },
          () => undefined,
        );
      } catch {
        // The daemon is gone; the worker notices through 'disconnect'.
      }
    }
  }

  async call(msg: BusPeerMessage): Promise<BusReply> {
    if (!this.connected) throw new BrokerError('the daemon is gone (IPC channel closed)');
    this.post([msg]);
    return {};
  }

  setPersistent(): void {
    // One channel for the worker's life.
  }

  async close(): Promise<void> {
    this.channel.off('message', this.listener);
  }
}

/** Errors of connect() that mean no daemon listens. */
const NOT_RUNNING = new Set(['ENOENT', 'ECONNREFUSED', 'ENOTSOCK']);
/** Largest line accepted from the daemon. */
const MAX_PUSH_BYTES = 32 * 1024 * 1024;
const RECONNECT_FIRST_MS = 100;
const RECONNECT_MAX_MS = 2000;

/** A program's link to the daemon over its control socket. */
export class SocketLink implements BusLink {
  onMessage: ((msg: BusHubMessage) => void) | null = null;
  onConnect: (() => void) | null = null;
  private socket: net.Socket | null = null;
  private isConnected = false;
  private persistent = false;
  private closed = false;
  private nextId = 1;
  private readonly calls = new Map<number, { resolve: (r: BusReply) => void; reject: (e: Error) => void }>();
  private reconnectTimer: NodeJS.Timeout | null = null;
  private reconnectDelay = RECONNECT_FIRST_MS;
  /**
   * Request lines written while the socket connects, sent once it has, after what
   * {@link SocketLink.onConnect} announces: a new hub learns this peer's subscriptions and consumer
   * before its requests. (Left to the socket, they would go first: a socket queues every write made
   * while its first one waits for the connection.)
   */
  private queued: string[] = [];

  constructor(
    readonly socketPath: string,
    private readonly profileName: string,
    private readonly logger: Logger,
  ) {}

  get connected(): boolean {
    return this.isConnected;
  }

  get peerName(): string | null {
    return this.isConnected ? `daemon of '${this.profileName}'` : null;
  }

  private connect(): net.Socket {
    if (this.socket) return this.socket;
    const socket = net.createConnection(this.socketPath);
    this.socket = socket;
    const splitter = new LineSplitter(MAX_PUSH_BYTES);
    socket.on('connect', () => {
      this.isConnected = true;
      this.reconnectDelay = RECONNECT_FIRST_MS;
      this.onConnect?.();
      const queued = this.queued;
      this.queued = [];
      if (queued.length > 0) socket.write(queued.join(''));
    });
    socket.on('data', (chunk: Buffer) => {
      for (const line of splitter.push(chunk)) this.onLine(line);
      if (splitter.overflow) socket.destroy();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (!NOT_RUNNING.has(err.code ?? '')) this.logger.debug(`bus link to the daemon: ${err.message}`);
    });
    socket.on('close', () => {
      if (this.socket === socket) {
        this.socket = null;
        this.isConnected = false;
        // Their calls are rejected below; posts to a hub that is not there go nowhere.
        this.queued = [];
      }
      const err = new BrokerError(`the daemon of profile '${this.profileName}' is not reachable`);
      for (const c of this.calls.values()) c.reject(err);
      this.calls.clear();
      this.scheduleReconnect();
    });
    // Only a link that carries a consumer or a subscription keeps the program alive.
    if (!this.persistent) socket.unref();
    return socket;
  }

  /**
   * Connects now and resolves once the socket connected, or is known not to (no daemon listens), or
   * after `timeoutMs`; true when connected. What is posted after it goes out at once. Posted while
   * the socket connects, it waits for the connect callback, which runs only when the program next
   * returns to the event loop: a loop of awaited submits never does (the SQLite store is
   * synchronous), so its hints sat queued until the loop ended and the workers idled while it ran.
   * The socket is kept referenced meanwhile: a script awaiting this must not end with it unsettled.
   */
  open(timeoutMs: number): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    if (this.isConnected) return Promise.resolve(true);
    const socket = this.connect();
    socket.ref();
    return new Promise<boolean>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        socket.off('connect', done);
        socket.off('close', done);
        if (!this.persistent) socket.unref();
        resolve(this.isConnected && this.socket === socket);
      };
      const timer = setTimeout(done, timeoutMs);
      socket.once('connect', done);
      socket.once('close', done);
    });
  }

  private scheduleReconnect(): void {
    if (!this.persistent || this.closed || this.reconnectTimer) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.persistent && !this.closed && !this.socket) this.connect();
    }, this.reconnectDelay);
    this.reconnectTimer.unref();
    this.reconnectDelay = Math.min(RECONNECT_MAX_MS, this.reconnectDelay * 2);
  }

  private onLine(line: string): void {
    let raw: unknown;
    try {
      raw = JSON.parse(line);
    } catch {
      return;
    }
    if (!isJsonObject(raw) || raw.v !== CONTROL_PROTOCOL_VERSION) return;
    if ('bus' in raw) {
      let msg: BusHubMessage;
      try {
        msg = parseBusHubMessage(raw.bus);
      } catch (err) {
        this.logger.warn(`ignored malformed bus message from the daemon: ${(err as Error).message}`);
        return;
      }
      this.onMessage?.(msg);
      return;
    }
    if (typeof raw.id !== 'number') return;
    const c = this.calls.get(raw.id);
    if (!c) return; // a call that timed out
    this.calls.delete(raw.id);
    if (raw.ok === true) {
      const r = isJsonObject(raw.result) ? raw.result : {};
      c.resolve(typeof r.delivered === 'number' ? { delivered: r.delivered } : {});
    } else {
      const e = isJsonObject(raw.error) ? raw.error : {};
      c.reject(new BrokerError(`the daemon refused a bus message: ${String(e.message ?? 'unknown error')}`));
    }
  }

  /**
   * Writes `msg` (split when its line would be too long) as notifications (no `id`: the daemon
   * does not answer), or with `call` its last part as a request; returns that request's id (0 for
   * notifications). The lines written together go out in one write, which the daemon reads in one
   * wake-up: the socket is corked until the microtasks queued so far ran. Not until the next tick:
   * that waits for every microtask, and a submit's hint then waited for the store read of the
   * wait that followed it (about 60 us of each round trip).
   */
  private write(msg: BusPeerMessage, call: boolean): number {
    const socket = this.connect();
    const parts = encodeToFit(msg);
    let id = 0;
    parts.forEach((params, i) => {
      // `{ v, [id,] method: 'bus', params }`, around params encoded once.
      const head =
        call && i === parts.length - 1
          ? `{"v":${CONTROL_PROTOCOL_VERSION},"id":${(id = this.nextId++)},`
          : `{"v":${CONTROL_PROTOCOL_VERSION},`;
      const line = `${head}"method":"bus","params":${params}}\n`;
      if (!this.isConnected) {
        this.queued.push(line);
        return;
      }
      if (!this.corked) {
        this.corked = true;
        socket.cork();
        queueMicrotask(() => {
          this.corked = false;
          socket.uncork();
        });
      }
      socket.write(line);
    });
    return id;
  }

  /** True while the socket is corked for the lines written together (see {@link SocketLink.write}). */
  private corked = false;

  post(msgs: readonly BusPeerMessage[]): void {
    if (this.closed) return;
    for (const msg of msgs) this.write(msg, false);
  }

  call(msg: BusPeerMessage, timeoutMs: number): Promise<BusReply> {
    if (this.closed) return Promise.reject(new BrokerError('the bus is closed'));
    return new Promise<BusReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.calls.delete(id);
        reject(new BrokerError(`the daemon of profile '${this.profileName}' did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      const id = this.write(msg, true);
      this.calls.set(id, {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  setPersistent(on: boolean): void {
    this.persistent = on;
    if (on) {
      this.socket?.ref();
      if (!this.socket) this.connect();
    } else {
      this.socket?.unref();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.persistent = false;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const s = this.socket;
    this.socket = null;
    if (s) {
      // Flush what was posted (hints, states) before the program goes on or exits; kept referenced,
      // or a program whose last act is close() would end with this promise unsettled.
      s.ref();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          s.destroy();
          resolve();
        }, 200);
        s.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
        // Lines still waiting for the connection go out first (after end() no write is taken).
        if (this.queued.length > 0) s.write(this.queued.join(''));
        this.queued = [];
        s.end();
      });
    }
  }
}

/** A message's list of ids or events, with the name of its field; null for the others. */
function listOf(msg: BusPeerMessage): { key: 'ids' | 'events'; items: readonly unknown[] } | null {
  switch (msg.kind) {
    case 'dispatch':
    case 'ack':
    case 'requeue':
      return { key: 'ids', items: msg.ids };
    case 'states':
      return { key: 'events', items: msg.events };
    default:
      return null;
  }
}

/** Splits a message that holds more than {@link MAX_BUS_BATCH} ids or events (the receiver refuses it). */
function splitByCount(msg: BusPeerMessage): BusPeerMessage[] {
  const list = listOf(msg);
  if (list === null || list.items.length <= MAX_BUS_BATCH) return [msg];
  const parts: BusPeerMessage[] = [];
  for (let i = 0; i < list.items.length; i += MAX_BUS_BATCH) {
    parts.push({ kind: msg.kind, [list.key]: list.items.slice(i, i + MAX_BUS_BATCH) } as BusPeerMessage);
  }
  return parts;
}

/**
 * The params of `msg` as JSON texts, split so that each holds at most {@link MAX_BUS_BATCH} ids or
 * events and its request line stays within `maxBytes` (the socket's line limit). Each item is
 * encoded once and packed greedily: a bulk submit's 10,000 state events are one pass, not the
 * several passes of halving and encoding again. An item that alone exceeds the limit goes alone
 * (the daemon refuses that line, as it would any too long line).
 */
function encodeToFit(msg: BusPeerMessage, maxBytes = MAX_CONTROL_LINE_BYTES - 256): string[] {
  const list = listOf(msg);
  if (list === null) return [JSON.stringify(msg)];
  const head = `{"kind":${JSON.stringify(msg.kind)},"${list.key}":[`;
  const parts: string[] = [];
  let items: string[] = [];
  let bytes = head.length + 2;
  for (const item of list.items) {
    const text = JSON.stringify(item);
    const size = Buffer.byteLength(text) + 1;
    if (items.length > 0 && (items.length >= MAX_BUS_BATCH || bytes + size > maxBytes)) {
      parts.push(head + items.join(',') + ']}');
      items = [];
      bytes = head.length + 2;
    }
    items.push(text);
    bytes += size;
  }
  parts.push(head + items.join(',') + ']}');
  return parts;
}
