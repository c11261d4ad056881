/**
 * The state of a profile at a glance (`drover status`): which configuration file and profile,
 * whether its store and its broker are reachable (checked in parallel, each bounded by the
 * profile's `daemon.timeout`), and whether its daemon runs.
 *
 * A check never throws: what went wrong is reported in the `error` field, so one unreachable
 * service does not hide the state of the others. Connections opened for a check are closed,
 * including ones that only succeed after the check gave up on them.
 *
 * @module
 */
import { openStore, storeMismatchMessage } from '../store/index.js';
import {
  describeStorage,
  type BrokerSettings,
  type Profile,
  type RabbitBrokerSettings,
  type StorageSettings,
} from '../config/index.js';
import { errorMessage } from '../errors/index.js';

/** Whether the profile's store answers, and its versions. */
export interface StoreStatus {
  backend: 'sqlite' | 'postgres';
  /** Where the store is (`sqlite:/path` or the PostgreSQL URL), password hidden. */
  location: string;
  reachable: boolean;
  /** Schema version after migrations (null when unreachable). */
  schemaVersion: number | null;
  /** Version of the database server or library (null when unreachable). */
  serverVersion: string | null;
  /** Why it is not reachable (null when it is). */
  error: string | null;
  /** Uuid of the profile the store records it belongs to (null: none recorded yet, or unreachable). */
  profileUuid: string | null;
  /**
   * When the store belongs to another profile: what is wrong and what to do (daemons and workers of
   * this profile refuse to consume from it); null otherwise.
   */
  profileMismatch: string | null;
}

/**
 * The profile's message bus: for RabbitMQ, whether it answers and its version; the local bus is
 * the daemon itself, so there is nothing to reach (whether the daemon runs is {@link DaemonStatus}).
 */
export type BrokerStatus = LocalBrokerStatus | RabbitBrokerStatus;

/** The local bus (see {@link BrokerStatus}). */
export interface LocalBrokerStatus {
  kind: 'local';
  /** `local (the daemon)`. */
  url: string;
  /** Always true: the local bus needs no server. */
  reachable: true;
}

/** Whether the profile's RabbitMQ answers, and its version. */
export interface RabbitBrokerStatus {
  kind: 'rabbitmq';
  /** The broker URL, password hidden. */
  url: string;
  host: string;
  port: number;
  vhost: string;
  reachable: boolean;
  /** Server product from the AMQP handshake, e.g. `RabbitMQ` (null when unreachable). */
  product: string | null;
  /** Server version from the AMQP handshake, e.g. `3.12.1` (null when unreachable). */
  serverVersion: string | null;
  /** Why it is not reachable (null when it is). */
  error: string | null;
}

/** Whether the profile's daemon runs. */
export interface DaemonStatus {
  running: boolean;
  /** PID of the daemon when running. */
  pid: number | null;
  /** One line for people, e.g. `not running` or `running, 2 workers`. */
  summary: string;
}

/** What `drover status` reports. */
export interface ProfileStatus {
  configFile: string;
  profile: string;
  uuid: string;
  store: StoreStatus;
  broker: BrokerStatus;
  daemon: DaemonStatus;
  /** True when the store and the broker are both reachable. */
  reachable: boolean;
  /** True when they are reachable and the store belongs to this profile (the exit code 0 of `drover status`). */
  ok: boolean;
}

/** Options of {@link getStatus}. */
export interface StatusOptions {
  /** Bound of each check in milliseconds (default: the profile's `daemon.timeout`). */
  timeoutMs?: number;
  /**
   * Reports the daemon's state (default: asks the daemon through the DaemonClient).
   */
  daemonStatus?: (profile: Profile) => Promise<DaemonStatus>;
}

class CheckTimeout extends Error {}

/**
 * Runs `start` and waits at most `ms` for it. When it settles later, `cleanup` gets its result,
 * so a connection opened after we stopped waiting is still closed.
 */
async function bounded<T>(start: Promise<T>, ms: number, what: string, cleanup: (v: T) => unknown): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timedOut = true;
      reject(new CheckTimeout(`${what} did not answer within ${ms / 1000} s (daemon.timeout)`));
    }, ms);
  });
  start.then(
    (v) => {
      if (timedOut) void Promise.resolve(cleanup(v)).catch(() => undefined);
    },
    () => undefined,
  );
  try {
    return await Promise.race([start, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Opens the store, reads its versions and the profile it belongs to, and closes it again. With
 * `profile`, a store that belongs to another profile is reported in `profileMismatch` (nothing is
 * recorded: status only looks).
 */
export async function checkStore(
  storage: StorageSettings,
  timeoutMs: number,
  profile?: { name: string; uuid: string },
): Promise<StoreStatus> {
  const status: StoreStatus = {
    backend: storage.backend,
    location: describeStorage(storage),
    reachable: false,
    schemaVersion: null,
    serverVersion: null,
    error: null,
    profileUuid: null,
    profileMismatch: null,
  };
  try {
    const store = await bounded(openStore(storage), timeoutMs, 'the store', (s) => s.close());
    try {
      const [schema, server, owner] = await bounded(
        Promise.all([store.schemaVersion(), store.serverVersion(), store.storeProfile()]),
        timeoutMs,
        'the store',
        () => undefined,
      );
      Object.assign(status, { reachable: true, schemaVersion: schema, serverVersion: server });
      status.profileUuid = owner?.uuid ?? null;
      if (profile && owner && owner.uuid.toLowerCase() !== profile.uuid.toLowerCase()) {
        status.profileMismatch = storeMismatchMessage(storage, profile, owner);
      }
    } finally {
      await store.close().catch(() => undefined);
    }
  } catch (err) {
    status.error = errorMessage(err);
  }
  return status;
}

/**
 * For RabbitMQ, opens an AMQP connection (no recovery: one attempt), reads the server's version and
 * closes it. The local bus has nothing to check.
 */
export async function checkBroker(
  broker: BrokerSettings,
  timeoutMs: number,
  heartbeatSeconds?: number,
): Promise<BrokerStatus> {
  if (broker.kind === 'local') return { kind: 'local', url: broker.displayUrl, reachable: true };
  return checkRabbit(broker, timeoutMs, heartbeatSeconds);
}

async function checkRabbit(
  broker: RabbitBrokerSettings,
  timeoutMs: number,
  heartbeatSeconds: number | undefined,
): Promise<RabbitBrokerStatus> {
  const status: RabbitBrokerStatus = {
    kind: 'rabbitmq',
    url: broker.displayUrl,
    host: broker.host,
    port: broker.port,
    vhost: broker.vhost,
    reachable: false,
    product: null,
    serverVersion: null,
    error: null,
  };
  try {
    const [{ default: amqp }, { urlWithHeartbeat }] = await Promise.all([
      import('amqplib'),
      import('../broker/rabbitmq/connection.js'),
    ]);
    const conn = await bounded(
      amqp.connect(urlWithHeartbeat(broker.url, heartbeatSeconds), {
        noDelay: true,
        timeout: timeoutMs,
        clientProperties: { connection_name: 'drover status' },
      }),
      timeoutMs,
      `the broker at ${broker.host}:${broker.port}`,
      (c) => c.close(),
    );
    // Errors after the handshake (e.g. the server closing on us) must not crash the process.
    conn.on('error', () => undefined);
    try {
      const props = conn.connection.serverProperties;
      status.reachable = true;
      status.product = typeof props.product === 'string' ? props.product : null;
      status.serverVersion = typeof props.version === 'string' ? props.version : null;
    } finally {
      await conn.close().catch(() => undefined);
    }
  } catch (err) {
    status.error = errorMessage(err).replace(broker.url, broker.displayUrl);
  }
  return status;
}

/**
 * Asks the profile's daemon through the DaemonClient (cheap PID check first, then the socket),
 * waiting at most `timeoutSeconds` (default: the profile's `daemon.timeout`).
 */
export async function daemonStatusFromClient(profile: Profile, timeoutSeconds?: number): Promise<DaemonStatus> {
  // The module itself, not the client index (log reader, service manager): a lazy import, kept small.
  const { DaemonClient } = await import('../client/daemon-client.js');
  const client = new DaemonClient(profile);
  if (!client.isDaemonRunning) return { running: false, pid: null, summary: 'not running' };
  const s = await client.getStatus({ timeout: timeoutSeconds });
  const crash = s.workers.filter((w) => w.state === 'crash-looping').length;
  return {
    running: true,
    pid: s.pid,
    summary:
      `running (pid ${s.pid}, ${s.state}, supervisor ${s.supervisor}): ${s.numberOfWorkers} worker(s), ` +
      `${s.runningProcesses} process(es) running` +
      (crash > 0 ? `; ${crash} worker(s) crash-looping` : ''),
  };
}

/** Checks the store and the broker of `profile` in parallel, and asks for the daemon's state. */
export async function getStatus(profile: Profile, opts: StatusOptions = {}): Promise<ProfileStatus> {
  const timeoutMs = opts.timeoutMs ?? Math.round(profile.options['daemon.timeout'] * 1000);
  const [store, broker, daemon] = await Promise.all([
    checkStore(profile.storage, timeoutMs, { name: profile.name, uuid: profile.uuid }),
    checkBroker(profile.broker, timeoutMs, profile.options['broker.heartbeat_seconds']),
    (opts.daemonStatus ?? ((p: Profile) => daemonStatusFromClient(p, timeoutMs / 1000)))(profile).catch(
      (err: unknown): DaemonStatus => ({
        running: false,
        pid: null,
        summary: `unknown (${errorMessage(err)})`,
      }),
    ),
  ]);
  return {
    configFile: profile.configFile,
    profile: profile.name,
    uuid: profile.uuid,
    store,
    broker,
    daemon,
    reachable: store.reachable && broker.reachable,
    ok: store.reachable && broker.reachable && store.profileMismatch === null,
  };
}
