/**
 * The control socket: newline-delimited JSON requests (see protocol/control) on a Unix socket in
 * the profile's private runtime directory, answered by a {@link ControlHandler}.
 *
 * Hostile or broken clients must never hurt the daemon, so every resource a connection can use is
 * bounded: line length (an oversized line gets an error reply and the connection is closed, since
 * its framing is lost), requests queued per connection, connections at once, and idle time.
 * Requests on one connection are answered in order; a client that half-closes its side still gets
 * the replies to what it sent, then the daemon closes.
 *
 * @module
 */
import fs from 'node:fs';
import net from 'node:net';
import type { Logger } from '../logging/index.js';
import {
  CONTROL_PROTOCOL_VERSION,
  LineSplitter,
  MAX_CONTROL_LINE_BYTES,
  controlErrorResponse,
  encodeControlResponse,
  handleControlLine,
  type BusHubMessage,
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
  /** True while the connection holds a subscription or consumes: it is exempt from the idle timeout. */
  readonly longLived: boolean;
  /** The connection closed. */
  close(): void;
}

/** The local bus on the control socket (local profiles only). */
export interface SocketBusHooks {
  /** Called on a connection's first `bus` request. */
  attach(peer: SocketBusPeer): SocketBusSession;
}

/** Pushed output a bus peer may leave unread before it is cut off (a subscriber that stopped reading). */
const MAX_PUSH_BACKLOG_BYTES = 16 * 1024 * 1024;

/** Limits of the control server. */
export interface ControlServerLimits {
  maxLineBytes: number;
  /** Requests waiting for their reply on one connection. */
  maxPendingPerConnection: number;
  maxConnections: number;
  /** A connection with no traffic for this long is closed. */
  idleTimeoutMs: number;
}

/** Default limits. */
export const DEFAULT_CONTROL_LIMITS: ControlServerLimits = {
  maxLineBytes: MAX_CONTROL_LINE_BYTES,
  maxPendingPerConnection: 64,
  maxConnections: 256,
  idleTimeoutMs: 60_000,
};

/** Serves the control protocol on a Unix socket. */
export class ControlServer {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly limits: ControlServerLimits;
  private closing: Promise<void> | null = null;

  private nextPeer = 1;
  /** The local bus, when the daemon is its hub. */
  bus: SocketBusHooks | null = null;

  constructor(
    readonly socketPath: string,
    private readonly handler: ControlHandler,
    private readonly logger: Logger,
    limits: Partial<ControlServerLimits> = {},
  ) {
    this.limits = { ...DEFAULT_CONTROL_LIMITS, ...limits };
    this.server = net.createServer({ allowHalfOpen: true }, (socket) => this.onConnection(socket));
    this.server.maxConnections = this.limits.maxConnections;
    this.server.on('error', (err) => this.logger.error(`control socket: ${err.message}`));
  }

  /** Starts listening; the socket file is made 0600 before anyone can be told it exists. */
  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once('error', onError);
      this.server.listen(this.socketPath, () => {
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
      for (const s of this.sockets) s.end();
      // Give replies in flight a moment to be written, then cut whatever is left.
      const until = Date.now() + 1000;
      while (this.sockets.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      for (const s of this.sockets) s.destroy();
      fs.rmSync(this.socketPath, { force: true });
    })();
    return this.closing;
  }

  private onConnection(socket: net.Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    const splitter = new LineSplitter(this.limits.maxLineBytes);
    let chain: Promise<void> = Promise.resolve();
    let pending = 0;
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
    const reply = (response: ControlResponse): void => {
      if (socket.destroyed || !socket.writable) return;
      try {
        if (!socket.write(encodeControlResponse(response)) && !finished) {
          // The client does not read its replies: stop reading its requests until it does.
          socket.pause();
          socket.once('drain', () => {
            if (!finished) socket.resume();
          });
        }
      } catch {
        socket.destroy();
      }
    };
    let session: SocketBusSession | null = null;
    const busHandler = (params: unknown): unknown => {
      if (!this.bus)
        throw Object.assign(new Error('this daemon is not the hub of a local bus'), { code: 'METHOD_UNKNOWN' });
      if (!session) {
        const name = `socket client ${this.nextPeer++}`;
        session = this.bus.attach({
          name,
          push: (msg) => {
            if (socket.destroyed || !socket.writable) return false;
            if (socket.writableLength > MAX_PUSH_BACKLOG_BYTES) {
              this.logger.warn(`${name} does not read what the daemon pushes; closing it`);
              socket.destroy();
              return false;
            }
            socket.write(JSON.stringify({ v: CONTROL_PROTOCOL_VERSION, bus: msg }) + '\n');
            return true;
          },
        });
      }
      const result = session.handle(params);
      // A subscriber waits for pushes without sending anything: no idle timeout while it listens.
      socket.setTimeout(session.longLived ? 0 : this.limits.idleTimeoutMs);
      return result;
    };
    socket.setTimeout(this.limits.idleTimeoutMs, () => socket.destroy());
    socket.on('data', (chunk: Buffer) => {
      const lines = splitter.push(chunk);
      for (const line of lines) {
        if (line.trim() === '') continue;
        if (pending >= this.limits.maxPendingPerConnection) {
          chain = chain.then(() =>
            reply(
              controlErrorResponse(
                null,
                'BUSY',
                `more than ${this.limits.maxPendingPerConnection} requests pending on one connection; closing`,
              ),
            ),
          );
          finish();
          return;
        }
        pending++;
        chain = chain.then(async () => {
          let response: ControlResponse;
          try {
            response = await handleControlLine(this.handler, line, busHandler);
          } catch (err) {
            // handleControlLine never rejects; this is a last line of defence.
            response = controlErrorResponse(null, 'INTERNAL_ERROR', (err as Error).message);
          }
          pending--;
          reply(response);
        });
      }
      if (splitter.overflow) {
        chain = chain.then(() =>
          reply(
            controlErrorResponse(
              null,
              'REQUEST_TOO_LARGE',
              `request line longer than ${this.limits.maxLineBytes} bytes; closing the connection`,
            ),
          ),
        );
        finish();
      }
    });
    socket.on('end', finish);
    socket.on('error', (err) => {
      this.logger.debug(`control connection error: ${err.message}`);
      socket.destroy();
    });
    socket.on('close', () => {
      this.sockets.delete(socket);
      session?.close();
    });
  }
}
