/**
 * The `rabbitmq` bus: the conformance suite on a fresh topology of the real RabbitMQ, plus what
 * only RabbitMQ has: a consumer whose queue is deleted under it re-declares it and goes on.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { execFile } from 'node:child_process';
import path from 'node:path';
import amqp from 'amqplib';
import { openBus, type MessageBus } from '../../src/broker/index.js';
import { RabbitBus, deleteTopology, topologyFor, urlWithHeartbeat } from '../../src/broker/rabbitmq/index.js';
import { resolveBroker, resolveOptions, type Profile } from '../../src/config/index.js';
import { openStore, type ProcessStore } from '../../src/store/index.js';
import { RABBIT_URL, cleanupTempDirs, portOpen, requireService, tempDir, waitUntil } from '../helpers/env.js';
import { busConformance, type BusHarness } from './conformance.js';

function rabbitProfile(): Profile {
  return {
    name: 'conformance',
    uuid: crypto.randomUUID(),
    storage: { backend: 'sqlite', path: '/nonexistent' },
    broker: resolveBroker({ kind: 'rabbitmq', url: RABBIT_URL }),
    options: resolveOptions({}, {}),
    configFile: '/nonexistent',
  };
}

async function dropTopology(uuid: string): Promise<void> {
  const conn = await amqp.connect(RABBIT_URL);
  const ch = await conn.createChannel();
  ch.on('error', () => undefined);
  await deleteTopology(ch, topologyFor(uuid)).catch(() => undefined);
  await conn.close().catch(() => undefined);
}

async function makeHarness(ctx: Mocha.Context): Promise<BusHarness & { profile: Profile }> {
  requireService(ctx, await portOpen(5672), 'RabbitMQ on 127.0.0.1:5672');
  const profile = rabbitProfile();
  const store: ProcessStore = await openStore({ backend: 'sqlite', path: path.join(tempDir(), 'store.sqlite') });
  return {
    profile,
    store,
    open: () => openBus(profile, { connectTimeoutMs: 5000 }),
    teardown: async () => {
      await store.close();
      await dropTopology(profile.uuid);
    },
  };
}

busConformance('rabbitmq', makeHarness);

/**
 * Registers in the calling describe a harness made in `before`, and an `open` whose buses are
 * closed in `after` before the harness is torn down.
 */
function suiteHarness(): { harness: () => Harness; open: () => Promise<MessageBus> } {
  let h: Harness | undefined;
  const opened: MessageBus[] = [];
  before(async function () {
    h = await makeHarness(this);
  });
  after(async () => {
    for (const b of opened) await b.close();
    await h?.teardown();
    cleanupTempDirs();
  });
  return {
    harness: () => h!,
    open: async () => {
      const b = await h!.open();
      opened.push(b);
      return b;
    },
  };
}

type Harness = Awaited<ReturnType<typeof makeHarness>>;

describe('rabbitmq bus: state events of older senders', function () {
  this.timeout(60_000);
  const { harness, open } = suiteHarness();

  it("a subscriber of ends still hears an older sender's batches, which used one key for every change", async () => {
    const bus = await open();
    const got: Array<[number, string]> = [];
    await bus.subscribeEvents((m) => got.push([m.processId, m.state]), { terminalOnly: true });
    const conn = await amqp.connect(RABBIT_URL);
    const ch = await conn.createChannel();
    const event = (processId: number, state: string): object => ({
      v: 1,
      kind: 'state',
      processId,
      type: 't',
      state,
      paused: false,
      parentId: null,
      exitStatus: null,
      time: Date.now(),
    });
    // As a sender of the version before routed them: key 'states', ends and other changes mixed.
    const batch = { v: 1, kind: 'states', events: [event(1, 'running'), event(1, 'finished'), event(2, 'running')] };
    ch.publish(topologyFor(harness().profile.uuid).eventsExchange, 'states', Buffer.from(JSON.stringify(batch)));
    await waitUntil(() => got.length >= 1, 10_000, 'the end in the older batch');
    await new Promise((r) => setTimeout(r, 200));
    await conn.close();
    assert.deepEqual(got, [[1, 'finished']]);
  });
});

describe('rabbitmq bus: broker errors', function () {
  this.timeout(60_000);
  const { harness, open } = suiteHarness();

  it('a consumer whose task queue is deleted under it re-declares the queue and keeps consuming', async () => {
    const bus = await open();
    const got: number[] = [];
    const c = await bus.consumeTasks({
      slots: 10,
      onTasks: (t) => {
        got.push(...t.map((x) => x.processId));
        c.ack(t);
        c.credit(t.length);
      },
    });
    await bus.publishContinue([1]);
    await waitUntil(() => got.includes(1), 10_000, 'the first task');
    const conn = await amqp.connect(RABBIT_URL);
    const ch = await conn.createChannel();
    await ch.deleteQueue(topologyFor(harness().profile.uuid).taskQueue);
    await conn.close();
    // Publishing into the void until the consumer has declared the queue again; then it arrives.
    await waitUntil(
      async () => {
        await bus.publishContinue([2]);
        return got.includes(2);
      },
      20_000,
      'a task published after the queue was deleted',
      500,
    );
    assert.ok(got.includes(2));
  });
});

describe('rabbitmq bus: the task queue state (for the re-dispatch check)', function () {
  this.timeout(60_000);
  const { harness, open } = suiteHarness();

  it('counts the ready tasks and the consumers, and answers again after the queue was deleted', async () => {
    const bus = await open();
    assert.deepEqual(await bus.taskQueueState(), { ready: 0, consumers: 0 });
    await bus.publishContinue([1, 2, 3]);
    assert.deepEqual(await bus.taskQueueState(), { ready: 3, consumers: 0 });
    const got: number[] = [];
    const c = await bus.consumeTasks({
      slots: 1,
      onTasks: (t) => got.push(...t.map((x) => x.processId)),
    });
    await waitUntil(() => got.length === 1, 10_000, 'one delivery');
    // One delivered and unacknowledged (prefetch 1): not ready.
    await waitUntil(
      async () => JSON.stringify(await bus.taskQueueState()) === JSON.stringify({ ready: 2, consumers: 1 }),
      5000,
      'two ready, one consumer',
    );
    await c.cancel();
    const conn = await amqp.connect(RABBIT_URL);
    const ch = await conn.createChannel();
    await ch.deleteQueue(topologyFor(harness().profile.uuid).taskQueue);
    await conn.close();
    // The check's channel is closed by the 404 and re-opened, declaring the queue again.
    const state = await waitUntil(
      async () => {
        try {
          return await bus.taskQueueState();
        } catch {
          return null;
        }
      },
      10_000,
      'the state of the re-declared queue',
      200,
    );
    assert.deepEqual(state, { ready: 0, consumers: 0 });
  });
});

describe('rabbitmq bus: heartbeat (broker.heartbeat_seconds)', function () {
  this.timeout(60_000);
  const opened: MessageBus[] = [];
  before(async function () {
    requireService(this, await portOpen(5672), 'RabbitMQ on 127.0.0.1:5672');
  });
  after(async () => {
    for (const b of opened) await b.close();
  });

  /**
   * The heartbeat RabbitMQ reports for the connection named `name`: a number, 'absent' (not listed
   * yet) or 'unavailable' (no rabbitmqctl here). Asynchronous: a blocked event loop would miss
   * heartbeats.
   */
  function serverSideTimeout(name: string): Promise<number | 'absent' | 'unavailable'> {
    return new Promise((resolve) => {
      execFile(
        'rabbitmqctl',
        ['-q', 'list_connections', 'name', 'timeout', 'client_properties'],
        { encoding: 'utf8', timeout: 30_000 },
        (err, stdout) => {
          if (err) {
            resolve('unavailable');
            return;
          }
          const line = stdout.split('\n').find((l) => l.includes(name));
          const n = line === undefined ? NaN : Number(line.split('\t')[1]);
          resolve(Number.isFinite(n) ? n : 'absent');
        },
      );
    });
  }

  it('urlWithHeartbeat asks for the option in the URL query, and a heartbeat in the URL wins', () => {
    assert.equal(urlWithHeartbeat('amqp://u:p@h:5672/v', 5), 'amqp://u:p@h:5672/v?heartbeat=5');
    assert.equal(urlWithHeartbeat('amqp://h/?heartbeat=30', 5), 'amqp://h/?heartbeat=30');
    assert.equal(urlWithHeartbeat('amqp://h/?frameMax=8192', 0), 'amqp://h/?frameMax=8192&heartbeat=0');
    assert.equal(urlWithHeartbeat('amqp://h', undefined), 'amqp://h');
  });

  for (const seconds of [5, 3]) {
    it(`a real connection negotiates a heartbeat of ${seconds} s (default 5)`, async () => {
      const profile = rabbitProfile();
      if (seconds !== 5) profile.options = resolveOptions({}, { 'broker.heartbeat_seconds': seconds });
      assert.equal(resolveOptions({}, {})['broker.heartbeat_seconds'], 5);
      const name = `drover heartbeat test ${crypto.randomUUID()}`;
      const bus = await openBus(profile, { connectTimeoutMs: 5000, connectionName: name });
      opened.push(bus);
      try {
        assert.ok(bus instanceof RabbitBus);
        assert.equal(bus.connection.heartbeatSeconds, seconds, 'negotiated on the client side');
        // What the broker itself says (rabbitmqctl lists connections a few seconds late).
        const server = await waitUntil(
          async () => {
            const t = await serverSideTimeout(name);
            return t === 'absent' ? null : t;
          },
          30_000,
          'the connection in rabbitmqctl',
          500,
        );
        if (server !== 'unavailable') assert.equal(server, seconds, 'the timeout rabbitmqctl reports');
      } finally {
        await bus.close();
        await dropTopology(profile.uuid);
      }
    });
  }
});
