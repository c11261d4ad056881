/**
 * The message bus of a profile ({@link MessageBus}) and its two adapters. {@link openBus} is the one
 * way in: it opens the adapter the profile's `broker.kind` names, loading amqplib only for
 * `rabbitmq` profiles.
 *
 * @module
 */
import type { Profile } from '../config/index.js';
import { logDir, runtimeDir } from '../config/index.js';
import type { Logger } from '../logging/index.js';
import { silentLogger } from '../logging/index.js';
import { daemonFilePaths } from '../protocol/index.js';
import type { MessageBus } from './bus.js';
import { LocalBus } from './local/local-bus.js';
import { IpcLink, SocketLink, type IpcChannel } from './local/link.js';

export * from './bus.js';
export { LocalHub, HUB_POLL_MS, type HubPeer, type HubOutbox, type HubStats } from './local/hub.js';
export { LocalBus } from './local/local-bus.js';
export { IpcLink, SocketLink, type BusLink, type IpcChannel } from './local/link.js';

/**
 * How long opening the local bus waits for its socket to connect. A Unix socket connects or is
 * refused at once; only a daemon too busy to accept (a full backlog) makes this wait, and then what
 * is posted waits for the connection, as before the wait.
 */
const LOCAL_OPEN_TIMEOUT_MS = 1000;

/** Options of {@link openBus}. */
export interface OpenBusOptions {
  logger?: Logger;
  /** Shown in RabbitMQ's connection list. */
  connectionName?: string;
  /** RabbitMQ: fail when the first connection does not succeed within this time (ms). */
  connectTimeoutMs?: number;
  /** Local bus, a worker forked by the daemon: its IPC channel (else the control socket is used). */
  ipc?: IpcChannel;
  /** The lease owner id of the worker the bus serves. */
  workerId?: string;
  /** Environment for the runtime directory (the control socket). */
  env?: NodeJS.ProcessEnv;
}

/**
 * Opens the message bus of `profile`. For RabbitMQ this connects (and throws a BrokerError when
 * the broker cannot be reached within the timeout). The local bus connects to the daemon's socket
 * too, but never fails to open: with no daemon running, hints go nowhere and processes wait in the
 * store.
 */
export async function openBus(profile: Profile, opts: OpenBusOptions = {}): Promise<MessageBus> {
  const logger = opts.logger ?? silentLogger;
  const broker = profile.broker;
  if (broker.kind === 'local') {
    if (opts.ipc)
      return new LocalBus(new IpcLink(opts.ipc, opts.workerId ?? 'worker', logger), {
        logger,
        workerId: opts.workerId ?? null,
      });
    const link = new SocketLink(
      daemonFilePaths(runtimeDir(profile.name, opts.env), logDir(profile.name, opts.env)).socket,
      profile.name,
      logger,
    );
    // Connected (or known unreachable) before the first post: see SocketLink.open.
    await link.open(LOCAL_OPEN_TIMEOUT_MS);
    return new LocalBus(link, { logger, workerId: opts.workerId ?? null });
  }
  const [{ BrokerConnection }, { RabbitBus }] = await Promise.all([
    import('./rabbitmq/connection.js'),
    import('./rabbitmq/rabbitmq-bus.js'),
  ]);
  const conn = await BrokerConnection.open(broker, profile.uuid, {
    logger,
    connectionName: opts.connectionName,
    connectTimeoutMs: opts.connectTimeoutMs,
    heartbeatSeconds: profile.options['broker.heartbeat_seconds'],
  });
  return new RabbitBus(conn, logger);
}
