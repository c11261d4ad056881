/**
 * The `local` bus: the conformance suite against a real hub (the daemon's DaemonHub behind a real
 * control socket, reading a real SQLite store's outbox), plus what only the local bus has: no hint
 * needed, a hub that comes back, no daemon at all, and garbage on the socket.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { BrokerError } from '../../src/errors/index.js';
import { LocalBus, SocketLink } from '../../src/broker/index.js';
import { logDir, runtimeDir } from '../../src/config/index.js';
import { ControlServer, type ControlServerLimits } from '../../src/daemon/control-server.js';
import { DaemonHub } from '../../src/daemon/bus-hub.js';
import type { LazyStore } from '../../src/daemon/store-access.js';
import { createLogger, silentLogger, type Logger } from '../../src/logging/index.js';
import { ControlError, daemonFilePaths, type ControlHandler, type StateBroadcast } from '../../src/protocol/index.js';
import { openStore, type ProcessStore } from '../../src/store/index.js';
import { REPO_ROOT, cleanupTempDirs, tempDir, waitUntil } from '../helpers/env.js';
import { busConformance, type BusHarness } from './conformance.js';

const refuse = async (): Promise<never> => {
  throw new ControlError('METHOD_UNKNOWN', 'not a daemon');
};
const noControl = new Proxy({}, { get: () => refuse }) as ControlHandler;

/** A hub on its own socket and store: what the daemon of a local profile runs. */
class TestHub {
  server!: ControlServer;
  hub!: DaemonHub;
  constructor(
    readonly socket: string,
    readonly store: ProcessStore,
    readonly pollMs?: number,
    readonly logger: Logger = silentLogger,
    readonly limits: Partial<ControlServerLimits> = {},
  ) {}
  async start(): Promise<this> {
    const lazy: LazyStore = { get: async () => this.store, close: async () => undefined };
    this.hub = new DaemonHub(lazy, this.logger, 30_000, this.pollMs);
    this.server = new ControlServer(this.socket, noControl, this.logger, this.limits);
    this.server.bus = this.hub.socketHooks();
    await this.server.listen();
    this.hub.start();
    return this;
  }
  async stop(): Promise<void> {
    this.hub.close();
    await this.server.close();
  }
}

/** A state event: process `processId` is running. */
function running(processId: number): StateBroadcast {
  return {
    v: 1,
    kind: 'state',
    processId,
    type: 't',
    state: 'running',
    paused: false,
    parentId: null,
    exitStatus: null,
    time: Date.now(),
  };
}

/** Writes `lines` to the daemon's socket in one write; resolves with the first line it answers. */
function firstLineBack(socket: string, lines: unknown[]): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const s = net.createConnection(socket);
    s.on('connect', () => s.write(lines.map((l) => JSON.stringify(l) + '\n').join('')));
    s.on('data', (d) => {
      s.destroy();
      resolve(d.toString().split('\n')[0]!);
    });
    s.on('error', reject);
  });
}

function bus(socket: string): LocalBus {
  return new LocalBus(new SocketLink(socket, 'conformance', silentLogger), { logger: silentLogger });
}

async function makeHarness(): Promise<BusHarness & { hub: TestHub; socket: string }> {
  const dir = tempDir('drover-bus-');
  fs.chmodSync(dir, 0o700);
  const socket = path.join(dir, 'daemon.sock');
  const store = await openStore({ backend: 'sqlite', path: path.join(dir, 'store.sqlite') });
  const harness = {
    // Tests replace it with a hub of their own; teardown stops whichever is current.
    hub: await new TestHub(socket, store).start(),
    socket,
    store,
    open: async () => bus(socket),
    teardown: async () => {
      await harness.hub.stop();
      await store.close();
    },
  };
  return harness;
}

busConformance('local', async () => makeHarness());

describe('local bus: the daemon is the hub', function () {
  this.timeout(30_000);
  let h: Awaited<ReturnType<typeof makeHarness>>;
  const opened: LocalBus[] = [];
  const open = (): LocalBus => {
    const b = bus(h.socket);
    opened.push(b);
    return b;
  };

  beforeEach(async () => {
    h = await makeHarness();
  });
  afterEach(async () => {
    for (const b of opened.splice(0)) await b.close();
    await h.teardown();
  });
  after(() => cleanupTempDirs());

  it('needs no hint: processes committed without any publish are handed out by the hub reading the outbox', async () => {
    const got: number[] = [];
    const c = await open().consumeTasks({ slots: 50, onTasks: (t) => got.push(...t.map((x) => x.processId)) });
    const ids = await h.store.createProcesses(Array.from({ length: 20 }, () => ({ type: 'nohint', inputs: null })));
    await waitUntil(() => got.length === 20, 10_000, 'the hub to find the processes on its own');
    assert.deepEqual(got, ids, 'in the order they were committed');
    await c.cancel();
  });

  it('hints alone dispatch a bulk submit larger than one bus message (the hub does not poll here)', async () => {
    await h.hub.stop();
    const quiet = await new TestHub(h.socket, h.store, 3_600_000).start();
    h.hub = quiet;
    const got = new Set<number>();
    const c = await open().consumeTasks({
      slots: 20_000,
      onTasks: (t) => t.forEach((x) => got.add(x.processId)),
    });
    await waitUntil(() => quiet.hub.stats().consumers === 1, 5000, 'the consumer');
    // The poll at start has run; from now on only hints can bring work.
    await new Promise((r) => setTimeout(r, 100));
    const ids = await h.store.createProcesses(Array.from({ length: 12_000 }, () => ({ type: 'bulk', inputs: null })));
    await open().publishContinue(ids);
    await waitUntil(() => got.size === ids.length, 20_000, 'every hinted process');
    await c.cancel();
  });

  it('a bus is connected once opened: a hint posted right after goes out before the program next waits (the hub does not poll here)', async () => {
    // A loop of awaited submits on SQLite never returns to the event loop, so a hint still waiting
    // for the socket's connect callback waited for the loop's end (or the hub's poll, a second
    // later) while the workers idled. The program here posts and exits at once, without close().
    const home = tempDir('drover-bus-open-');
    const env = { DROVER_HOME: home };
    const rt = runtimeDir('quick', env);
    fs.mkdirSync(rt, { recursive: true, mode: 0o700 });
    const quiet = await new TestHub(daemonFilePaths(rt, logDir('quick', env)).socket, h.store, 3_600_000).start();
    try {
      const got: number[] = [];
      const consumer = new LocalBus(new SocketLink(quiet.server.socketPath, 'quick', silentLogger), {
        logger: silentLogger,
      });
      opened.push(consumer);
      await consumer.consumeTasks({ slots: 5, onTasks: (t) => got.push(...t.map((x) => x.processId)) });
      await waitUntil(() => quiet.hub.stats().consumers === 1, 5000, 'the consumer');
      await new Promise((r) => setTimeout(r, 100)); // past the hub's poll at start: only a hint brings work now
      const [id] = await h.store.createProcesses([{ type: 'posted-then-exit', inputs: null }]);
      const script = `
        const { openBus } = await import(${JSON.stringify(path.join(REPO_ROOT, 'dist', 'src', 'broker', 'index.js'))});
        const bus = await openBus({ name: 'quick', broker: { kind: 'local' }, options: {} }, { env: { DROVER_HOME: ${JSON.stringify(home)} } });
        await bus.publishContinue([${id}]);
        process.exit(0);
      `;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
        encoding: 'utf8',
        timeout: 20_000,
      });
      assert.equal(r.status, 0, r.stderr);
      await waitUntil(() => got.includes(id!), 5000, 'the hint posted by the program that exited');
    } finally {
      await quiet.stop();
    }
  });

  it("a bulk submit's state events, many lines' worth, reach a subscriber whole and in order", async () => {
    const got: StateBroadcast[] = [];
    const unsubscribe = await open().subscribeEvents((m) => got.push(m));
    await waitUntil(() => h.hub.hub.stats().subscribers === 1, 5000, 'the subscriber');
    // Multi-byte types make the byte length differ from the string length near each line's end.
    const sent: StateBroadcast[] = Array.from({ length: 12_000 }, (_, i) => ({
      v: 1,
      kind: 'state',
      processId: i + 1,
      type: i % 7 === 0 ? `grüße.ünïcödé.${'€'.repeat(i % 50)}` : 'core.arithmetic.add',
      state: 'created',
      paused: false,
      parentId: null,
      exitStatus: null,
      time: 1_700_000_000_000 + i,
      runs: 0,
    }));
    const publisher = open();
    for (const e of sent) publisher.publishState(e);
    await waitUntil(() => got.length >= sent.length, 20_000, 'every event');
    assert.deepEqual(got, sent);
    await unsubscribe();
  });

  it('a subscription or control consumer is in place once made: what another peer sends right after reaches it', async () => {
    // The other peer is connected already, so its messages reach the hub at once; the new bus
    // still has to connect. A subscribe or consume-control still in flight would miss them.
    const other = open();
    await other.publishControl({ v: 1, kind: 'control', action: 'play', processId: 1 });
    for (let round = 1; round <= 20; round++) {
      const seen: number[] = [];
      const controls: number[] = [];
      const fresh = open();
      await fresh.subscribeEvents((m) => seen.push(m.processId));
      other.publishState(running(round));
      const fresh2 = open();
      await fresh2.consumeControl((m) => controls.push(m.processId));
      await other.publishControl({ v: 1, kind: 'control', action: 'pause', processId: round });
      await waitUntil(() => seen.includes(round), 5000, `round ${round}: the event published after subscribing`);
      await waitUntil(() => controls.includes(round), 5000, `round ${round}: the request published after consuming`);
      await fresh.close();
      await fresh2.close();
    }
  });

  it('survives its hub going away: a consumer and a subscriber resume with the next hub, the subscriber told of the gap', async () => {
    const got: number[] = [];
    const consumerBus = open();
    await consumerBus.consumeTasks({ slots: 10, onTasks: (t) => got.push(...t.map((x) => x.processId)) });
    let gaps = 0;
    const seen: number[] = [];
    const subBus = open();
    await subBus.subscribeEvents((m) => seen.push(m.processId), { onGap: () => gaps++ });
    await waitUntil(() => h.hub.hub.stats().consumers === 1 && h.hub.hub.stats().subscribers === 1, 10_000, 'peers');
    await h.hub.stop();
    await waitUntil(() => !consumerBus.health().connected, 5000, 'the link to notice');
    const [id] = await h.store.createProcesses([{ type: 'after-restart', inputs: null }]);
    const again = await new TestHub(h.socket, h.store).start();
    h.hub = again;
    await waitUntil(() => got.includes(id!), 10_000, 'the consumer to get work from the new hub');
    await waitUntil(() => gaps === 1, 10_000, 'the subscriber to be told it may have missed events');
    open().publishState(running(99));
    await waitUntil(() => seen.includes(99), 10_000, 'events to flow again');
  });

  it('with no daemon: hints go nowhere, control requests fail with BrokerError, subscribing does not throw', async () => {
    const missing = path.join(tempDir(), 'nobody.sock');
    const b = bus(missing);
    opened.push(b);
    await b.publishContinue([1, 2, 3]);
    await assert.rejects(
      b.publishControl({ v: 1, kind: 'control', action: 'kill', processId: 1 }),
      (err: unknown) => err instanceof BrokerError && /not reachable/.test(err.message),
    );
    const un = await b.subscribeEvents(() => undefined);
    assert.equal(b.health().connected, false);
    await un();
  });

  it('answers no post (a notification without id), logs a refused one, and answers the next request', async () => {
    const warnings: string[] = [];
    await h.hub.stop();
    h.hub = await new TestHub(
      h.socket,
      h.store,
      undefined,
      createLogger({ level: 'warn', sinks: [{ write: (_l, _s, m) => warnings.push(m) }] }),
    ).start();
    const got: number[] = [];
    await open().consumeTasks({ slots: 5, onTasks: (t) => got.push(...t.map((x) => x.processId)) });
    const [id] = await h.store.createProcesses([{ type: 'posted', inputs: null }]);
    const first = await firstLineBack(h.socket, [
      { v: 1, method: 'bus', params: { kind: 'dispatch', ids: [-1] } },
      { v: 1, method: 'bus', params: { kind: 'dispatch', ids: [id] } },
      { v: 1, id: 7, method: 'bus', params: { kind: 'subscribe', on: false } },
    ]);
    // The first line back is the reply to the request: the two posts got none.
    assert.deepEqual(JSON.parse(first), { v: 1, id: 7, ok: true, result: {} });
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(warnings[0]!, /refused a bus notification \(PARAMS_INVALID\): .*positive integer/);
    // The good post did its work.
    await waitUntil(() => got.includes(id!), 10_000, 'the posted hint dispatched');
  });

  it('stops reading a peer that posts events faster than it reads its own subscription: all arrive, it is not cut off', async () => {
    await h.hub.stop();
    h.hub = await new TestHub(h.socket, h.store, undefined, silentLogger, { maxPushBufferBytes: 1024 * 1024 }).start();
    const lines = 300;
    const perLine = 100; // about 15 KB a line, 4.5 MB in all: more than the peer's push buffer may hold
    const events = (l: number): StateBroadcast[] =>
      Array.from({ length: perLine }, (_, i) => ({ ...running(l * perLine + i + 1), type: 'x'.repeat(100) }));
    const outcome = await new Promise<{ got: number; closed: boolean }>((resolve) => {
      const s = net.createConnection(h.socket);
      let buf = '';
      let got = 0;
      let subscribed = false;
      s.on('data', (d) => {
        buf += d.toString();
        const parts = buf.split('\n');
        buf = parts.pop()!;
        for (const line of parts) {
          const o = JSON.parse(line) as { id?: number; bus?: { events: unknown[] } };
          if (o.id === 1 && !subscribed) {
            subscribed = true;
            // Subscribed: flood it without reading what comes back, then read it all.
            s.pause();
            for (let l = 0; l < lines; l++) {
              s.write(JSON.stringify({ v: 1, method: 'bus', params: { kind: 'states', events: events(l) } }) + '\n');
            }
            setTimeout(() => s.resume(), 500);
          } else if (o.bus) {
            got += o.bus.events.length;
            if (got === lines * perLine) {
              s.destroy();
              resolve({ got, closed: false });
            }
          }
        }
      });
      s.on('connect', () =>
        s.write(JSON.stringify({ v: 1, id: 1, method: 'bus', params: { kind: 'subscribe', on: true } }) + '\n'),
      );
      // Cut off by the daemon: the close, or a write that finds the connection gone (EPIPE).
      s.on('close', () => resolve({ got, closed: true }));
      s.on('error', () => resolve({ got, closed: true }));
    });
    assert.deepEqual(outcome, { got: lines * perLine, closed: false });
  });

  for (const queued of [undefined, 100]) {
    const limit = queued === undefined ? '' : ` (reading paused past ${queued} bytes of posts not yet handled)`;
    it(`takes a burst of posts larger than the pending-request limit without BUSY, and answers the request after it${limit}`, async () => {
      if (queued !== undefined) {
        await h.hub.stop();
        h.hub = await new TestHub(h.socket, h.store, undefined, silentLogger, {
          maxQueuedNotificationBytes: queued,
        }).start();
      }
      const got: number[] = [];
      await open().consumeTasks({ slots: 500, onTasks: (t) => got.push(...t.map((x) => x.processId)) });
      const ids = await h.store.createProcesses(Array.from({ length: 300 }, () => ({ type: 'burst', inputs: null })));
      // 300 posts (the limit for requests is 64) and a request, in one write: read in one go.
      const first = await firstLineBack(h.socket, [
        ...ids.map((id) => ({ v: 1, method: 'bus', params: { kind: 'dispatch', ids: [id] } })),
        { v: 1, id: 7, method: 'bus', params: { kind: 'subscribe', on: false } },
      ]);
      assert.deepEqual(JSON.parse(first), { v: 1, id: 7, ok: true, result: {} });
      await waitUntil(() => got.length === 300, 10_000, 'every burst process dispatched');
      assert.deepEqual(
        [...got].sort((a, b) => a - b),
        ids,
      );
    });
  }

  it('answers malformed bus messages with PARAMS_INVALID and keeps working', async () => {
    const replies = await new Promise<string[]>((resolve, reject) => {
      const s = net.createConnection(h.socket);
      let buf = '';
      const lines = [
        { v: 1, id: 1, method: 'bus', params: { kind: 'dispatch', ids: [-1] } },
        { v: 1, id: 2, method: 'bus', params: { kind: 'credit', n: 'lots' } },
        { v: 1, id: 3, method: 'bus', params: { kind: 'nonsense' } },
        { v: 1, id: 4, method: 'bus', params: 'not an object' },
        { v: 1, id: 5, method: 'bus', params: { kind: 'states', events: [{ processId: 1, state: 'bogus' }] } },
        {
          v: 1,
          id: 6,
          method: 'bus',
          params: { kind: 'dispatch', ids: Array.from({ length: 6000 }, (_, i) => i + 1) },
        },
        { v: 1, id: 7, method: 'bus', params: { kind: 'subscribe', on: true, terminalOnly: 'yes' } },
      ];
      s.on('connect', () => s.write(lines.map((l) => JSON.stringify(l) + '\n').join('')));
      s.on('data', (d) => {
        buf += d.toString();
        const got = buf.split('\n').filter((x) => x !== '');
        if (got.length >= 7) {
          s.destroy();
          resolve(got);
        }
      });
      s.on('error', reject);
    });
    for (const r of replies) {
      const o = JSON.parse(r) as { ok: boolean; error?: { code: string } };
      assert.equal(o.ok, false, r);
      assert.equal(o.error!.code, 'PARAMS_INVALID', r);
    }
    const last = JSON.parse(replies.find((r) => r.includes('"id":7'))!) as { error: { message: string } };
    assert.match(last.error.message, /'terminalOnly' must be a boolean/);
    // The hub still works.
    const got: number[] = [];
    await open().consumeTasks({ slots: 5, onTasks: (t) => got.push(...t.map((x) => x.processId)) });
    const ids = await h.store.createProcesses([{ type: 'after-garbage', inputs: null }]);
    await open().publishContinue(ids);
    await waitUntil(() => got.includes(ids[0]!), 10_000, 'work after the garbage');
  });
});
