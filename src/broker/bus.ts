/**
 * The message bus of a profile: what carries "continue process N" tasks to workers, control
 * requests (kill, pause, play) to whoever runs a process, and state events to subscribers. The
 * worker, the daemon and the library use only this interface; two adapters implement it:
 *
 * - `rabbitmq` (`rabbitmq/`): amqplib on RabbitMQ. Tasks are persistent messages on a durable
 *   queue, published on a confirm channel; the publisher clears the store's dispatch flag after the
 *   broker confirmed ({@link MessageBus.dispatch} `'publish'`) and workers sweep the outbox for what
 *   was never confirmed. For profiles whose workers run on several machines, or by choice.
 * - `local` (`local/`): the profile's daemon is the hub. Workers are its children and talk to it
 *   over their IPC channel; other programs (the CLI, scripts) over its control socket. The hub
 *   keeps nothing durable: it reads the store's pending dispatches itself
 *   ({@link MessageBus.dispatch} `'outbox'`) and hands each to a worker with a free slot, so a
 *   publish is only a hint that makes it look sooner.
 *
 * Whatever a bus loses, the store still knows: a process is committed before its task is
 * published, a delivery is acknowledged only after the claim committed, and a claim refuses a
 * process that is already running or done, so a duplicate task never runs a process twice.
 *
 * Task flow control is credit based, the same on both adapters: a consumer starts with `slots`
 * credits, each task handed to it uses one, and it gives one back ({@link TaskConsumer.credit}) when
 * the slot frees (the run ended, or the claim refused the task). So a worker is never handed more
 * than it can run; what the bus does with tasks beyond that (RabbitMQ: hold them briefly, hand them
 * back to the queue when they wait too long; local: leave them in the store) is the adapter's
 * business.
 *
 * @module
 */
import { isTerminal, type ControlMessage, type StateBroadcast } from '../protocol/index.js';

/** The bus kinds (the profile's `broker.kind`). */
export type BusKind = 'local' | 'rabbitmq';

/**
 * How a bus learns about work to dispatch:
 * - `'publish'`: only from {@link MessageBus.publishContinue}. Once it resolves, the bus holds the
 *   tasks durably, and the publisher clears their dispatch flag in the store (`markDispatched`);
 *   processes whose flag stays set (publisher crashed, broker down) are re-published by a periodic
 *   sweep of the outbox, which consumers run.
 * - `'outbox'`: the bus reads the store's pending dispatches itself and a claim clears the flag;
 *   `publishContinue` is a hint for latency, nobody marks or sweeps.
 */
export type DispatchMode = 'publish' | 'outbox';

/** One "continue process N" task handed to a consumer. */
export interface TaskDelivery {
  readonly processId: number;
}

/** Options of {@link MessageBus.consumeTasks}. */
export interface TaskConsumerOptions {
  /** Processes the consumer runs at once: its initial credit. */
  slots: number;
  /**
   * Tasks that arrived together, never more than the credit available. The consumer claims each in
   * the store, then acknowledges the batch.
   */
  onTasks(tasks: TaskDelivery[]): void;
}

/** A consumer of the task queue. */
export interface TaskConsumer {
  /**
   * The tasks were claimed (or refused) in the store: the bus forgets them. Credit is not returned
   * by this: call {@link TaskConsumer.credit} for every slot that is free again.
   */
  ack(tasks: readonly TaskDelivery[]): void;
  /** Hands tasks back (not claimed, e.g. the store failed) for any consumer; returns their credit. */
  requeue(tasks: readonly TaskDelivery[]): void;
  /** `n` slots are free again: `n` more tasks may be handed over. */
  credit(n: number): void;
  /** Stops taking tasks; tasks handed over and not yet acknowledged go back to the bus. Safe twice. */
  cancel(): Promise<void>;
}

/** Options of {@link MessageBus.subscribeEvents}. */
export interface SubscribeOptions {
  /**
   * Called when the subscription may have missed events (it was re-established after a lost
   * connection): a subscriber that must not miss a change re-reads the store then.
   */
  onGap?: () => void;
  /**
   * Only the changes that reach an end (finished, excepted, killed), all a wait needs: the bus
   * then does not hand this subscriber the others, which at thousands of changes a second cost it
   * a wake-up and a parse each. Default: every change.
   */
  terminalOnly?: boolean;
}

/** Whether a subscriber with `opts` is to be handed `e` (a bus may receive more than it asked for). */
export function wantsEvent(opts: SubscribeOptions, e: StateBroadcast): boolean {
  return opts.terminalOnly !== true || isTerminal(e.state);
}

/** What a bus's task queue holds now (see {@link MessageBus.taskQueueState}). */
export interface TaskQueueState {
  /** Tasks waiting for a consumer (RabbitMQ: the queue's ready count; unacknowledged ones excluded). */
  ready: number;
  /** Consumers of the queue. */
  consumers: number;
}

/** Bus health for status displays. */
export interface BusHealth {
  kind: BusKind;
  /** True when the bus can carry messages now (connected to RabbitMQ / to the daemon). */
  connected: boolean;
  /** What it is connected to, e.g. `RabbitMQ 3.10.7` or `daemon pid 1234`; null when not connected. */
  peer: string | null;
}

/** The message bus of one profile. */
export interface MessageBus {
  readonly kind: BusKind;
  /** See {@link DispatchMode}. */
  readonly dispatch: DispatchMode;
  /**
   * Publishes continue tasks for processes already committed to the store. With dispatch mode
   * `'publish'` it resolves once the bus holds them durably (throws when it could not); with
   * `'outbox'` it resolves at once (a lost hint costs latency, not work).
   */
  publishContinue(ids: readonly number[]): Promise<void>;
  /** Starts consuming tasks (see {@link TaskConsumerOptions}). */
  consumeTasks(opts: TaskConsumerOptions): Promise<TaskConsumer>;
  /**
   * Sends a control request to every control consumer of the profile (the worker running the
   * process acts on it). Resolves once the bus took it; throws when it cannot be delivered now.
   */
  publishControl(msg: ControlMessage): Promise<void>;
  /**
   * Receives control requests; returns a function that stops. Resolves once the bus has the
   * consumer in place (when it can be reached): a request published after that reaches it.
   */
  consumeControl(onMessage: (msg: ControlMessage) => void): Promise<() => Promise<void>>;
  /** Broadcasts a state change, best effort (the store stays the truth); batched per event-loop turn. */
  publishState(msg: StateBroadcast): void;
  /**
   * Receives every state change of the profile from now on; returns a function that unsubscribes.
   * Resolves once the subscription is in place (when the bus can be reached): a change published
   * after that, by any peer, is received. A waiter relies on it: it subscribes, then reads the
   * store, then counts on an event for whatever changes later.
   */
  subscribeEvents(onMessage: (msg: StateBroadcast) => void, opts?: SubscribeOptions): Promise<() => Promise<void>>;
  /**
   * What the task queue holds now, for the re-dispatch check of dispatch mode `'publish'` (a bus
   * may lose tasks it confirmed: a purged or deleted queue, a reset broker); null from a bus that
   * holds no tasks of its own (`'outbox'`). Throws when the bus cannot say now (disconnected).
   */
  taskQueueState(): Promise<TaskQueueState | null>;
  /** Connection state, for status displays. */
  health(): BusHealth;
  /** Closes the bus; safe to call twice (the same promise). */
  close(): Promise<void>;
}
