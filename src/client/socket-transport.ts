/**
 * The Unix socket transport: one connection per request, newline-delimited JSON.
 *
 * A connection refused, a missing socket or a runtime directory that is not there (or is not a
 * directory) means no daemon: that fails at once with `DaemonNotRunningException` (AiiDA waits the
 * whole timeout here). A daemon that accepts but does not answer (stopped, hung) fails with
 * `DaemonTimeoutException` after the timeout. A connection the daemon's side resets or closes
 * before answering is a `DaemonException` marked as dropped ({@link isConnectionDropped}): what
 * that means (a daemon on its way out, or one that refused the connection) is for the caller, who
 * can look at the daemon process, to say.
 *
 * @module
 */
import net from 'node:net';
import { DaemonException, DaemonNotRunningException, DaemonTimeoutException } from '../errors/index.js';
import {
  LineSplitter,
  encodeControlRequest,
  parseControlResponse,
  parseControlResult,
  type ControlMethod,
  type ControlParams,
  type ControlResults,
} from '../protocol/control.js';
import type { Transport } from './transport.js';

/** Largest reply accepted (a status of many workers with their last output lines). */
const MAX_REPLY_BYTES = 32 * 1024 * 1024;
/**
 * Errors of connect() that mean nobody listens on the socket: no socket file, nobody behind it, not
 * a socket, or a runtime directory that is missing or not a directory (a daemon could not have
 * created its socket there; its own start failure says why).
 */
const NOT_RUNNING_CODES = new Set(['ENOENT', 'ECONNREFUSED', 'ENOTSOCK', 'ENOTDIR']);

/** Errors on an open connection that mean the other side went away. */
const DROPPED_CODES = new Set(['ECONNRESET', 'EPIPE']);

/** Ids of requests: one connection carries one request, so a counter is unique enough. */
let nextId = 0;

/** Errors of requests whose connection the daemon's side dropped before answering. */
const dropped = new WeakSet<Error>();

/**
 * True when `err` is a request whose connection was reset or closed by the daemon's side before it
 * answered: the listener went away with the request still queued (a daemon that stops or fails
 * right after it started listening), or the daemon process ended. The daemon may or may not have
 * seen the request.
 */
export function isConnectionDropped(err: unknown): boolean {
  return err instanceof Error && dropped.has(err);
}

/** Sends control requests over the daemon's Unix socket. */
export class SocketTransport implements Transport {
  readonly kind = 'socket' as const;

  constructor(
    readonly socketPath: string,
    private readonly profileName: string,
  ) {}

  request<M extends ControlMethod>(method: M, params: ControlParams[M], timeoutMs: number): Promise<ControlResults[M]> {
    const id = `${process.pid}-${++nextId}`;
    const who = `the daemon of profile '${this.profileName}'`;
    return new Promise<ControlResults[M]>((resolve, reject) => {
      let settled = false;
      let connected = false;
      const socket = net.createConnection(this.socketPath);
      const done = (err: Error | null, value?: ControlResults[M]): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        if (err) reject(err);
        else resolve(value as ControlResults[M]);
      };
      const timer = setTimeout(() => {
        done(
          new DaemonTimeoutException(
            `${who} did not answer '${method}' within ${timeoutMs / 1000}s` +
              (connected ? ' (it accepted the connection but is not responding)' : ''),
          ),
        );
      }, timeoutMs);
      const splitter = new LineSplitter(MAX_REPLY_BYTES);
      socket.on('connect', () => {
        connected = true;
        socket.write(encodeControlRequest(id, method, params));
      });
      socket.on('data', (chunk: Buffer) => {
        for (const line of splitter.push(chunk)) {
          let response;
          try {
            response = parseControlResponse(line);
          } catch (err) {
            done(new DaemonException(`${who} sent an invalid reply: ${(err as Error).message}`, { cause: err }));
            return;
          }
          if (response.id !== id && response.id !== null) continue;
          if (!response.ok) {
            done(new DaemonException(`${who} refused '${method}': ${response.error.message} (${response.error.code})`));
            return;
          }
          try {
            done(null, parseControlResult(method, response.result));
          } catch (err) {
            done(new DaemonException(`${who} sent an invalid reply: ${(err as Error).message}`, { cause: err }));
          }
          return;
        }
        if (splitter.overflow) done(new DaemonException(`${who} sent a reply larger than ${MAX_REPLY_BYTES} bytes`));
      });
      socket.on('error', (err: NodeJS.ErrnoException) => {
        if (!connected && err.code !== undefined && NOT_RUNNING_CODES.has(err.code)) {
          done(
            new DaemonNotRunningException(`${who} is not running (nothing listens on ${this.socketPath})`, {
              cause: err,
            }),
          );
        } else if (!connected && err.code === 'EACCES') {
          done(
            new DaemonException(`permission denied on ${this.socketPath}: it belongs to another user`, { cause: err }),
          );
        } else {
          const e = new DaemonException(`connection to ${who} failed: ${err.message}`, { cause: err });
          if (err.code !== undefined && DROPPED_CODES.has(err.code)) dropped.add(e);
          done(e);
        }
      });
      socket.on('close', () => {
        const e = new DaemonException(`${who} closed the connection without answering '${method}'`);
        dropped.add(e);
        done(e);
      });
    });
  }
}
