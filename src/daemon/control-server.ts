/**
 * The control socket: newline-delimited JSON requests (see protocol/control) on a Unix socket in
 * the profile's private runtime directory, answered by a {@link ControlHandler}.
 *
 * Hostile or broken clients must never hurt the daemon, so every resource a connection can use is
 * bounded: line length (an oversized line gets an error reply and the connection is closed, since
 * its framing is lost), requests queued per connection, connections at once, and idle time; bus
 * notifications (no reply) read and not handled yet, and what a client leaves unread, stop the
 * reading of its connection until they are handled or read. Requests on one connection are
 * answered in order (notifications are handled in that order too); a client that half-closes its
 * side still gets the replies to what it sent, then the daemon closes.
 *
 * ## Staying available to the owner
 *
 * Only the owner (and root) can reach the socket (0600 in a 0700 directory), so every connection is
 * the owner's; the daemon cannot tell a flood from its programs apart from the one `drover daemon
 * status` that must get an answer (Node offers no SO_PEERCRED to count connections per process).
 * What it can see is how each connection behaves, and it bounds connections by that:
 *
 * - A new connection is never refused. At {@link ControlServerLimits.maxConnections} the server
 *   closes one open connection to make room, chosen in this order (the first class that has one;
 *   within a class the one idle the longest):
 *   1. connections that have sent no request in the {@link FRESH_GRACE_MS} since they connected;
 *   2. connections that sent requests, with none pending and no subscription;
 *   3. connections younger than {@link FRESH_GRACE_MS} that have sent no request yet: a client
 *      writes its request right after connecting, and the daemon may simply not have read it yet;
 *   4. connections holding a subscription (see {@link ControlConnection.hold}) with no request
 *      pending: a subscriber waiting for events is cut only when everything else left is one too;
 *   5. connections with a request pending.
 *   The closed connection gets a `BUSY` error line first. So `drover daemon status`, which sends its
 *   request as soon as it is connected, gets in and is answered whatever else is open, unless more
 *   than `maxConnections` other connections arrive before the daemon reads its request.
 * - A connection must send its first complete request within
 *   {@link ControlServerLimits.firstRequestTimeoutMs} of connecting (a short deadline, not reset by
 *   partial lines), else it is closed.
 * - After that, a connection with no request pending and no subscription is closed after
 *   {@link ControlServerLimits.idleTimeoutMs} without traffic. A subscription disables the idle
 *   timeout: a subscriber may legitimately wait hours for its next event (a Unix socket tells the
 *   daemon at once when its peer is gone, so no heartbeat is needed).
 *
 * Code that serves subscriptions (long-lived connections that receive events) gets the
 * {@link ControlConnection} of each connection by passing a handler factory instead of a handler.
 *
 * @module
 */
import fs from 'node:fs';
import net from 'node:net';
import type { Logger } from '../logging/index.js';
import {
  CONTROL_PROTOCOL_VERSION,
  ControlError,
  LineSplitter,
  MAX_CONTROL_LINE_BYTES,
  controlErrorResponse,
  encodeControlResponse,
  decodeControlLine,
  handleDecodedLine,
  isBusNotification,
  type BusHubMessage,
  type ControlErrorBody,
  type ControlHandler,
  type ControlResponse,
} from '../protocol/index.js';

/** A connection as a peer of the local bus: the daemon pushes hub messages to it. */
export interface SocketBusPeer {
  readonly name: string;
  /** Writes a hub message as a pushed line; false when the connection is gone or hopelessly behind. */
  push(msg: BusHubMessage): boolean;
}

/** What the daemon does with one connection's bus messages. */
export interface SocketBusSession {
  /** Handles the params of one `bus` request; returns its result (throws for a bad message). */
  handle(params: unknown): unknown;
  /** True while the connection consumes or listens: it then holds the connection like a subscription. */
  readonly longLived: boolean;
  /** The connection closed. */
  close(): void;
}

/** The local bus on the control socket (the daemon of a local profile is its hub). */
export interface SocketBusHooks {
  /** Called on a connection's first `bus` request. */
  attach(peer: SocketBusPeer): SocketBusSession;
}

/** Limits of the control server. */
export interface ControlServerLimits {
  maxLineBytes: number;
  /** Requests waiting for their reply on one connection. */
  maxPendingPerConnection: number;
  /**
   * Connections open at once. A new connection past it is admitted and another one is closed to
   * make room (see the module comment for which).
   */
  maxConnections: number;
  /** A connection that has not sent a complete request this long after connecting is closed. */
  firstRequestTimeoutMs: number;
  /** A connection with no request pending and no subscription is closed after this long without traffic. */
  idleTimeoutMs: number;
  /** Bytes pushed to a subscriber that it has not read yet; past it the subscriber is cut off. */
  maxPushBufferBytes: number;
  /**
   * Bytes of bus notifications read and not handled yet (they wait behind a slow request, or came
   * in a burst); past it the connection is not read from until they were handled. Notifications
   * are not requests: no reply is pending, so they never count toward `maxPendingPerConnection`
   * (a peer whose small posts piled up while the daemon was busy was cut off with BUSY).
   */
  maxQueuedNotificationBytes: number;
}

/** Default limits. */
export const DEFAULT_CONTROL_LIMITS: ControlServerLimits = {
  maxLineBytes: MAX_CONTROL_LINE_BYTES,
  maxPendingPerConnection: 64,
  maxConnections: 256,
  firstRequestTimeoutMs: 5_000,
  idleTimeoutMs: 60_000,
  maxPushBufferBytes: 16 * 1024 * 1024,
  maxQueuedNotificationBytes: 4 * 1024 * 1024,
};

/**
 * One client connection, as code serving subscriptions sees it (through a handler factory given to
 * {@link ControlServer}).
 */
export interface ControlConnection {
  /** Unique among the server's connections, for logs. */
  readonly id: number;
  /**
   * Marks the connection as holding a subscription until the returned function is called (or the
   * connection closes): no idle timeout, and closed to make room only after every connection
   * without one. Holds count: each `hold()` needs its own release. Releasing twice is harmless.
   */
  hold(): () => void;
  /**
   * Writes one line (without its newline) to the client, e.g. an event for a subscriber. Returns
   * false when the connection is gone; a client that lets more than
   * {@link ControlServerLimits.maxPushBufferBytes} pile up unread is disconnected.
   */
  push(line: string): boolean;
  /** Runs `fn` once when the connection closes (at once when it is already closed). */
  onClose(fn: () => void): void;
}

/** The handler, or a factory making one per connection (to reach its {@link ControlConnection}). */
export type ControlHandlerSource = ControlHandler | ((connection: ControlConnection) => ControlHandler);

/** What the server tracks about one connection for its admission and idle rules. */
interface ConnectionState {
  readonly id: number;
  readonly socket: net.Socket;
  /** Complete requests received. */
  requests: number;
  /** Requests received and not answered yet. */
  pending: number;
  /** Active subscriptions ({@link ControlConnection.hold}). */
  holds: number;
  /** `performance.now()` of the connect. */
  readonly connectedAt: number;
  /** `performance.now()` of the last request received or line written (or of the connect). */
  lastActivity: number;
  closed: boolean;
  readonly closeListeners: Array<() => void>;
}

/**
 * How long a new connection that has not sent a request yet is presumed to be a client whose request
 * is on its way (see the module comment).
 */
export const FRESH_GRACE_MS = 1000;

/** Pending connections the kernel queues for the server (Node's default is 511). */
const LISTEN_BACKLOG = 4096;

/** Eviction class of a connection at `now`: lower is closed first (see the module comment). */
function evictionClass(c: ConnectionState, now: number): number {
  if (c.pending > 0) return 5;
  if (c.holds > 0) return 4;
  if (c.requests > 0) return 2;
  return now - c.connectedAt < FRESH_GRACE_MS ? 3 : 1;
}

/** Serves the control protocol on a Unix socket. */
export class ControlServer {
  private readonly server: net.Server;
  private readonly connections = new Map<net.Socket, ConnectionState>();
  private readonly limits: ControlServerLimits;
  private closing: Promise<void> | null = null;
  private nextId = 1;
  private evictedCount = 0;
  /** The local bus, when the daemon is its hub (the `bus` method; absent: that method is unknown). */
  bus: SocketBusHooks | null = null;

  constructor(
    readonly socketPath: string,
    private readonly handler: ControlHandlerSource,
    private readonly logger: Logger,
    limits: Partial<ControlServerLimits> = {},
  ) {
    this.limits = { ...DEFAULT_CONTROL_LIMITS, ...limits };
    // No `server.maxConnections`: Node would refuse the newest connection, which locks the owner
    // out under a flood; the server makes room itself instead.
    this.server = net.createServer({ allowHalfOpen: true }, (socket) => this.onConnection(socket));
    this.server.on('error', (err) => this.logger.error(`control socket: ${err.message}`));
  }

  /** Connections open now. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Connections closed so far to make room for new ones. */
  get evictions(): number {
    return this.evictedCount;
  }

  /** Starts listening; the socket file is made 0600 before anyone can be told it exists. */
  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once('error', onError);
      // A long accept queue (the kernel caps it at net.core.somaxconn): while a burst of connections
      // waits to be accepted, a client's connect is queued instead of failing with EAGAIN.
      this.server.listen({ path: this.socketPath, backlog: LISTEN_BACKLOG }, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
    // The directory is 0700, so nobody else could reach the socket in between.
    fs.chmodSync(this.socketPath, 0o600);
  }

  /** Stops accepting, closes every connection and removes the socket file; safe to call twice. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = (async () => {
      if (this.server.listening) this.server.close();
      for (const s of this.connections.keys()) s.end();
      // Give replies in flight a moment to be written, then cut whatever is left.
      const until = Date.now() + 1000;
      while (this.connections.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      for (const s of this.connections.keys()) s.destroy();
      fs.rmSync(this.socketPath, { force: true });
    })();
    return this.closing;
  }

  /** Closes the connection that matters least, to make room for a new one. */
  private evictOne(): void {
    let victim: ConnectionState | null = null;
    let victimClass = Infinity;
    const now = performance.now();
    for (const c of this.connections.values()) {
      const k = evictionClass(c, now);
      if (k < victimClass || (k === victimClass && c.lastActivity < victim!.lastActivity)) {
        victim = c;
        victimClass = k;
      }
    }
    if (victim === null) return;
    this.evictedCount++;
    this.logger.debug(
      `control socket: ${this.connections.size} connections open; closing connection ${victim.id} (class ${victimClass}) to make room`,
    );
    this.forget(victim);
    const s = victim.socket;
    if (s.writable) {
      s.write(
        encodeControlResponse(
          controlErrorResponse(
            null,
            'BUSY',
            `more than ${this.limits.maxConnections} connections open; closing this idle one to make room`,
          ),
        ),
      );
    }
    s.destroy();
  }

  /** Drops a connection from the accounting and tells its close listeners; idempotent. */
  private forget(c: ConnectionState): void {
    if (c.closed) return;
    c.closed = true;
    this.connections.delete(c.socket);
    for (const fn of c.closeListeners.splice(0)) {
      try {
        fn();
      } catch (err) {
        this.logger.error(`control connection ${c.id}: close listener failed: ${(err as Error).message}`);
      }
    }
  }

  private onConnection(socket: net.Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    while (this.connections.size >= this.limits.maxConnections) this.evictOne();
    const state: ConnectionState = {
      id: this.nextId++,
      socket,
      requests: 0,
      pending: 0,
      holds: 0,
      connectedAt: performance.now(),
      lastActivity: performance.now(),
      closed: false,
      closeListeners: [],
    };
    this.connections.set(socket, state);
    const limits = this.limits;

    // Idle rule: an activity-based timeout while nothing is pending or held, none otherwise.
    const armIdle = (): void => {
      socket.setTimeout(state.pending === 0 && state.holds === 0 && state.requests > 0 ? limits.idleTimeoutMs : 0);
    };
    socket.on('timeout', () => {
      if (state.pending === 0 && state.holds === 0) socket.destroy();
      else armIdle();
    });
    // First-request rule: a hard deadline, which a trickle of bytes without a newline cannot extend.
    const firstDeadline = setTimeout(() => {
      if (state.requests === 0 && state.holds === 0) socket.destroy();
    }, limits.firstRequestTimeoutMs);
    firstDeadline.unref();

    const connection: ControlConnection = {
      id: state.id,
      hold: () => {
        if (state.closed) return () => undefined;
        state.holds++;
        armIdle();
        let released = false;
        return () => {
          if (released) return;
          released = true;
          state.holds--;
          if (!state.closed) armIdle();
        };
      },
      push: (line) => {
        if (state.closed || socket.destroyed || !socket.writable) return false;
        if (socket.writableLength > limits.maxPushBufferBytes) {
          this.logger.warn(
            `control connection ${state.id}: more than ${limits.maxPushBufferBytes} bytes unread; disconnecting it`,
          );
          socket.destroy();
          return false;
        }
        socket.write(line.endsWith('\n') ? line : `${line}\n`);
        state.lastActivity = performance.now();
        return true;
      },
      onClose: (fn) => {
        if (state.closed) fn();
        else state.closeListeners.push(fn);
      },
    };
    const handler = typeof this.handler === 'function' ? this.handler(connection) : this.handler;

    // The local bus: a connection becomes a peer of the hub on its first `bus` request, and holds
    // the connection (no idle timeout, evicted last) while it consumes or listens.
    let session: SocketBusSession | null = null;
    let release: (() => void) | null = null;
    const busHandler = (params: unknown): unknown => {
      if (!this.bus) throw new ControlError('METHOD_UNKNOWN', 'this daemon is not the hub of a local bus');
      if (!session) {
        const s = this.bus.attach({
          name: `socket client ${state.id}`,
          push: (msg) => connection.push(JSON.stringify({ v: CONTROL_PROTOCOL_VERSION, bus: msg })),
        });
        session = s;
        connection.onClose(() => s.close());
      }
      const result = session.handle(params);
      if (session.longLived && !release) release = connection.hold();
      else if (!session.longLived && release) {
        release();
        release = null;
      }
      return result;
    };

    // A bus notification expects no answer: what the hub refused is said in the log instead (loud
    // once per connection, so that a sender repeating a bad message cannot flood the log).
    let refusals = 0;
    const onRefused = (e: ControlErrorBody): void => {
      const text = `control connection ${state.id}: refused a bus notification (${e.code}): ${e.message}`;
      if (refusals++ === 0) this.logger.warn(text);
      else this.logger.debug(text);
    };

    const splitter = new LineSplitter(limits.maxLineBytes);
    let chain: Promise<void> = Promise.resolve();
    let finished = false; // no more requests will be read
    const finish = (): void => {
      if (finished) return;
      finished = true;
      socket.pause();
      socket.removeAllListeners('data');
      // Close once every reply already queued has been written.
      void chain.then(() => {
        if (!socket.destroyed) socket.end();
      });
    };
    // A client that does not read what it is sent (its replies, the events pushed to it) is not
    // read from until it has: without this, a program that posts events faster than it reads its
    // subscription's would have the daemon buffer all of them (bus notifications get no reply
    // whose write could say so).
    let draining = false;
    /** Bytes of notifications read and not handled yet (see the limit). */
    let queuedNotes = 0;
    const reading = (): void => {
      if (finished) return;
      if (draining || queuedNotes > limits.maxQueuedNotificationBytes) socket.pause();
      else socket.resume();
    };
    const holdBack = (): void => {
      if (finished || draining || !socket.writableNeedDrain) return;
      draining = true;
      reading();
      socket.once('drain', () => {
        draining = false;
        reading();
      });
    };
    const reply = (response: ControlResponse): void => {
      if (socket.destroyed || !socket.writable) return;
      state.lastActivity = performance.now();
      try {
        socket.write(encodeControlResponse(response));
      } catch {
        socket.destroy();
      }
    };
    socket.on('data', (chunk: Buffer) => {
      const lines = splitter.push(chunk);
      for (const line of lines) {
        if (line.trim() === '') continue;
        state.requests++;
        state.lastActivity = performance.now();
        const decoded = decodeControlLine(line);
        // A notification is not a request: no reply is pending, so it counts toward its own limit.
        const note = 'raw' in decoded && isBusNotification(decoded.raw);
        if (note) {
          queuedNotes += line.length;
          if (queuedNotes > limits.maxQueuedNotificationBytes) reading();
        } else {
          if (state.pending >= limits.maxPendingPerConnection) {
            chain = chain.then(() =>
              reply(
                controlErrorResponse(
                  null,
                  'BUSY',
                  `more than ${limits.maxPendingPerConnection} requests pending on one connection; closing`,
                ),
              ),
            );
            finish();
            return;
          }
          state.pending++;
        }
        armIdle();
        chain = chain.then(async () => {
          let response: ControlResponse | null;
          try {
            response =
              'error' in decoded ? decoded.error : await handleDecodedLine(handler, decoded.raw, busHandler, onRefused);
          } catch (err) {
            // handleDecodedLine never rejects; this is a last line of defence.
            const message = (err as Error).message;
            response = controlErrorResponse(null, 'INTERNAL_ERROR', message);
            if (note) onRefused({ code: 'INTERNAL_ERROR', message });
          }
          if (note) {
            queuedNotes -= line.length;
            reading();
          } else {
            state.pending--;
            if (response !== null) reply(response);
          }
          holdBack();
          if (!state.closed) armIdle();
        });
      }
      if (splitter.overflow) {
        chain = chain.then(() =>
          reply(
            controlErrorResponse(
              null,
              'REQUEST_TOO_LARGE',
              `request line longer than ${limits.maxLineBytes} bytes; closing the connection`,
            ),
          ),
        );
        finish();
      }
    });
    socket.on('end', finish);
    socket.on('error', (err) => {
      this.logger.debug(`control connection ${state.id} error: ${err.message}`);
      socket.destroy();
    });
    socket.on('close', () => {
      clearTimeout(firstDeadline);
      this.forget(state);
    });
  }
}
