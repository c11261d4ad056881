/**
 * A recovering RabbitMQ connection for one profile. amqplib's opt-in recovery reconnects with
 * back-off and calls our setup after every (re)connect; there we re-create the publishing
 * channels, the topology and every consumer registered with {@link BrokerConnection.addSetup}, so
 * consumers survive a broker restart.
 *
 * Publishing of continue tasks uses a confirm channel: {@link BrokerConnection.publishContinue}
 * resolves only once the broker has taken responsibility for every message (persistent, on a
 * durable queue). Callers clear the store's dispatch-pending flag only after that.
 *
 * @module
 */
import amqp from 'amqplib';
import type { Channel, ChannelModel, ConfirmChannel, RecoveringChannelModel } from 'amqplib';
import { BrokerError, errorMessage } from '../errors/index.js';
import type { BrokerSettings } from '../config/index.js';
import type { Logger } from '../logging/index.js';
import { silentLogger } from '../logging/index.js';
import { deferred, type Deferred } from '../util/index.js';
import {
  encodeBrokerMessage,
  parseBrokerMessage,
  type ContinueTask,
  type ControlMessage,
  type StateBroadcast,
  type StateBatch,
} from '../protocol/index.js';
import { assertTopology, topologyFor, type TaskQueueType, type Topology } from './topology.js';

/** Options of {@link BrokerConnection.open}. */
export interface BrokerConnectionOptions {
  logger?: Logger;
  /** Shown in RabbitMQ's connection list. */
  connectionName?: string;
  /** Fail when the first connection does not succeed within this time (ms). Default 10 s. */
  connectTimeoutMs?: number;
  /** Task queue type (default classic). */
  queueType?: TaskQueueType;
}

type SetupHook = (model: ChannelModel) => Promise<void>;

/** A recovering connection with the profile's topology declared. */
export class BrokerConnection {
  readonly topology: Topology;
  private confirmCh: ConfirmChannel | null = null;
  private plainCh: Channel | null = null;
  private connected: Deferred<void> = deferred<void>();
  private readonly hooks: SetupHook[] = [];
  private closing: Promise<void> | null = null;
  private serverVersionText = '';
  private pendingStates: StateBroadcast[] = [];

  private constructor(
    private readonly model: RecoveringChannelModel,
    readonly profileUuid: string,
    private readonly logger: Logger,
  ) {
    this.topology = topologyFor(profileUuid);
  }

  /** Connects (with recovery) and declares the topology. */
  static async open(
    settings: BrokerSettings,
    profileUuid: string,
    opts: BrokerConnectionOptions = {},
  ): Promise<BrokerConnection> {
    const logger = opts.logger ?? silentLogger;
    const timeoutMs = opts.connectTimeoutMs ?? 10_000;
    let conn: BrokerConnection | null = null;
    const queueType = opts.queueType ?? 'classic';
    const model = (await amqp.connect(settings.url, {
      noDelay: true,
      timeout: Math.min(timeoutMs, 10_000),
      clientProperties: { connection_name: opts.connectionName ?? `drover pid ${process.pid}` },
      recovery: {
        waitForConnect: false,
        initialDelay: 100,
        maxDelay: 5000,
        initialMaxRetries: 0,
        maxRetries: Infinity,
        setup: async (m: ChannelModel) => {
          // `conn` is set synchronously below, before the first connect can complete.
          await conn!.onConnect(m, queueType);
        },
      },
    })) as RecoveringChannelModel;
    conn = new BrokerConnection(model, profileUuid, logger);
    const c = conn;
    model.on('disconnect', (err: Error) => {
      if (c.closing) return;
      logger.warn(`broker connection lost (${errorMessage(err)}); reconnecting`);
      c.confirmCh = null;
      c.plainCh = null;
      c.connected = deferred<void>();
    });
    model.on('connect', () => logger.debug(`connected to broker ${settings.displayUrl}`));
    model.on('error', (err: Error) => logger.warn(`broker connection error: ${errorMessage(err)}`));
    const first = model.waitForConnect().then(() => c.connected.promise);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        first,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new BrokerError(`timed out after ${timeoutMs} ms connecting to ${settings.displayUrl}`)),
            timeoutMs,
          );
        }),
      ]);
    } catch (err) {
      await model.close().catch(() => undefined);
      if (err instanceof BrokerError) throw err;
      throw new BrokerError(`cannot connect to RabbitMQ at ${settings.displayUrl}: ${errorMessage(err)}`, {
        cause: err,
      });
    } finally {
      clearTimeout(timer);
    }
    return conn;
  }

  private async onConnect(model: ChannelModel, queueType: TaskQueueType): Promise<void> {
    const props = model.connection.serverProperties as Record<string, unknown>;
    this.serverVersionText = `${String(props.product ?? 'RabbitMQ')} ${String(props.version ?? '')}`.trim();
    const confirmCh = await model.createConfirmChannel();
    confirmCh.on('error', (err: Error) => this.logger.warn(`publish channel error: ${errorMessage(err)}`));
    await assertTopology(confirmCh, this.topology, queueType);
    const plainCh = await model.createChannel();
    plainCh.on('error', (err: Error) => this.logger.warn(`event channel error: ${errorMessage(err)}`));
    for (const hook of this.hooks) await hook(model);
    this.confirmCh = confirmCh;
    this.plainCh = plainCh;
    this.connected.resolve();
  }

  /** "RabbitMQ 3.10.x" as announced by the server. */
  get serverVersion(): string {
    return this.serverVersionText;
  }

  /**
   * Registers a setup step (a consumer, a private queue) that runs now and again after every
   * reconnect, on the fresh connection.
   */
  async addSetup(hook: SetupHook): Promise<void> {
    this.hooks.push(hook);
    await this.connected.promise;
    // Create a channel on the live connection through the recovering model; amqplib routes it to
    // the current underlying connection.
    await hook(this.model as unknown as ChannelModel);
  }

  private async confirmChannel(): Promise<ConfirmChannel> {
    for (;;) {
      if (this.closing) throw new BrokerError('broker connection is closed');
      const ch = this.confirmCh;
      if (ch) return ch;
      await this.connected.promise;
    }
  }

  /** Publishes continue tasks for `ids` and resolves once the broker confirmed all of them. */
  async publishContinue(ids: readonly number[]): Promise<void> {
    if (ids.length === 0) return;
    const ch = await this.confirmChannel();
    const q = this.topology.taskQueue;
    for (const id of ids) {
      const task: ContinueTask = { v: 1, kind: 'continue', processId: id };
      const ok = ch.sendToQueue(q, encodeBrokerMessage(task), { persistent: true, contentType: 'application/json' });
      if (!ok) await new Promise<void>((resolve) => ch.once('drain', () => resolve()));
    }
    try {
      await ch.waitForConfirms();
    } catch (err) {
      throw new BrokerError(`broker did not confirm ${ids.length} continue task(s): ${errorMessage(err)}`, {
        cause: err,
      });
    }
  }

  /** Publishes a raw body to the task queue (tests and tools; confirmed). */
  async publishRawTask(body: Buffer): Promise<void> {
    const ch = await this.confirmChannel();
    ch.sendToQueue(this.topology.taskQueue, body, { persistent: true });
    await ch.waitForConfirms();
  }

  /** Publishes a control request to every worker of the profile (confirmed). */
  async publishControl(msg: ControlMessage): Promise<void> {
    const ch = await this.confirmChannel();
    ch.publish(this.topology.controlExchange, '', encodeBrokerMessage(msg), { contentType: 'application/json' });
    await ch.waitForConfirms();
  }

  /**
   * Broadcasts a state change; best effort (dropped while disconnected: the store stays the
   * truth). Changes made in one event-loop turn go out as one batch message.
   */
  publishState(msg: StateBroadcast): void {
    this.pendingStates.push(msg);
    if (this.pendingStates.length === 1) setImmediate(() => this.flushStates());
  }

  private flushStates(): void {
    const events = this.pendingStates;
    this.pendingStates = [];
    const ch = this.plainCh;
    if (!ch || events.length === 0) return;
    try {
      const batch: StateBatch = { v: 1, kind: 'states', events };
      ch.publish(this.topology.eventsExchange, 'states', encodeBrokerMessage(batch), {
        contentType: 'application/json',
      });
    } catch (err) {
      this.logger.debug(`state broadcast dropped: ${errorMessage(err)}`);
    }
  }

  /**
   * Subscribes to every state broadcast of the profile on a private queue; survives reconnects.
   * Returns a function that unsubscribes.
   */
  async subscribeEvents(onMessage: (msg: StateBroadcast) => void): Promise<() => Promise<void>> {
    let active = true;
    let current: Channel | null = null;
    await this.addSetup(async (model) => {
      if (!active) return;
      const ch = await model.createChannel();
      ch.on('error', (err: Error) => this.logger.debug(`event subscription channel error: ${errorMessage(err)}`));
      const q = await ch.assertQueue('', { exclusive: true, autoDelete: true });
      await ch.bindQueue(q.queue, this.topology.eventsExchange, '#');
      await ch.consume(
        q.queue,
        (m) => {
          if (m === null) return;
          let msg;
          try {
            msg = parseBrokerMessage(m.content);
          } catch (err) {
            this.logger.debug(`dropped malformed broadcast: ${errorMessage(err)}`);
            return;
          }
          if (msg.kind === 'state') onMessage(msg);
          else if (msg.kind === 'states') for (const e of msg.events) onMessage(e);
        },
        { noAck: true },
      );
      current = ch;
    });
    return async () => {
      active = false;
      const ch = current as Channel | null;
      current = null;
      await ch?.close().catch(() => undefined);
    };
  }

  /** Closes the connection; safe to call twice. */
  close(): Promise<void> {
    if (!this.closing) {
      this.closing = this.model.close().catch(() => undefined);
      this.connected.resolve();
    }
    return this.closing;
  }
}
