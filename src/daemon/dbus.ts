/**
 * The daemon on the user's D-Bus session bus: a {@link ControlTransportFactory} that owns the
 * profile's well-known name and exports `org.drover.Daemon1` (names in protocol/dbus-names).
 *
 * ```text
 * busctl --user introspect  org.drover.Daemon.<label> /org/drover/Daemon/<label>
 * busctl --user get-property org.drover.Daemon.<label> /org/drover/Daemon/<label> org.drover.Daemon1 State
 * busctl --user call         org.drover.Daemon.<label> /org/drover/Daemon/<label> org.drover.Daemon1 IncreaseWorkers u 1
 * ```
 *
 * - Properties (read-only): Profile s, Pid u, StartedAt t (ms since the epoch), Supervisor s,
 *   State s, NumberOfWorkers u, RunningProcesses u, Workers a(ssuuuu). A `PropertiesChanged`
 *   signal carries the ones that changed whenever the daemon reports a status change.
 * - Methods mirror the control protocol through the same {@link ControlHandler} as the socket,
 *   with the same validation; a refusal becomes the D-Bus error `org.drover.Error.<Code>`.
 *
 * Session bus only (never the system bus): only the user's own processes can reach it, as with the
 * 0600 socket. No session bus (a headless box) means one log line and nothing else: the socket is
 * the control channel that always works. A bus that goes away later is logged once; the daemon
 * does not reconnect (a new session bus comes with a new login, which restarts the user's units).
 * dbus-next is imported only when a bus is there, so a daemon without one never loads it.
 *
 * @module
 */
import type * as DBusNamespace from 'dbus-next';
import type { MessageBus, interface as DBusInterfaceNS } from 'dbus-next';
import {
  DBUS_INTERFACE,
  DBUS_METHODS,
  DBUS_WORKERS_SIGNATURE,
  CONTROL_METHODS,
  callControlHandler,
  daemonBusName,
  daemonObjectPath,
  dbusErrorName,
  sessionBusAddress,
  validateControlParams,
  type ControlHandler,
  type ControlMethod,
  type ControlResults,
  type DaemonStatus,
} from '../protocol/index.js';
import { errorMessage } from '../errors/index.js';
import type { Logger } from '../logging/index.js';

/**
 * What the D-Bus transport needs from the daemon: a subset of daemon.ts's `ControlTransportContext`
 * (declared here, not imported, so daemon.ts can import this module without a cycle).
 */
export interface DBusTransportContext {
  profile: { name: string };
  handler: ControlHandler;
  logger: Logger;
  status(): DaemonStatus;
  onStatusChange(listener: (status: DaemonStatus) => void): () => void;
}

/** A running D-Bus transport (a daemon.ts `ControlTransport`). */
export interface DBusTransport {
  close(): Promise<void>;
}

/** Starts the D-Bus transport (a daemon.ts `ControlTransportFactory`). */
export type DBusTransportFactory = (ctx: DBusTransportContext) => Promise<DBusTransport>;

/** Options of {@link dbusControlTransport}. */
export interface DBusTransportOptions {
  /** Environment to find the session bus in (default `process.env`). */
  env?: NodeJS.ProcessEnv;
  /** How long connecting and taking the name may take before the daemon goes on without D-Bus (ms). */
  connectTimeoutMs?: number;
}

/** Default bound on connecting to the bus and requesting the name. */
const CONNECT_TIMEOUT_MS = 5000;
/** How long stop waits for the bus to confirm the name's release before disconnecting anyway. */
const RELEASE_TIMEOUT_MS = 1000;

/** The property values the daemon exports, as dbus-next marshals them. */
export interface DBusDaemonProperties {
  Profile: string;
  Pid: number;
  StartedAt: bigint;
  Supervisor: string;
  State: string;
  NumberOfWorkers: number;
  RunningProcesses: number;
  /** `(id, state, pid, running, slots, restarts)` per worker slot; see {@link DBUS_WORKERS_SIGNATURE}. */
  Workers: Array<[string, string, number, number, number, number]>;
}

/** Signature of each exported property. */
export const DBUS_PROPERTY_SIGNATURES: { readonly [K in keyof DBusDaemonProperties]: string } = {
  Profile: 's',
  Pid: 'u',
  StartedAt: 't',
  Supervisor: 's',
  State: 's',
  NumberOfWorkers: 'u',
  RunningProcesses: 'u',
  Workers: DBUS_WORKERS_SIGNATURE,
};

/** The exported property values for a status. */
export function dbusProperties(status: DaemonStatus): DBusDaemonProperties {
  return {
    Profile: status.profile,
    Pid: status.pid,
    StartedAt: BigInt(Math.max(0, Math.trunc(status.startedAt))),
    Supervisor: status.supervisor,
    State: status.state,
    NumberOfWorkers: status.numberOfWorkers,
    RunningProcesses: status.runningProcesses,
    Workers: status.workers.map((w) => [w.id, w.state, w.pid ?? 0, w.running, w.slots ?? 0, w.restarts]),
  };
}

/** The D-Bus out values of a control result, per {@link DBUS_METHODS}. */
function outValues<M extends ControlMethod>(method: M, result: ControlResults[M]): unknown {
  switch (method) {
    case 'status':
    case 'daemonInfo':
    case 'workerInfo':
      return JSON.stringify(result);
    case 'increaseWorkers':
    case 'decreaseWorkers':
      return (result as ControlResults['increaseWorkers']).numberOfWorkers;
    case 'restartWorkers': {
      const r = result as ControlResults['restartWorkers'];
      return [r.numberOfWorkers, r.restarted];
    }
    default:
      return undefined;
  }
}

type DBusModule = typeof DBusNamespace;

/**
 * Builds the exported interface class. dbus-next is loaded lazily, so the class is made at run time:
 * a getter per property and a method per control method, declared with `configureMembers`.
 */
function interfaceClass(
  dbus: DBusModule,
): new (status: () => DaemonStatus, handler: ControlHandler) => DBusInterfaceNS.Interface {
  class DaemonInterface extends dbus.interface.Interface {
    constructor(
      readonly currentStatus: () => DaemonStatus,
      readonly handler: ControlHandler,
    ) {
      super(DBUS_INTERFACE);
    }
  }
  const proto = DaemonInterface.prototype as unknown as Record<string, unknown>;
  for (const key of Object.keys(DBUS_PROPERTY_SIGNATURES) as Array<keyof DBusDaemonProperties>) {
    Object.defineProperty(proto, key, {
      get(this: DaemonInterface) {
        return dbusProperties(this.currentStatus())[key];
      },
    });
  }
  for (const method of CONTROL_METHODS) {
    const spec = DBUS_METHODS[method];
    proto[spec.member] = async function (this: DaemonInterface, ...args: unknown[]): Promise<unknown> {
      let params;
      try {
        params = validateControlParams(method, spec.inSignature === 'u' ? { n: args[0] } : {});
      } catch (err) {
        throw new dbus.DBusError(dbusErrorName((err as { code: string }).code), errorMessage(err));
      }
      const outcome = await callControlHandler(this.handler, method, params);
      if (!outcome.ok) throw new dbus.DBusError(dbusErrorName(outcome.error.code), outcome.error.message);
      return outValues(method, outcome.result);
    };
  }
  DaemonInterface.configureMembers({
    properties: Object.fromEntries(
      Object.entries(DBUS_PROPERTY_SIGNATURES).map(([k, signature]) => [k, { signature, access: 'read' as const }]),
    ),
    methods: Object.fromEntries(
      CONTROL_METHODS.map((m) => [
        DBUS_METHODS[m].member,
        { inSignature: DBUS_METHODS[m].inSignature, outSignature: DBUS_METHODS[m].outSignature },
      ]),
    ),
  });
  return DaemonInterface;
}

/** Rejects after `ms` with an error saying what took too long. */
function timeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

/** Resolves once `bus` has said Hello; rejects on its first connection error. */
function connected(bus: MessageBus): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: unknown): void => {
      bus.off('connect', onConnect);
      reject(err instanceof Error ? err : new Error(String(err)));
    };
    const onConnect = (): void => {
      bus.off('error', onError);
      resolve();
    };
    bus.once('connect', onConnect);
    bus.once('error', onError);
  });
}

/** The underlying connection's emitter (dbus-next does not forward its `end`). */
function connectionOf(bus: MessageBus): NodeJS.EventEmitter | null {
  const conn = (bus as unknown as { _connection?: NodeJS.EventEmitter })._connection;
  return conn && typeof conn.on === 'function' ? conn : null;
}

/**
 * A control transport (`ControlTransportFactory`) on the user's D-Bus session bus (see the module comment). Resolves with a
 * no-op transport when there is no session bus or the name is taken; rejects (so the daemon logs
 * it and goes on with the socket) when the bus cannot be reached.
 */
export function dbusControlTransport(options: DBusTransportOptions = {}): DBusTransportFactory {
  return async (ctx: DBusTransportContext): Promise<DBusTransport> => {
    const env = options.env ?? process.env;
    const logger = ctx.logger.child('dbus');
    const found = sessionBusAddress(env);
    const name = daemonBusName(ctx.profile.name);
    const objectPath = daemonObjectPath(ctx.profile.name);
    if (found === null) {
      logger.info(
        env.DBUS_SESSION_BUS_ADDRESS
          ? `no usable D-Bus session bus in DBUS_SESSION_BUS_ADDRESS=${env.DBUS_SESSION_BUS_ADDRESS} ` +
              `(only unix:path= and tcp: addresses are supported); ` +
              `not exporting ${name} (the socket answers)`
          : `no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS unset, no $XDG_RUNTIME_DIR/bus); ` +
              `not exporting ${name} (the socket answers)`,
      );
      return { close: async () => undefined };
    }
    const dbus = (await import('dbus-next')).default as DBusModule;
    const bus = dbus.sessionBus({ busAddress: found.address });
    // From here on a listener is always attached: an 'error' event without one would crash the daemon.
    // `live` once the object is exported (errors before that fail the start instead), until close.
    let live = false;
    let lost = false;
    const onLost = (why: string): void => {
      if (!live || lost) return;
      lost = true;
      logger.warn(
        `lost the D-Bus session bus (${why}); ${name} is gone until the daemon restarts (the socket answers)`,
      );
    };
    bus.on('error', (err: unknown) => onLost(errorMessage(err)));
    connectionOf(bus)?.on('end', () => onLost('the bus closed the connection'));
    const connectTimeout = options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
    let reply: number;
    try {
      await timeout(connected(bus), connectTimeout, `connecting to the session bus at ${found.shown}`);
      reply = await timeout(
        bus.requestName(name, dbus.NameFlag.DO_NOT_QUEUE),
        connectTimeout,
        `requesting the name ${name}`,
      );
    } catch (err) {
      bus.disconnect();
      throw new Error(`D-Bus session bus at ${found.shown}: ${errorMessage(err)}`, { cause: err });
    }
    if (reply !== dbus.RequestNameReply.PRIMARY_OWNER && reply !== dbus.RequestNameReply.ALREADY_OWNER) {
      bus.disconnect();
      logger.warn(
        `the D-Bus name ${name} is owned by another process (a daemon of a profile of the same name under ` +
          `another DROVER_HOME?); not exporting it (the socket answers)`,
      );
      return { close: async () => undefined };
    }
    const Iface = interfaceClass(dbus);
    const iface = new Iface(ctx.status, ctx.handler);
    bus.export(objectPath, iface);
    live = true;
    logger.info(`on the D-Bus session bus (${found.shown}) as ${name} ${objectPath} (${DBUS_INTERFACE})`);

    let last = dbusProperties(ctx.status());
    const unsubscribe = ctx.onStatusChange((status) => {
      if (!live || lost) return;
      const now = dbusProperties(status);
      const changed: Partial<DBusDaemonProperties> = {};
      for (const key of Object.keys(now) as Array<keyof DBusDaemonProperties>) {
        if (!sameValue(now[key], last[key])) (changed as Record<string, unknown>)[key] = now[key];
      }
      last = now;
      if (Object.keys(changed).length === 0) return;
      try {
        dbus.interface.Interface.emitPropertiesChanged(iface, changed, []);
      } catch (err) {
        onLost(errorMessage(err));
      }
    });

    let closing: Promise<void> | null = null;
    return {
      close(): Promise<void> {
        closing ??= (async () => {
          unsubscribe();
          live = false;
          if (!lost) {
            try {
              await timeout(bus.releaseName(name), RELEASE_TIMEOUT_MS, `releasing ${name}`);
            } catch (err) {
              logger.debug(`releasing ${name}: ${errorMessage(err)}`);
            }
          }
          try {
            bus.unexport(objectPath, iface);
          } catch {
            // Already gone with the connection.
          }
          bus.disconnect();
          logger.debug(`released ${name} and left the session bus`);
        })();
        return closing;
      },
    };
  };
}

function sameValue(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => sameValue(x, b[i]));
  return a === b;
}

/** The transports a daemon starts besides its socket when none are given: D-Bus on the session bus. */
export function defaultControlTransports(env: NodeJS.ProcessEnv = process.env): DBusTransportFactory[] {
  return [dbusControlTransport({ env })];
}
