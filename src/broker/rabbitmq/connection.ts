/**
 * A recovering RabbitMQ connection for one profile. amqplib's opt-in recovery reconnects with
 * back-off and calls our setup after every (re)connect; there we declare the topology and re-open
 * every {@link ManagedChannel}, so publishers and consumers survive a broker restart.
 *
 * A managed channel also survives the loss of the channel alone: RabbitMQ closes a channel on any
 * channel-level error (a queue or exchange deleted under a consumer or publisher, a
 * `consumer_timeout`, a 404 on publish). The channel is then re-opened on the live connection after
 * a short back-off, the topology declared again and its consumers started again, so no error of the
 * broker can leave a worker without its consumers, or crash it.
 *
 * Publishing of continue tasks uses a confirm channel: {@link BrokerConnection.publishContinue}
 * resolves only once the broker has taken responsibility for every message (persistent, on a
 * durable queue). Callers clear the store's dispatch-pending flag only after that.
 *
 * @module
 */
import amqp from 'amqplib';
import type { Channel, ChannelModel, ConfirmChannel, RecoveringChannelModel } from 'amqplib';
import { BrokerError, errorMessage } from '../../errors/index.js';
import type { RabbitBrokerSettings } from '../../config/index.js';
import type { Logger } from '../../logging/index.js';
import { silentLogger } from '../../logging/index.js';
import { deferred, sleep, type Deferred } from '../../util/index.js';
import {
  encodeBrokerMessage,
  isTerminal,
  type ContinueTask,
  type ControlMessage,
  type StateBroadcast,
  type StateBatch,
} from '../../protocol/index.js';
import {
  assertTopology,
  STATES_CHANGES_KEY,
  STATES_ENDS_KEY,
  topologyFor,
  type TaskQueueType,
  type Topology,
} from './topology.js';

/** Options of {@link BrokerConnection.open}. */
export interface BrokerConnectionOptions {
  logger?: Logger;
  /** Shown in RabbitMQ's connection list. */
  connectionName?: string;
  /** Fail when the first connection does not succeed within this time (ms). Default 10 s. */
  connectTimeoutMs?: number;
  /** Task queue type (default classic). */
  queueType?: TaskQueueType;
  /**
   * AMQP heartbeat in seconds asked for (0: off; default: the server's proposal, 60 s on RabbitMQ).
   * A `heartbeat` in the URL's query wins.
   */
  heartbeatSeconds?: number;
}

/**
 * `url` asking for a heartbeat of `seconds` (amqplib reads the heartbeat from the URL's query only:
 * its `heartbeat` socket option is ignored). A URL that names a heartbeat itself keeps it; with
 * `seconds` undefined, or a URL that does not parse, `url` is returned unchanged.
 */
export function urlWithHeartbeat(url: string, seconds: number | undefined): string {
  if (seconds === undefined) return url;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return url;
  }
  if (u.searchParams.has('heartbeat')) return url;
  u.searchParams.set('heartbeat', String(seconds));
  return u.toString();
}

/** Delay before re-opening a channel the broker closed, growing to {@link REOPEN_MAX_MS}. */
const REOPEN_FIRST_MS = 200;
const REOPEN_MAX_MS = 5000;

/**
 * A channel that is re-opened after every reconnect and after the broker closed it. `setup` runs on
 * each fresh channel (declare, prefetch, consume); it must be idempotent.
 */
export class ManagedChannel<C extends Channel = Channel> {
  private current: C | null = null;
  private closed = false;
  private reopening = false;
  private ready: Deferred<C> = deferred<C>();

  /** @internal create with {@link BrokerConnection.managedChannel}. */
  constructor(
    private readonly conn: BrokerConnection,
    readonly name: string,
    readonly confirm: boolean,
    private readonly setup: (ch: C) => Promise<void>,
    private readonly logger: Logger,
  ) {}

  /** The open channel, or null while it is being re-opened. */
  get channel(): C | null {
    return this.current;
  }

  /** Waits for an open channel (throws once closed). */
  async wait(): Promise<C> {
    for (;;) {
      if (this.closed) throw new BrokerError(`${this.name} channel is closed`);
      if (this.current) return this.current;
      await this.ready.promise;
    }
  }

  /** Opens the channel on `model` (a fresh connection), replacing any previous one. */
  async openOn(model: ChannelModel): Promise<void> {
    if (this.closed) return;
    const ch = (this.confirm ? await model.createConfirmChannel() : await model.createChannel()) as C;
    await this.adopt(ch);
  }

  private async adopt(ch: C): Promise<void> {
    ch.on('error', (err: Error) => this.logger.warn(`${this.name} channel error: ${errorMessage(err)}`));
    ch.on('close', () => this.onClose(ch));
    try {
      await this.setup(ch);
    } catch (err) {
      await ch.close().catch(() => undefined);
      throw err;
    }
    if (this.closed) {
      await ch.close().catch(() => undefined);
      return;
    }
    const old = this.current;
    this.current = ch;
    if (old && old !== ch) await old.close().catch(() => undefined);
    this.ready.resolve(ch);
  }

  private onClose(ch: C): void {
    if (this.current !== ch) return;
    this.current = null;
    this.ready = deferred<C>();
    if (this.closed) return;
    void this.reopen();
  }

  /** Re-opens the channel on the live connection (after the broker closed it). */
  private async reopen(): Promise<void> {
    if (this.reopening) return;
    this.reopening = true;
    let delay = REOPEN_FIRST_MS;
    try {
      while (!this.closed && !this.current && !this.conn.isClosed) {
        await sleep(delay);
        if (this.closed || this.current || this.conn.isClosed) break;
        try {
          const model = await this.conn.liveModel();
          if (this.closed || this.current) break;
          await this.openOn(model);
          this.logger.info(`${this.name} channel re-opened`);
        } catch (err) {
          this.logger.warn(`re-opening the ${this.name} channel failed (${errorMessage(err)}); retrying`);
          delay = Math.min(REOPEN_MAX_MS, delay * 2);
        }
      }
    } finally {
      this.reopening = false;
    }
  }

  /**
   * Closes the channel for good; safe to call twice. Without `handshake` it is only forgotten: the
   * connection's close that follows ends it (a blocked broker reads nothing, so would never answer
   * a channel close).
   */
  async close(handshake = true): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.conn.forget(this as unknown as ManagedChannel);
    const ch = this.current;
    this.current = null;
    this.ready.resolve(undefined as unknown as C);
    if (handshake) await ch?.close().catch(() => undefined);
  }
}

/** A recovering connection with the profile's topology declared. */
export class BrokerConnection {
  readonly topology: Topology;
  private readonly managed = new Set<ManagedChannel>();
  private publishCh!: ManagedChannel<ConfirmChannel>;
  private eventCh!: ManagedChannel;
  private connectedNow = false;
  private closing: Promise<void> | null = null;
  private serverVersionText = '';
  private heartbeatNow: number | null = null;
  private pendingStates: StateBroadcast[] = [];
  /** True while the broker has said it blocks this connection (connection.blocked, a resource alarm). */
  private blockedNow = false;
  private readonly queueType: TaskQueueType;

  private constructor(
    private readonly model: RecoveringChannelModel,
    readonly profileUuid: string,
    private readonly logger: Logger,
    queueType: TaskQueueType,
  ) {
    this.topology = topologyFor(profileUuid);
    this.queueType = queueType;
    this.publishCh = this.managedChannel<ConfirmChannel>('publish', true, (ch) =>
      assertTopology(ch, this.topology, this.queueType),
    );
    this.eventCh = this.managedChannel('event', false, async () => undefined);
  }

  /** Connects (with recovery) and declares the topology. */
  static async open(
    settings: RabbitBrokerSettings,
    profileUuid: string,
    opts: BrokerConnectionOptions = {},
  ): Promise<BrokerConnection> {
    const logger = opts.logger ?? silentLogger;
    const timeoutMs = opts.connectTimeoutMs ?? 10_000;
    let conn: BrokerConnection | null = null;
    const queueType = opts.queueType ?? 'classic';
    const model = (await amqp.connect(urlWithHeartbeat(settings.url, opts.heartbeatSeconds), {
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
          await conn!.onConnect(m);
        },
      },
    })) as RecoveringChannelModel;
    conn = new BrokerConnection(model, profileUuid, logger, queueType);
    const c = conn;
    model.on('disconnect', (err: Error) => {
      c.connectedNow = false;
      c.blockedNow = false; // a block is of a connection; the next one starts unblocked
      if (c.closing) return;
      logger.warn(`broker connection lost (${errorMessage(err)}); reconnecting`);
    });
    model.on('connect', () => {
      c.connectedNow = true;
      logger.debug(`connected to broker ${settings.displayUrl}`);
    });
    model.on('error', (err: Error) => logger.warn(`broker connection error: ${errorMessage(err)}`));
    model.on('blocked', (reason: string) => {
      c.blockedNow = true;
      logger.warn(`the broker blocks publishing (${reason}); tasks wait for its confirm`);
    });
    model.on('unblocked', () => {
      c.blockedNow = false;
      logger.info('the broker accepts publishing again');
    });
    const first = model.waitForConnect();
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

  private async onConnect(model: ChannelModel): Promise<void> {
    const props = model.connection.serverProperties as Record<string, unknown>;
    this.serverVersionText = `${String(props.product ?? 'RabbitMQ')} ${String(props.version ?? '')}`.trim();
    const hb = (model.connection as unknown as { heartbeat?: unknown }).heartbeat;
    this.heartbeatNow = typeof hb === 'number' ? hb : null;
    // The publish channel first: it declares the topology the consumers rely on.
    await this.publishCh.openOn(model);
    for (const m of this.managed) if (m !== (this.publishCh as unknown as ManagedChannel)) await m.openOn(model);
  }

  /** "RabbitMQ 3.10.x" as announced by the server. */
  get serverVersion(): string {
    return this.serverVersionText;
  }

  /** The heartbeat (seconds, 0: none) negotiated with the broker on the last connect; null before it. */
  get heartbeatSeconds(): number | null {
    return this.heartbeatNow;
  }

  /** True while connected to the broker. */
  get connected(): boolean {
    return this.connectedNow && !this.closing;
  }

  /** True once {@link BrokerConnection.close} was called. */
  get isClosed(): boolean {
    return this.closing !== null;
  }

  /** @internal the live connection (waits through a reconnect). */
  liveModel(): Promise<ChannelModel> {
    if (this.closing) return Promise.reject(new BrokerError('broker connection is closed'));
    return Promise.resolve(this.model as unknown as ChannelModel);
  }

  /** @internal */
  forget(m: ManagedChannel): void {
    this.managed.delete(m);
  }

  /**
   * A channel kept open across reconnects and channel errors; `setup` runs on every fresh channel.
   * It opens now when connected, else at the next connect.
   */
  managedChannel<C extends Channel = Channel>(
    name: string,
    confirm: boolean,
    setup: (ch: C) => Promise<void>,
  ): ManagedChannel<C> {
    const m = new ManagedChannel<C>(this, name, confirm, setup, this.logger);
    this.managed.add(m as unknown as ManagedChannel);
    return m;
  }

  /**
   * Opens a managed channel now (on the live connection), for channels added after the first
   * connect; resolves once its setup ran.
   */
  async openManaged<C extends Channel>(m: ManagedChannel<C>): Promise<void> {
    if (m.channel) return;
    await m.openOn(await this.liveModel());
  }

  /** Publishes continue tasks for `ids` and resolves once the broker confirmed all of them. */
  async publishContinue(ids: readonly number[]): Promise<void> {
    if (ids.length === 0) return;
    const ch = await this.publishCh.wait();
    const q = this.topology.taskQueue;
    try {
      for (const id of ids) {
        const task: ContinueTask = { v: 1, kind: 'continue', processId: id };
        const ok = ch.sendToQueue(q, encodeBrokerMessage(task), { persistent: true, contentType: 'application/json' });
        if (!ok) await new Promise<void>((resolve) => ch.once('drain', () => resolve()));
      }
      await ch.waitForConfirms();
    } catch (err) {
      throw new BrokerError(`broker did not confirm ${ids.length} continue task(s): ${errorMessage(err)}`, {
        cause: err,
      });
    }
  }

  private inspectCh: ManagedChannel | null = null;

  /**
   * The task queue's ready count and consumers, read on a channel of its own (a failed check closes
   * only that channel, which is re-opened, declaring the queue again). Throws at once while
   * disconnected, rather than waiting for the reconnect.
   */
  async taskQueueState(): Promise<{ ready: number; consumers: number }> {
    if (!this.connected) throw new BrokerError('not connected to the broker');
    this.inspectCh ??= this.managedChannel('inspect', false, (ch) => assertTopology(ch, this.topology, this.queueType));
    await this.openManaged(this.inspectCh);
    const ch = this.inspectCh.channel;
    if (!ch) throw new BrokerError('the inspect channel is being re-opened');
    try {
      const ok = await ch.checkQueue(this.topology.taskQueue);
      return { ready: ok.messageCount, consumers: ok.consumerCount };
    } catch (err) {
      throw new BrokerError(`cannot read the task queue: ${errorMessage(err)}`, { cause: err });
    }
  }

  /** Publishes a raw body to the task queue (tests and tools; confirmed). */
  async publishRawTask(body: Buffer): Promise<void> {
    const ch = await this.publishCh.wait();
    ch.sendToQueue(this.topology.taskQueue, body, { persistent: true });
    await ch.waitForConfirms();
  }

  /** Publishes a control request to every worker of the profile (confirmed). */
  async publishControl(msg: ControlMessage): Promise<void> {
    const ch = await this.publishCh.wait();
    try {
      ch.publish(this.topology.controlExchange, '', encodeBrokerMessage(msg), { contentType: 'application/json' });
      await ch.waitForConfirms();
    } catch (err) {
      throw new BrokerError(`broker did not confirm a control request: ${errorMessage(err)}`, { cause: err });
    }
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
    const ch = this.eventCh.channel;
    if (!ch || events.length === 0) return;
    try {
      const batch: StateBatch = { v: 1, kind: 'states', events };
      const key = events.some((e) => isTerminal(e.state)) ? STATES_ENDS_KEY : STATES_CHANGES_KEY;
      ch.publish(this.topology.eventsExchange, key, encodeBrokerMessage(batch), {
        contentType: 'application/json',
      });
    } catch (err) {
      this.logger.debug(`state broadcast dropped: ${errorMessage(err)}`);
    }
  }

  /** Closes the connection; safe to call twice. */
  close(): Promise<void> {
    if (!this.closing) {
      this.closing = (async () => {
        // State changes of the last event-loop turn go out first (a CLI pausing a process closes right after).
        this.flushStates();
        // A blocked connection (a broker resource alarm) is not read by the broker: amqplib closes
        // it without the handshake, and so do its channels here.
        const handshake = !this.blockedNow;
        for (const m of [...this.managed]) await m.close(handshake);
        await this.model.close().catch(() => undefined);
      })();
    }
    return this.closing;
  }
}
