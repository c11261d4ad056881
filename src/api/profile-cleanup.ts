/**
 * What `drover profile delete --force` removes beyond the local files: the profile's RabbitMQ
 * queues and exchanges. A queue or exchange still in use (a consumer of the task queue, a
 * subscriber bound to an exchange: some other machine still runs this profile's workers) is kept
 * and said why, as is everything when the broker cannot be reached.
 *
 * @module
 */
import type { Profile } from '../config/index.js';
import { errorMessage } from '../errors/index.js';
import type { RemovedData } from '../config/index.js';
import type { Channel } from 'amqplib';

/** Removes the profile's queues and exchanges from its RabbitMQ broker (nothing on the local bus). */
export async function removeProfileBroker(profile: Profile, timeoutMs = 5000): Promise<RemovedData> {
  const out: RemovedData = { removed: [], kept: [] };
  const broker = profile.broker;
  if (broker.kind !== 'rabbitmq') return out;
  const [{ default: amqp }, { topologyFor }, { urlWithHeartbeat }] = await Promise.all([
    import('amqplib'),
    import('../broker/rabbitmq/topology.js'),
    import('../broker/rabbitmq/connection.js'),
  ]);
  const topo = topologyFor(profile.uuid);
  let conn: Awaited<ReturnType<typeof amqp.connect>>;
  try {
    // Raced with a timer of our own too: a name that does not resolve can take longer than the
    // socket's connect timeout.
    const connecting = amqp.connect(urlWithHeartbeat(broker.url, profile.options['broker.heartbeat_seconds']), {
      noDelay: true,
      timeout: timeoutMs,
    });
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      conn = await Promise.race([connecting, late]);
    } finally {
      clearTimeout(timer);
      void connecting.then((c) => (c === conn ? undefined : c.close())).catch(() => undefined);
    }
  } catch (err) {
    out.kept.push({
      what: `RabbitMQ queues and exchanges drover.${profile.uuid}.* on ${broker.displayUrl}`,
      reason: `the broker cannot be reached (${errorMessage(err)}); delete them there by hand`,
    });
    return out;
  }
  conn.on('error', () => undefined);
  const where = `on ${broker.displayUrl}`;
  // A refused delete (PRECONDITION_FAILED: in use) closes its channel: one channel per entity.
  const attempt = async (
    what: string,
    exists: (ch: Channel) => Promise<unknown>,
    fn: (ch: Channel) => Promise<unknown>,
  ): Promise<void> => {
    const probe = await conn.createChannel();
    probe.on('error', () => undefined);
    try {
      await exists(probe);
      await probe.close().catch(() => undefined);
    } catch {
      return; // NOT_FOUND: nothing to remove (it closed the channel)
    }
    const ch = await conn.createChannel();
    ch.on('error', () => undefined);
    try {
      await fn(ch);
      out.removed.push(`${what} ${where}`);
      await ch.close().catch(() => undefined);
    } catch (err) {
      out.kept.push({ what: `${what} ${where}`, reason: errorMessage(err) });
    }
  };
  try {
    for (const q of [topo.taskQueue, topo.deadQueue]) {
      await attempt(
        `queue ${q}`,
        (ch) => ch.checkQueue(q),
        (ch) => ch.deleteQueue(q, { ifUnused: true }),
      );
    }
    for (const x of [topo.deadExchange, topo.controlExchange, topo.eventsExchange]) {
      await attempt(
        `exchange ${x}`,
        (ch) => ch.checkExchange(x),
        (ch) => ch.deleteExchange(x, { ifUnused: true }),
      );
    }
  } finally {
    await conn.close().catch(() => undefined);
  }
  return out;
}
