/**
 * The conformance suite of {@link MessageBus}: every adapter must pass it unchanged (the store's
 * suite in test/store/conformance.ts is the model). An adapter's test file calls
 * {@link busConformance} with a harness that opens bus connections to one fresh profile (a fresh
 * RabbitMQ topology; a hub with its own control socket and SQLite store).
 *
 * Consumers here behave as workers do: they claim each task in the store, acknowledge the batch,
 * and give credit back when a "run" ends, so the local hub (which reads the store's outbox) and
 * RabbitMQ (which carries the messages) are held to the same contract.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import type { MessageBus, TaskConsumer, TaskDelivery } from '../../src/broker/index.js';
import type { ControlMessage, ProcessRecord, StateBroadcast } from '../../src/protocol/index.js';
import type { ProcessStore } from '../../src/store/index.js';
import { waitUntil } from '../helpers/env.js';

/** One fresh bus location, given by the adapter's test file. */
export interface BusHarness {
  /** Opens a new connection (a new peer) to the bus. */
  open(): Promise<MessageBus>;
  /** The profile's store (the local hub reads pending dispatches from it). */
  store: ProcessStore;
  teardown(): Promise<void>;
}

/** A consumer that records what it got; claims and acks like a worker, holds slots until released. */
class TestConsumer {
  readonly got: number[] = [];
  /** Processes it "runs" (claimed, slot held). */
  readonly running = new Set<number>();
  /** The claim token of each process it runs. */
  private readonly claims = new Map<number, number>();
  maxRunning = 0;
  consumer!: TaskConsumer;
  /** When set, tasks are handed back instead of claimed. */
  refuse = false;
  requeued = 0;

  constructor(
    private readonly store: ProcessStore,
    readonly owner: string,
  ) {}

  async start(bus: MessageBus, slots: number): Promise<this> {
    this.consumer = await bus.consumeTasks({ slots, onTasks: (t) => void this.onTasks(t) });
    return this;
  }

  private async onTasks(tasks: TaskDelivery[]): Promise<void> {
    if (this.refuse) {
      this.requeued += tasks.length;
      this.consumer.requeue(tasks);
      return;
    }
    const results = await this.store.claim(
      tasks.map((t) => t.processId),
      this.owner,
      60_000,
    );
    this.consumer.ack(tasks);
    let dropped = 0;
    tasks.forEach((t, i) => {
      this.got.push(t.processId);
      const r = results[i]!;
      if (r.claimed) {
        this.running.add(t.processId);
        this.claims.set(t.processId, r.claim);
      } else dropped++;
    });
    this.maxRunning = Math.max(this.maxRunning, this.running.size);
    this.consumer.credit(dropped);
  }

  /** Ends the "runs" of `n` processes (all when omitted): records outcomes, returns credit. */
  async finish(n = Infinity): Promise<number[]> {
    const ids = [...this.running].slice(0, n);
    for (const id of ids) this.running.delete(id);
    if (ids.length > 0) {
      await this.store.completeMany(
        ids.map((id) => ({
          id,
          owner: this.owner,
          claim: this.claims.get(id)!,
          outcome: { state: 'finished' as const, outputs: null, exitStatus: 0, exitMessage: null },
        })),
      );
      this.consumer.credit(ids.length);
    }
    return ids;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const state = (processId: number, i: number): StateBroadcast => ({
  v: 1,
  kind: 'state',
  processId,
  type: 'conformance',
  state: 'running',
  paused: false,
  parentId: null,
  exitStatus: i,
  time: Date.now(),
});

/** Registers the suite `name` on the harness that `setup` returns (called once, in `before`). */
export function busConformance(name: string, setup: (ctx: Mocha.Context) => Promise<BusHarness>): void {
  describe(`${name} bus conformance`, function () {
    this.timeout(60_000);
    let h: BusHarness;
    const opened: MessageBus[] = [];

    before(async function () {
      h = await setup(this);
    });
    afterEach(async () => {
      for (const b of opened.splice(0)) await b.close();
    });
    after(async () => {
      await h?.teardown();
    });

    async function open(): Promise<MessageBus> {
      const b = await h.open();
      opened.push(b);
      return b;
    }

    async function make(n: number): Promise<number[]> {
      const type = `conf-${crypto.randomBytes(4).toString('hex')}`;
      return h.store.createProcesses(Array.from({ length: n }, (_, i) => ({ type, inputs: { i } })));
    }

    /** Publishes as a submitter does (and marks them dispatched on a publish-mode bus). */
    async function publish(bus: MessageBus, ids: number[]): Promise<void> {
      const t = Date.now();
      await bus.publishContinue(ids);
      if (bus.dispatch === 'publish') await h.store.markDispatched(ids, t);
    }

    it('hands every task to exactly one consumer, never more than its credit, the least loaded first', async () => {
      const pub = await open();
      const a = await new TestConsumer(h.store, 'conf-a').start(await open(), 5);
      const b = await new TestConsumer(h.store, 'conf-b').start(await open(), 5);
      const ids = await make(40);
      await publish(pub, ids);
      await waitUntil(() => a.running.size === 5 && b.running.size === 5, 20_000, 'both consumers to fill their slots');
      // Nobody gets more while the slots are held.
      await sleep(300);
      assert.equal(a.got.length, 5);
      assert.equal(b.got.length, 5);
      // Free the slots step by step: the rest arrives, each task once.
      const done = new Set<number>();
      await waitUntil(
        async () => {
          for (const id of await a.finish(2)) done.add(id);
          for (const id of await b.finish(3)) done.add(id);
          return done.size === ids.length;
        },
        30_000,
        'all tasks to be run',
        20,
      );
      const all = [...a.got, ...b.got].sort((x, y) => x - y);
      assert.deepEqual(
        all,
        [...ids].sort((x, y) => x - y),
        'each task once, none lost',
      );
      assert.ok(a.maxRunning <= 5 && b.maxRunning <= 5, `credit exceeded: ${a.maxRunning}, ${b.maxRunning}`);
    });

    it('a task handed back goes to another consumer', async () => {
      const pub = await open();
      const picky = new TestConsumer(h.store, 'conf-picky');
      picky.refuse = true;
      await picky.start(await open(), 3);
      const ids = await make(6);
      await publish(pub, ids);
      await waitUntil(() => picky.requeued > 0, 20_000, 'the picky consumer to hand tasks back');
      const taker = await new TestConsumer(h.store, 'conf-taker').start(await open(), 10);
      await waitUntil(() => taker.running.size === ids.length, 20_000, 'the other consumer to take all of them');
      await picky.consumer.cancel();
      await taker.finish();
    });

    it("a consumer's tasks not yet acknowledged go to the others when it goes away", async () => {
      const pub = await open();
      const leaving = await open();
      const got: number[] = [];
      // Takes tasks and never acknowledges them.
      await leaving.consumeTasks({ slots: 4, onTasks: (t) => got.push(...t.map((x) => x.processId)) });
      const ids = await make(4);
      await publish(pub, ids);
      await waitUntil(() => got.length === 4, 20_000, 'the leaving consumer to get its tasks');
      opened.splice(opened.indexOf(leaving), 1);
      await leaving.close();
      const stayer = await new TestConsumer(h.store, 'conf-stayer').start(await open(), 10);
      await waitUntil(() => stayer.running.size === 4, 20_000, 'the tasks to reach the remaining consumer');
      assert.deepEqual(
        [...stayer.running].sort((x, y) => x - y),
        [...ids].sort((x, y) => x - y),
      );
      await stayer.finish();
    });

    it('a duplicate task is handed over again and the claim drops it', async () => {
      const pub = await open();
      const c = await new TestConsumer(h.store, 'conf-dup').start(await open(), 10);
      const [id] = await make(1);
      await publish(pub, [id!]);
      await waitUntil(() => c.running.has(id!), 20_000, 'the task to arrive');
      await c.finish();
      await publish(pub, [id!]);
      await sleep(500);
      assert.ok(!c.running.has(id!), 'a finished process must not run again');
    });

    it('control requests reach every control consumer', async () => {
      const pub = await open();
      const seen: Array<[string, ControlMessage]> = [];
      const a = await open();
      const b = await open();
      const stopA = await a.consumeControl((m) => seen.push(['a', m]));
      await b.consumeControl((m) => seen.push(['b', m]));
      const msg: ControlMessage = { v: 1, kind: 'control', action: 'kill', processId: 424242, message: 'x' };
      await pub.publishControl(msg);
      await waitUntil(() => seen.length === 2, 10_000, 'both control consumers');
      assert.deepEqual(seen.map((s) => s[0]).sort(), ['a', 'b']);
      assert.deepEqual(seen[0]![1], msg);
      await stopA();
      await pub.publishControl({ ...msg, action: 'pause' });
      await waitUntil(() => seen.length === 3, 10_000, 'the remaining control consumer');
      await sleep(200);
      assert.equal(seen.length, 3, 'a stopped control consumer gets nothing');
      assert.equal(seen[2]![0], 'b');
    });

    it('state events reach every subscriber in the order they were published; unsubscribe stops them', async () => {
      const pub = await open();
      const s1: StateBroadcast[] = [];
      const s2: StateBroadcast[] = [];
      const sub1 = await open();
      const sub2 = await open();
      const un1 = await sub1.subscribeEvents((m) => s1.push(m));
      await sub2.subscribeEvents((m) => s2.push(m));
      await sleep(100);
      for (let i = 0; i < 300; i++) pub.publishState(state(777, i));
      await waitUntil(() => s1.length >= 300 && s2.length >= 300, 10_000, 'every event at both subscribers');
      assert.deepEqual(
        s1.map((e) => e.exitStatus),
        Array.from({ length: 300 }, (_, i) => i),
      );
      assert.deepEqual(
        s2.map((e) => e.exitStatus),
        s1.map((e) => e.exitStatus),
      );
      await un1();
      pub.publishState(state(777, 1000));
      await waitUntil(() => s2.length === 301, 10_000, 'the last event at the remaining subscriber');
      await sleep(200);
      assert.equal(s1.length, 300);
    });

    it('a subscriber of ends gets only the changes that reach one, in order, beside one of every change', async () => {
      const pub = await open();
      const ends: StateBroadcast[] = [];
      const all: StateBroadcast[] = [];
      const mixedEnds: StateBroadcast[] = [];
      const mixedAll: StateBroadcast[] = [];
      await (await open()).subscribeEvents((m) => ends.push(m), { terminalOnly: true });
      await (await open()).subscribeEvents((m) => all.push(m));
      // One bus with both kinds of subscriber: each still gets what it asked for.
      const mixed = await open();
      await mixed.subscribeEvents((m) => mixedEnds.push(m), { terminalOnly: true });
      const unAll = await mixed.subscribeEvents((m) => mixedAll.push(m));
      await sleep(100);
      const states = ['running', 'finished', 'waiting', 'excepted', 'created', 'killed'] as const;
      const publishAll = (from: number): void => {
        for (let i = from; i < from + 60; i++) pub.publishState({ ...state(778, i), state: states[i % 6]! });
      };
      publishAll(0);
      await waitUntil(
        () => all.length >= 60 && mixedAll.length >= 60 && ends.length >= 30 && mixedEnds.length >= 30,
        10_000,
        'every change at the full subscribers and the ends at the others',
      );
      const endIndexes = Array.from({ length: 60 }, (_, i) => i).filter((i) => i % 2 === 1);
      assert.deepEqual(
        all.map((e) => e.exitStatus),
        Array.from({ length: 60 }, (_, i) => i),
      );
      assert.deepEqual(
        mixedAll.map((e) => e.exitStatus),
        all.map((e) => e.exitStatus),
      );
      assert.deepEqual(
        ends.map((e) => e.exitStatus),
        endIndexes,
      );
      assert.deepEqual(
        mixedEnds.map((e) => [e.exitStatus, e.state]),
        endIndexes.map((i) => [i, states[i % 6]]),
      );
      // The bus's full subscriber leaves: its ends-only one goes on with the ends alone.
      await unAll();
      publishAll(60);
      await waitUntil(() => ends.length >= 60 && mixedEnds.length >= 60, 10_000, 'the second round of ends');
      await sleep(200);
      assert.deepEqual(
        mixedEnds.map((e) => e.exitStatus),
        ends.map((e) => e.exitStatus),
      );
      assert.equal(mixedEnds.length, 60);
      assert.equal(mixedAll.length, 60, 'nothing after unsubscribe');
    });

    it("an end's record reaches subscribers whole; a record that is not one of that very end is dropped, the event kept", async () => {
      const pub = await open();
      const got: StateBroadcast[] = [];
      await (await open()).subscribeEvents((m) => got.push(m));
      await sleep(100);
      const record: ProcessRecord = {
        id: 779,
        uuid: crypto.randomUUID(),
        type: 'conformance',
        label: null,
        state: 'finished',
        paused: false,
        killRequested: false,
        inputs: { x: [1, 2] },
        outputs: { zeta: 1, a: 'b' },
        exitStatus: 0,
        exitMessage: null,
        exception: null,
        parentId: null,
        workerId: 'w1',
        leaseOwner: null,
        leaseExpiresAt: null,
        runs: 1,
        ctime: 1,
        mtime: 2,
      };
      const end = { ...state(779, 0), state: 'finished' as const, record };
      pub.publishState(end);
      const bad: unknown[] = [
        { ...end, exitStatus: 1, record: { ...record, id: 780 } }, // another process's
        { ...end, exitStatus: 2, state: 'excepted' }, // another state's
        { ...end, exitStatus: 3, record: { ...record, runs: 'one' } }, // a malformed field
        { ...end, exitStatus: 4, record: { ...record, mtime: undefined } }, // a missing field
        { ...end, exitStatus: 5, state: 'running', record: { ...record, state: 'running' } }, // not an end
      ];
      for (const b of bad) pub.publishState(b as StateBroadcast);
      await waitUntil(() => got.length >= 6, 10_000, 'every event at the subscriber');
      assert.deepEqual(got[0]!.record, record);
      assert.deepEqual(
        got.slice(1).map((e) => [e.exitStatus, e.record]),
        [1, 2, 3, 4, 5].map((i) => [i, undefined]),
      );
    });

    it('reports its health, and close() is safe twice', async () => {
      const bus = await h.open();
      // A local bus connects on first use; RabbitMQ at open.
      await bus.subscribeEvents(() => undefined);
      await waitUntil(() => bus.health().connected, 10_000, 'the bus to connect');
      assert.ok(['local', 'rabbitmq'].includes(bus.health().kind));
      const first = bus.close();
      const second = bus.close();
      assert.equal(first, second);
      await first;
    });
  });
}
