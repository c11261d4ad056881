/**
 * The D-Bus transport: sends each control request as a method call to the daemon's well-known name
 * on the user's session bus (names in protocol/dbus-names), on a connection of its own that is
 * closed after the reply, so a CLI process never lingers on the bus.
 *
 * Same contract as the socket transport:
 * - `DaemonNotRunningException` at once when the daemon's name has no owner (the bus answers
 *   `ServiceUnknown` / `NameHasNoOwner` itself; the call is sent with NO_AUTO_START);
 * - `DaemonTimeoutException` when no reply arrives within the timeout (connecting included);
 * - `DaemonException` otherwise: no session bus, a bus that cannot be reached, a refusal
 *   (`org.drover.Error.<Code>`, reported with its control error code), an invalid reply.
 *
 * dbus-next is imported on the first request, so clients that use the socket never load it.
 *
 * @module
 */
import type * as DBusNamespace from 'dbus-next';
import type { DBusError, Message as DBusMessage, MessageBus } from 'dbus-next';
import { DaemonException, DaemonNotRunningException, DaemonTimeoutException, errorMessage } from '../errors/index.js';
import {
  DBUS_INTERFACE,
  DBUS_METHODS,
  DBUS_NO_OWNER_ERRORS,
  controlCodeOfDBusError,
  daemonBusName,
  daemonObjectPath,
  parseControlResult,
  sessionBusAddress,
  type ControlMethod,
  type ControlParams,
  type ControlResults,
  type SessionBusAddress,
} from '../protocol/index.js';
import type { Transport } from './transport.js';

type DBusModule = typeof DBusNamespace;

let loaded: Promise<DBusModule> | null = null;
/** dbus-next, loaded once, on first use. */
function loadDBus(): Promise<DBusModule> {
  loaded ??= import('dbus-next').then((m) => m.default as DBusModule);
  return loaded;
}

/** Errors of the bus that mean the daemon owns its name but did not reply in time. */
const DBUS_NO_REPLY_ERRORS: readonly string[] = [
  'org.freedesktop.DBus.Error.NoReply',
  'org.freedesktop.DBus.Error.Timeout',
];

function isDBusError(err: unknown): err is DBusError {
  return err instanceof Error && err.name === 'DBusError' && typeof (err as { type?: unknown }).type === 'string';
}

/** Sends control requests to the daemon's object on the session bus. */
export class DBusTransport implements Transport {
  readonly kind = 'dbus' as const;
  /** The daemon's well-known name. */
  readonly busName: string;
  /** The daemon's object path. */
  readonly objectPath: string;

  constructor(
    private readonly profileName: string,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {
    this.busName = daemonBusName(profileName);
    this.objectPath = daemonObjectPath(profileName);
  }

  async request<M extends ControlMethod>(
    method: M,
    params: ControlParams[M],
    timeoutMs: number,
  ): Promise<ControlResults[M]> {
    const who = `the daemon of profile '${this.profileName}'`;
    const found = sessionBusAddress(this.env);
    if (found === null) {
      throw new DaemonException(
        `cannot reach ${who} over D-Bus: no usable session bus (set DBUS_SESSION_BUS_ADDRESS to a unix:path= ` +
          `address, or have $XDG_RUNTIME_DIR/bus); use transport 'socket'`,
      );
    }
    const dbus = await loadDBus();
    const bus = dbus.sessionBus({ busAddress: found.address });
    let reply: DBusMessage | null;
    try {
      reply = await this.call(dbus, bus, found, method, params, timeoutMs, who);
    } finally {
      // Closed whatever happened: an open bus connection would keep a CLI process alive.
      bus.disconnect();
    }
    const body = (reply?.body ?? []) as unknown[];
    let raw: unknown;
    try {
      switch (method) {
        case 'status':
        case 'daemonInfo':
        case 'workerInfo':
          raw = JSON.parse(String(body[0]));
          break;
        case 'increaseWorkers':
        case 'decreaseWorkers':
          raw = { numberOfWorkers: body[0] };
          break;
        case 'restartWorkers':
          raw = { numberOfWorkers: body[0], restarted: body[1] };
          break;
        default:
          raw = { stopping: true };
      }
      return parseControlResult(method, raw);
    } catch (err) {
      throw new DaemonException(`${who} sent an invalid reply over D-Bus: ${errorMessage(err)}`, { cause: err });
    }
  }

  /** Connects, calls, and maps every failure onto the transport contract. */
  private call<M extends ControlMethod>(
    dbus: DBusModule,
    bus: MessageBus,
    found: SessionBusAddress,
    method: M,
    params: ControlParams[M],
    timeoutMs: number,
    who: string,
  ): Promise<DBusMessage | null> {
    const spec = DBUS_METHODS[method];
    return new Promise<DBusMessage | null>((resolve, reject) => {
      let settled = false;
      let connected = false;
      const done = (err: Error | null, value?: DBusMessage | null): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve(value ?? null);
      };
      const timer = setTimeout(() => {
        done(
          new DaemonTimeoutException(
            connected
              ? `${who} did not answer '${method}' over D-Bus within ${timeoutMs / 1000}s`
              : `the D-Bus session bus at ${found.shown} did not accept a connection within ${timeoutMs / 1000}s`,
          ),
        );
      }, timeoutMs);
      // Stays attached after the call: an 'error' event without a listener would throw.
      bus.on('error', (err: unknown) => {
        done(
          new DaemonException(
            connected
              ? `the D-Bus connection failed while calling ${who}: ${errorMessage(err)}`
              : `cannot connect to the D-Bus session bus at ${found.shown}: ${errorMessage(err)}`,
            { cause: err },
          ),
        );
      });
      bus.once('connect', () => {
        connected = true;
      });
      const message = new dbus.Message({
        destination: this.busName,
        path: this.objectPath,
        interface: DBUS_INTERFACE,
        member: spec.member,
        signature: spec.inSignature,
        body: spec.inSignature === 'u' ? [(params as { n: number }).n] : [],
        // A missing daemon is an error at once, never a bus-activation attempt.
        flags: dbus.MessageFlag.NO_AUTO_START,
      });
      // Queued by dbus-next until the connection is up.
      bus.call(message).then(
        (reply) => done(null, reply),
        (err: unknown) => done(this.mapError(err, method, who, found)),
      );
    });
  }

  private mapError(err: unknown, method: ControlMethod, who: string, found: SessionBusAddress): Error {
    if (!isDBusError(err)) return new DaemonException(`calling ${who} over D-Bus failed: ${errorMessage(err)}`);
    if (DBUS_NO_OWNER_ERRORS.includes(err.type)) {
      return new DaemonNotRunningException(
        `${who} is not running (nobody owns ${this.busName} on the session bus at ${found.shown})`,
        { cause: err },
      );
    }
    if (DBUS_NO_REPLY_ERRORS.includes(err.type)) {
      // The bus gave up waiting for the daemon (its own reply timeout, 25 s by default).
      return new DaemonTimeoutException(`${who} did not answer '${method}' over D-Bus: ${err.text}`, { cause: err });
    }
    const code = controlCodeOfDBusError(err.type);
    if (code !== null) return new DaemonException(`${who} refused '${method}': ${err.text} (${code})`, { cause: err });
    return new DaemonException(`${who} failed '${method}' over D-Bus: ${err.type}: ${err.text}`, { cause: err });
  }
}
