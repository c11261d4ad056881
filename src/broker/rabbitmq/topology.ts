/**
 * Broker topology of a profile, named from the profile's uuid so that profiles sharing a RabbitMQ
 * vhost never see each other's messages:
 *
 * - `drover.<uuid>.tasks`: durable task queue of "continue process N" messages; every worker
 *   consumes it with prefetch = its slots. Messages rejected as malformed are dead-lettered.
 * - `drover.<uuid>.dead`: where malformed task bodies go (bounded: oldest dropped past 10,000),
 *   so garbage never loops and never crashes a worker, yet stays inspectable.
 * - `drover.<uuid>.control`: fanout exchange of control requests (kill, pause, play); each worker
 *   binds an exclusive queue to it.
 * - `drover.<uuid>.events`: topic exchange of state broadcasts, in batches: routing key
 *   `states.ends` for a batch holding a change that reaches an end, `states.changes` for the others
 *   (see {@link STATES_ENDS_KEY}).
 *
 * Queue type: classic durable queues with persistent messages (see docs/broker.md for the
 * measurement that chose them over quorum queues on a single node).
 *
 * @module
 */
import type { Channel } from 'amqplib';

/**
 * Routing key of a batch of state changes holding at least one that reaches an end (finished,
 * excepted, killed): what a wait subscribes to, without the other changes.
 */
export const STATES_ENDS_KEY = 'states.ends';
/** Routing key of a batch of state changes none of which reaches an end. */
export const STATES_CHANGES_KEY = 'states.changes';
/** Routing key of every batch from senders older than the two keys above. */
export const STATES_LEGACY_KEY = 'states';

/** Names of a profile's queues and exchanges. */
export interface Topology {
  taskQueue: string;
  deadExchange: string;
  deadQueue: string;
  controlExchange: string;
  eventsExchange: string;
}

/** Queue type used for the task queue. */
export type TaskQueueType = 'classic' | 'quorum';

/** The topology of the profile with this uuid. */
export function topologyFor(profileUuid: string): Topology {
  const p = `drover.${profileUuid}`;
  return {
    taskQueue: `${p}.tasks`,
    deadExchange: `${p}.dlx`,
    deadQueue: `${p}.dead`,
    controlExchange: `${p}.control`,
    eventsExchange: `${p}.events`,
  };
}

/** Declares the profile's topology (idempotent). */
export async function assertTopology(ch: Channel, topo: Topology, queueType: TaskQueueType = 'classic'): Promise<void> {
  await ch.assertExchange(topo.deadExchange, 'fanout', { durable: true });
  await ch.assertQueue(topo.deadQueue, {
    durable: true,
    arguments: { 'x-max-length': 10_000, 'x-queue-type': queueType },
  });
  await ch.bindQueue(topo.deadQueue, topo.deadExchange, '');
  await ch.assertQueue(topo.taskQueue, {
    durable: true,
    arguments: { 'x-queue-type': queueType, 'x-dead-letter-exchange': topo.deadExchange },
  });
  await ch.assertExchange(topo.controlExchange, 'fanout', { durable: true });
  await ch.assertExchange(topo.eventsExchange, 'topic', { durable: true });
}

/** Deletes the profile's queues and exchanges (profile deletion, test clean-up). */
export async function deleteTopology(ch: Channel, topo: Topology): Promise<void> {
  await ch.deleteQueue(topo.taskQueue);
  await ch.deleteQueue(topo.deadQueue);
  await ch.deleteExchange(topo.deadExchange);
  await ch.deleteExchange(topo.controlExchange);
  await ch.deleteExchange(topo.eventsExchange);
}
