/**
 * The conformance suite of {@link ProcessStore}: every adapter must pass it unchanged. An adapter's
 * test file calls {@link storeConformance} with a harness that opens connections to one fresh store
 * (a temp SQLite file, a fresh PostgreSQL database). Tests share that store, so each one works on
 * processes it created (unique types) and never on global totals.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  InputError,
  JsonLimitError,
  LeaseLostError,
  NonDeterminismError,
  ProcessNotFoundError,
  StoreError,
  StoreVersionError,
} from '../../src/errors/index.js';
import { PROCESS_STATES, type JsonValue, type ProcessOutcome } from '../../src/protocol/index.js';
import type { ProcessStore } from '../../src/store/index.js';
import { verdicts } from '../helpers/complete.js';

/** Access to one store location, given by the adapter's test file. */
export interface StoreHarness {
  /** Opens a new connection (a new store object) to this location. */
  open(): Promise<ProcessStore>;
  /** Writes `version` into the schema_version table directly, behind the store's back. */
  insertSchemaVersion(version: number): Promise<void>;
  /** A harness on another, fresh location (an empty file or database). */
  fresh(): Promise<StoreHarness>;
  /** Removes the location. */
  teardown(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const uniqueType = (what: string) => `${what}-${crypto.randomBytes(4).toString('hex')}`;
const finished = (outputs: JsonValue = { ok: true }): ProcessOutcome => ({
  state: 'finished',
  outputs,
  exitStatus: 0,
  exitMessage: null,
});

/** Registers the suite `name` on the harness that `setup` returns (called once, in `before`). */
export function storeConformance(name: string, setup: (ctx: Mocha.Context) => Promise<StoreHarness>): void {
  describe(`${name} store conformance`, function () {
    let h: StoreHarness;
    let store: ProcessStore;
    let other: ProcessStore;
    const opened: ProcessStore[] = [];

    before(async function () {
      h = await setup(this);
      store = await h.open();
      other = await h.open();
    });
    after(async function () {
      await store?.close();
      await other?.close();
      for (const s of opened.splice(0)) await s.close();
      await h?.teardown();
    });

    /** Creates `n` processes of a fresh type; returns their ids and the type. */
    async function make(n = 1, what = 'p'): Promise<{ ids: number[]; type: string }> {
      const type = uniqueType(what);
      const ids = await store.createProcesses(Array.from({ length: n }, (_, i) => ({ type, inputs: { i } })));
      return { ids, type };
    }

    async function pending(s: ProcessStore = store): Promise<Set<number>> {
      return new Set(await s.pendingDispatches(0, 1_000_000));
    }

    /** A parent claimed by `owner` with `n` children (submitted through the journal). */
    async function family(owner: string, n: number): Promise<{ parent: number; children: number[] }> {
      const [parent] = (await make(1, 'parent')).ids;
      const c = await store.claim([parent!], owner, 60_000);
      assert.equal(c[0]!.claimed, true);
      const children: number[] = [];
      for (let i = 0; i < n; i++) {
        children.push(await store.submitChild(parent!, owner, 1, i, { type: 'child', inputs: { i } }));
      }
      return { parent: parent!, children };
    }

    describe('opening', function () {
      it('reports its backend, schema version and server version', async function () {
        assert.equal(store.backend, name === 'SQLite' ? 'sqlite' : 'postgres');
        assert.ok((await store.schemaVersion()) >= 1);
        assert.match(await store.serverVersion(), name === 'SQLite' ? /^SQLite \d+\.\d+\.\d+/ : /^PostgreSQL \d+/);
      });

      it('reopens an existing store with its data', async function () {
        const { ids, type } = await make(2);
        const again = await h.open();
        try {
          assert.equal(await again.schemaVersion(), await store.schemaVersion());
          const list = await again.listProcesses({ type });
          assert.deepEqual(
            list.map((p) => p.id),
            [...ids].reverse(),
          );
        } finally {
          await again.close();
        }
      });

      it('migrates a fresh store once when several connections open it at once', async function () {
        const f = await h.fresh();
        try {
          const stores = await Promise.all([f.open(), f.open(), f.open()]);
          try {
            const versions = await Promise.all(stores.map((s) => s.schemaVersion()));
            assert.ok(versions.every((v) => v === versions[0] && v >= 1));
            const ids = await stores[1]!.createProcesses([{ type: 'x', inputs: null }]);
            assert.deepEqual(ids, [1]);
          } finally {
            for (const s of stores) await s.close();
          }
        } finally {
          await f.teardown();
        }
      });

      it('records the profile it belongs to once: the first adopter wins, later ones are told who', async function () {
        const f = await h.fresh();
        try {
          const stores = await Promise.all([f.open(), f.open(), f.open()]);
          try {
            assert.equal(await stores[0]!.storeProfile(), null, 'a new store belongs to no profile');
            const uuids: string[] = stores.map(() => crypto.randomUUID());
            const before = Date.now();
            // Three openers at once: exactly one records its profile, every one gets the winner.
            const results = await Promise.all(stores.map((s, i) => s.adoptProfile(uuids[i]!, `p${i}`)));
            assert.equal(results.filter((r) => r.adopted).length, 1, JSON.stringify(results));
            const winner = results.find((r) => r.adopted)!.owner;
            assert.ok(uuids.includes(winner.uuid));
            assert.equal(winner.name, `p${uuids.indexOf(winner.uuid)}`);
            assert.ok(winner.since >= before - 1000 && winner.since <= Date.now() + 1000);
            for (const r of results) assert.deepEqual(r.owner, winner);
            // Never replaced, by anyone, and seen on every connection.
            const again = await stores[2]!.adoptProfile(crypto.randomUUID(), 'late');
            assert.deepEqual(again, { owner: winner, adopted: false });
            assert.deepEqual(await stores[1]!.storeProfile(), winner);
            const same = await stores[0]!.adoptProfile(winner.uuid, 'renamed');
            assert.deepEqual(same, { owner: winner, adopted: false });
          } finally {
            for (const s of stores) await s.close();
          }
        } finally {
          await f.teardown();
        }
      });

      it('refuses bad arguments to adoptProfile', async function () {
        await assert.rejects(store.adoptProfile('not-a-uuid', 'x'), InputError);
        await assert.rejects(store.adoptProfile(crypto.randomUUID(), ''), InputError);
      });

      it('refuses a store whose schema is newer than the code', async function () {
        const f = await h.fresh();
        try {
          const s = await f.open();
          const v = await s.schemaVersion();
          await s.close();
          await f.insertSchemaVersion(v + 1);
          await assert.rejects(f.open(), (err: unknown) => {
            assert.ok(err instanceof StoreVersionError);
            assert.equal(err.code, 'STORE_VERSION');
            assert.match(err.message, new RegExp(`schema version ${v + 1}`));
            return true;
          });
        } finally {
          await f.teardown();
        }
      });

      it('close() is safe twice and later calls fail with StoreError', async function () {
        const s = await h.open();
        await s.close();
        await s.close();
        await assert.rejects(s.getProcess(1), StoreError);
      });
    });

    describe('createProcesses', function () {
      it('creates processes in state created, pending dispatch, ids in order', async function () {
        const before = Date.now();
        const type = uniqueType('create');
        const ids = await store.createProcesses([
          { type, inputs: { a: 1, nested: [1, 'two', null] }, label: 'first' },
          { type, inputs: 'plain' },
        ]);
        assert.equal(ids.length, 2);
        assert.ok(ids[1]! > ids[0]!);
        const p = await store.getProcess(ids[0]!);
        assert.ok(p);
        assert.match(p.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/);
        assert.deepEqual(
          { ...p, uuid: '', ctime: 0, mtime: 0 },
          {
            id: ids[0],
            uuid: '',
            type,
            label: 'first',
            state: 'created',
            paused: false,
            killRequested: false,
            inputs: { a: 1, nested: [1, 'two', null] },
            outputs: null,
            exitStatus: null,
            exitMessage: null,
            exception: null,
            parentId: null,
            workerId: null,
            leaseOwner: null,
            leaseExpiresAt: null,
            runs: 0,
            ctime: 0,
            mtime: 0,
          },
        );
        assert.ok(p.ctime >= before - 1000 && p.ctime <= Date.now() + 1000);
        assert.equal(p.mtime, p.ctime);
        assert.equal((await store.getProcess(ids[1]!))!.inputs, 'plain');
        const pend = await pending();
        assert.ok(pend.has(ids[0]!) && pend.has(ids[1]!));
      });

      it('creates thousands in one call', async function () {
        const { ids, type } = await make(3000, 'batch');
        assert.equal(new Set(ids).size, 3000);
        assert.equal((await store.listProcesses({ type })).length, 3000);
      });

      it('returns [] for an empty batch', async function () {
        assert.deepEqual(await store.createProcesses([]), []);
      });

      it('refuses bad specs with InputError and writes nothing', async function () {
        const type = uniqueType('bad');
        await assert.rejects(
          store.createProcesses([
            { type, inputs: 1 },
            { type: '', inputs: 1 },
          ]),
          InputError,
        );
        await assert.rejects(
          store.createProcesses([{ type, inputs: { f: () => 1 } as never }]),
          /inputs of a '.*' process are not a JSON value/,
        );
        await assert.rejects(store.createProcesses([{ type, inputs: 1, parentId: 999_999_999 }]), ProcessNotFoundError);
        assert.deepEqual(await store.listProcesses({ type }), []);
      });

      it('refuses inputs past the depth and size limits, naming the limit, without overflowing the stack', async function () {
        const type = uniqueType('limits');
        let deep: JsonValue = [];
        for (let i = 1; i < 100_000; i++) deep = [deep];
        await assert.rejects(
          store.createProcesses([
            { type, inputs: 1 },
            { type, inputs: deep },
          ]),
          (err: Error) =>
            err instanceof JsonLimitError &&
            /spec #1: inputs of a '.*' process nest deeper than the limit of 64 levels/.test(err.message),
        );
        await assert.rejects(
          store.createProcesses([{ type, inputs: '\u0001'.repeat(3 * 1024 * 1024) }]),
          /inputs of a '.*' process are larger than the limit of 16 MiB of JSON text/,
        );
        assert.deepEqual(await store.listProcesses({ type }), []);
      });

      it('returns null for an unknown process', async function () {
        assert.equal(await store.getProcess(999_999_999), null);
      });
    });

    describe('dispatch outbox', function () {
      it('markDispatched clears the pending flag', async function () {
        const { ids } = await make(3);
        await store.markDispatched(ids.slice(0, 2));
        const pend = await pending();
        assert.ok(!pend.has(ids[0]!) && !pend.has(ids[1]!) && pend.has(ids[2]!));
      });

      it('markDispatched with requestedUpTo keeps newer requests', async function () {
        const before = Date.now() - 60_000;
        const { ids } = await make(1);
        await store.markDispatched(ids, before);
        assert.ok((await pending()).has(ids[0]!), 'a request made after requestedUpTo survives');
        await store.markDispatched(ids, Date.now() + 60_000);
        assert.ok(!(await pending()).has(ids[0]!));
      });

      it('markDispatched with a time per id clears each up to its own time, and refuses a length mismatch', async function () {
        const { ids } = await make(2);
        await store.markDispatched(ids, [Date.now() + 60_000, Date.now() - 60_000]);
        const pend = await pending();
        assert.ok(!pend.has(ids[0]!), 'cleared: its request was before its time');
        assert.ok(pend.has(ids[1]!), 'kept: its request came after its time');
        await assert.rejects(store.markDispatched(ids, [Date.now()]), InputError);
      });

      it('markDispatched records the hand-over until a claim, refused or not, or a kill clears it', async function () {
        const before = await store.outboxCounts();
        const { ids } = await make(5);
        const mid = await store.outboxCounts();
        assert.equal(mid.pending - before.pending, 5);
        assert.equal(mid.unclaimed, before.unclaimed);
        await store.markDispatched(ids);
        const after = await store.outboxCounts();
        assert.equal(after.pending, before.pending, 'no longer pending');
        assert.equal(after.unclaimed - before.unclaimed, 5, 'handed over, not claimed');
        const listed = await store.unclaimedDispatches(0, 1_000_000);
        const pos = ids.map((id) => listed.indexOf(id));
        assert.ok(
          pos.every((p) => p >= 0),
          'every one is listed',
        );
        assert.deepEqual(
          [...pos].sort((a, b) => a - b),
          pos,
          'oldest hand-over first',
        );
        assert.ok(!(await store.unclaimedDispatches(60_000, 1_000_000)).includes(ids[0]!), 'younger than the bound');
        assert.equal((await store.unclaimedDispatches(0, 2)).length, 2);

        // A claim clears it; so does a refused claim (the process is paused) and a kill.
        const [c] = await store.claim([ids[0]!], 'w-handover', 30_000);
        assert.ok(c?.claimed);
        await store.setPaused([ids[1]!], true);
        assert.ok(!(await store.unclaimedDispatches(0, 1_000_000)).includes(ids[1]!), 'a paused one is not listed');
        assert.equal((await store.claim([ids[1]!], 'w-handover', 30_000))[0]!.claimed, false);
        await store.setPaused([ids[1]!], false);
        assert.equal(await store.requestKill(ids[2]!, 'gone'), 'killed');
        const left = new Set(await store.unclaimedDispatches(0, 1_000_000));
        assert.deepEqual(
          ids.map((id) => left.has(id)),
          [false, false, false, true, true],
        );
        // The un-paused one is pending again (not handed over); a marked-again claimed one stays clear.
        assert.ok((await pending()).has(ids[1]!));
        await store.markDispatched([ids[0]!]);
        assert.ok(!(await store.unclaimedDispatches(0, 1_000_000)).includes(ids[0]!), 'claimed: not marked again');
        assert.equal((await store.outboxCounts()).unclaimed - before.unclaimed, 2);
      });

      it('a second markDispatched of an unclaimed process (a re-dispatch) makes it the newest', async function () {
        const { ids } = await make(2);
        await store.markDispatched(ids);
        await sleep(5);
        await store.markDispatched([ids[0]!]);
        const listed = await store.unclaimedDispatches(0, 1_000_000);
        assert.ok(listed.indexOf(ids[1]!) < listed.indexOf(ids[0]!), 'the re-dispatched one moved behind');
        await assert.rejects(store.unclaimedDispatches(-1, 10), InputError);
        await assert.rejects(store.unclaimedDispatches(0, 0), InputError);
      });

      it('pendingDispatches respects olderThanMs and limit, oldest first', async function () {
        const { ids } = await make(3);
        const fresh = await store.pendingDispatches(60_000, 1_000_000);
        assert.ok(!fresh.includes(ids[0]!), 'a just-created process is left to its submitter');
        const all = await store.pendingDispatches(0, 1_000_000);
        const pos = ids.map((id) => all.indexOf(id));
        assert.ok(pos.every((p) => p >= 0));
        assert.ok(pos[0]! < pos[1]! && pos[1]! < pos[2]!);
        assert.equal((await store.pendingDispatches(0, 2)).length, 2);
        await assert.rejects(store.pendingDispatches(0, 0), InputError);
      });
    });

    describe('claim and leases', function () {
      it('claims a process: running, leased, runs+1, not pending, with its journal', async function () {
        const { ids } = await make(1);
        const id = ids[0]!;
        const t0 = Date.now();
        const [r] = await store.claim([id], 'w1', 30_000);
        assert.ok(r && r.claimed);
        assert.equal(r.process.state, 'running');
        assert.equal(r.process.leaseOwner, 'w1');
        assert.equal(r.process.workerId, 'w1');
        assert.equal(r.process.runs, 1);
        assert.ok(r.process.leaseExpiresAt! >= t0 + 29_000 && r.process.leaseExpiresAt! <= Date.now() + 31_000);
        assert.deepEqual(r.journal, []);
        assert.ok(!(await pending()).has(id));
        assert.deepEqual(await store.getProcess(id), r.process);
      });

      it('gives the reason a claim fails', async function () {
        const { ids } = await make(3);
        const [leased, paused, done] = ids as [number, number, number];
        await store.claim([leased, done], 'w1', 30_000);
        await store.complete(done, 'w1', 1, finished());
        await store.setPaused([paused], true);
        const rs = await store.claim([leased, paused, done, 999_999_999], 'w2', 30_000);
        assert.deepEqual(rs, [
          { claimed: false, reason: 'leased' },
          { claimed: false, reason: 'paused' },
          { claimed: false, reason: 'terminal' },
          { claimed: false, reason: 'not-found' },
        ]);
        const again = await store.claim([leased], 'w1', 30_000);
        assert.deepEqual(again, [{ claimed: false, reason: 'leased' }], 'a duplicate delivery is refused');
      });

      it('two connections claiming the same ids at once: exactly one wins each', async function () {
        const { ids } = await make(40);
        const [a, b] = await Promise.all([store.claim(ids, 'A', 30_000), other.claim([...ids].reverse(), 'B', 30_000)]);
        const bById = new Map([...ids].reverse().map((id, i) => [id, b[i]!]));
        let wonA = 0;
        ids.forEach((id, i) => {
          const ra = a[i]!;
          const rb = bById.get(id)!;
          assert.equal(Number(ra.claimed) + Number(rb.claimed), 1, `process ${id} claimed exactly once`);
          const loser = ra.claimed ? rb : ra;
          assert.deepEqual(loser, { claimed: false, reason: 'leased' });
          if (ra.claimed) wonA++;
        });
        const owners = await Promise.all(ids.map(async (id) => (await store.getProcess(id))!.leaseOwner));
        assert.equal(owners.filter((o) => o === 'A').length, wonA);
        assert.equal(owners.filter((o) => o === 'B').length, ids.length - wonA);
      });

      it('renewLeases extends only the leases the owner holds', async function () {
        const { ids } = await make(2);
        await store.claim([ids[0]!], 'w1', 1_000);
        await store.claim([ids[1]!], 'w2', 1_000);
        const before = (await store.getProcess(ids[0]!))!.leaseExpiresAt!;
        const held = await store.renewLeases(
          'w1',
          ids.map((id) => ({ id, claim: 1 })),
          60_000,
        );
        assert.deepEqual(held, [ids[0]]);
        assert.ok((await store.getProcess(ids[0]!))!.leaseExpiresAt! > before + 50_000);
        assert.ok((await store.getProcess(ids[1]!))!.leaseExpiresAt! < Date.now() + 5_000);
      });

      it('an expired lease can be claimed by another worker, and pendingDispatches re-dispatches it', async function () {
        const { ids } = await make(2);
        await store.claim(ids, 'dead', 100);
        await store.markDispatched(ids);
        assert.deepEqual(
          (await other.claim([ids[0]!], 'w2', 30_000)).map((r) => r.claimed),
          [false],
        );
        await sleep(150);
        const [taken] = await other.claim([ids[0]!], 'w2', 30_000);
        assert.ok(taken && taken.claimed);
        assert.equal(taken.process.runs, 2);
        assert.equal(taken.process.leaseOwner, 'w2');
        // The other one: its lease expired and nobody took it; the sweep turns it into a pending dispatch.
        const sweep = await other.pendingDispatches(60_000, 1_000_000);
        assert.ok(sweep.includes(ids[1]!), 'an expired lease is dispatched at once, whatever olderThanMs');
        assert.ok(!sweep.includes(ids[0]!));
        const p = (await store.getProcess(ids[1]!))!;
        assert.equal(p.leaseOwner, null);
        assert.equal(p.leaseExpiresAt, null);
        assert.equal(p.state, 'running');
        assert.deepEqual(
          await store.renewLeases('dead', [{ id: ids[1]!, claim: 1 }], 1_000),
          [],
          'the dead owner lost it',
        );
        const [r] = await store.claim([ids[1]!], 'w3', 30_000);
        assert.ok(r && r.claimed && r.process.runs === 2);
      });

      it('releaseLeases releases, marks pending and keeps the state', async function () {
        const { ids } = await make(3);
        const w1 = uniqueType('releasing-worker');
        await store.claim(ids, w1, 30_000);
        assert.deepEqual(
          await store.releaseLeases(w1, [
            { id: ids[0]!, claim: 1 },
            { id: 999_999_999, claim: 1 },
          ]),
          [ids[0]],
        );
        let p = (await store.getProcess(ids[0]!))!;
        assert.equal(p.state, 'running');
        assert.equal(p.leaseOwner, null);
        assert.ok((await pending()).has(ids[0]!));
        const [r] = await other.claim([ids[0]!], 'w2', 30_000);
        assert.ok(r && r.claimed, 'a released process can be claimed by anyone');
        assert.deepEqual(await store.releaseLeases('nobody'), []);
        const all = await store.releaseLeases(w1);
        assert.deepEqual(all, [ids[1], ids[2]]);
        p = (await store.getProcess(ids[2]!))!;
        assert.equal(p.leaseOwner, null);
        assert.equal((await store.getProcess(ids[0]!))!.leaseOwner, 'w2', "another owner's lease is untouched");
      });
    });

    describe('releaseLeasesByPrefix', function () {
      it('releases the leases of owners with the prefix except the live ones, and marks them pending', async function () {
        const prefix = `${uniqueType('host')}:abc-w`;
        const { ids } = await make(5);
        const owners = [`${prefix}1-a`, `${prefix}1-b`, `${prefix}2-c`, 'other-host:abc-w1-d', `${prefix}3-e`];
        for (let i = 0; i < 5; i++) assert.ok((await store.claim([ids[i]!], owners[i]!, 60_000))[0]!.claimed);
        await store.markDispatched(ids);
        const released = await store.releaseLeasesByPrefix(prefix, [`${prefix}2-c`, `${prefix}3-e`, 'unknown']);
        assert.deepEqual(released, [
          { id: ids[0]!, owner: owners[0]! },
          { id: ids[1]!, owner: owners[1]! },
        ]);
        const pend = await pending();
        assert.ok(pend.has(ids[0]!) && pend.has(ids[1]!), 'released ones are pending dispatch');
        for (const i of [2, 3, 4]) {
          assert.equal((await store.getProcess(ids[i]!))!.leaseOwner, owners[i], `lease ${i} untouched`);
          assert.ok(!pend.has(ids[i]!));
        }
        assert.deepEqual(await store.releaseLeasesByPrefix(prefix, [`${prefix}2-c`, `${prefix}3-e`]), []);
        assert.deepEqual(
          (await store.releaseLeasesByPrefix(prefix, [])).map((r) => r.id),
          [ids[2], ids[4]],
        );
        // A prefix is matched literally: LIKE wildcards in it match nothing else.
        assert.deepEqual(await store.releaseLeasesByPrefix('other%', []), []);
        assert.deepEqual(await store.releaseLeasesByPrefix('other_host', []), []);
        assert.equal((await store.getProcess(ids[3]!))!.leaseOwner, owners[3]);
        await assert.rejects(store.releaseLeasesByPrefix('', []), InputError);
        await assert.rejects(store.releaseLeasesByPrefix(prefix, 'x' as unknown as string[]), InputError);
      });
    });

    describe('complete', function () {
      it('records each outcome, clears the lease, only for the lease holder', async function () {
        const { ids } = await make(3);
        const [a, b, c] = ids as [number, number, number];
        await store.claim(ids, 'w1', 30_000);
        await store.requestKill(c, 'stop');
        assert.deepEqual(await store.complete(a, 'intruder', 1, finished()), {
          ok: false,
          wokenParentId: null,
          stored: null,
        });
        assert.equal((await store.getProcess(a))!.state, 'running');
        const rs = await store.completeMany([
          {
            id: a,
            owner: 'w1',
            claim: 1,
            outcome: { state: 'finished', outputs: { n: 42 }, exitStatus: 3, exitMessage: 'meh' },
          },
          { id: b, owner: 'w1', claim: 1, outcome: { state: 'excepted', exception: 'Error: boom\n  at x' } },
          { id: c, owner: 'w1', claim: 1, outcome: { state: 'killed', exitMessage: 'stop' } },
        ]);
        assert.deepEqual(verdicts(rs), [
          { ok: true, wokenParentId: null },
          { ok: true, wokenParentId: null },
          { ok: true, wokenParentId: null },
        ]);
        const [pa, pb, pc] = await Promise.all(ids.map((id) => store.getProcess(id)));
        assert.deepEqual(
          [pa!.state, pa!.outputs, pa!.exitStatus, pa!.exitMessage, pa!.leaseOwner, pa!.leaseExpiresAt, pa!.workerId],
          ['finished', { n: 42 }, 3, 'meh', null, null, 'w1'],
        );
        // What each completion says it stored is what a read gives back.
        assert.deepEqual(
          rs.map((r) => r.stored),
          [pa, pb, pc].map((p) => ({
            state: p!.state,
            outputs: p!.outputs,
            exitStatus: p!.exitStatus,
            exitMessage: p!.exitMessage,
            exception: p!.exception,
            mtime: p!.mtime,
          })),
        );
        assert.deepEqual([pb!.state, pb!.exception, pb!.outputs], ['excepted', 'Error: boom\n  at x', null]);
        assert.deepEqual([pc!.state, pc!.exitMessage, pc!.killRequested], ['killed', 'stop', false]);
        assert.deepEqual(verdicts(await store.complete(a, 'w1', 1, finished())), { ok: false, wokenParentId: null });
        assert.equal((await store.getProcess(a))!.exitStatus, 3, 'a second completion changes nothing');
        assert.ok(!(await pending()).has(a));
        await assert.rejects(store.complete(a, 'w1', 1, { state: 'nope' } as never), InputError);
      });
    });

    describe('journal', function () {
      it('appends in seq order, refuses duplicates and non-holders, returns it on claim', async function () {
        const { ids } = await make(1);
        const id = ids[0]!;
        await store.claim([id], 'w1', 30_000);
        await store.appendJournal(id, 'w1', 1, { seq: 1, kind: 'step', name: 'b', result: { x: [1, 2] } });
        await store.appendJournal(id, 'w1', 1, { seq: 0, kind: 'step', name: 'a', result: null });
        const j = await store.getJournal(id);
        assert.deepEqual(j, [
          { seq: 0, kind: 'step', name: 'a', result: null },
          { seq: 1, kind: 'step', name: 'b', result: { x: [1, 2] } },
        ]);
        await assert.rejects(
          store.appendJournal(id, 'w1', 1, { seq: 1, kind: 'step', name: 'b', result: 1 }),
          (err: unknown) => err instanceof StoreError && /already has an entry at seq 1/.test(err.message),
        );
        await assert.rejects(
          store.appendJournal(id, 'w2', 1, { seq: 2, kind: 'step', name: 'c', result: 1 }),
          (err: unknown) => err instanceof LeaseLostError && err.code === 'STORE_LEASE_LOST',
        );
        await assert.rejects(
          store.appendJournal(999_999_999, 'w1', 1, { seq: 0, kind: 'step', name: 'c', result: 1 }),
          ProcessNotFoundError,
        );
        assert.equal((await store.getJournal(id)).length, 2);
        await store.releaseLeases('w1', [{ id, claim: 1 }]);
        const [r] = await other.claim([id], 'w2', 30_000);
        assert.ok(r && r.claimed);
        assert.deepEqual(r.journal, j);
        assert.deepEqual(await store.getJournal(999_999_999), []);
      });

      it('a repeat of an append whose answer was lost (the identical entry) does nothing', async function () {
        const { ids } = await make(1);
        const id = ids[0]!;
        await store.claim([id], 'w1', 30_000);
        const entry = { seq: 0, kind: 'step' as const, name: 'a', result: { b: [1, { c: 'd' }], a: null } };
        await store.appendJournal(id, 'w1', 1, entry);
        await store.appendJournal(id, 'w1', 1, { ...entry, result: { a: null, b: [1, { c: 'd' }] } });
        assert.deepEqual(await store.getJournal(id), [entry]);
        await assert.rejects(
          store.appendJournal(id, 'w1', 1, { ...entry, name: 'other' }),
          (err: unknown) => err instanceof StoreError && /already has an entry at seq 0/.test(err.message),
        );
        await assert.rejects(store.appendJournal(id, 'w2', 1, entry), LeaseLostError, 'only for the lease holder');
      });
    });

    describe('submitChild', function () {
      it('creates the child and journals it once per seq', async function () {
        const { parent, children } = await family('w1', 1);
        const child = children[0]!;
        const c = (await store.getProcess(child))!;
        assert.equal(c.parentId, parent);
        assert.equal(c.state, 'created');
        assert.equal(c.type, 'child');
        assert.ok((await pending()).has(child));
        assert.deepEqual(await store.getJournal(parent), [{ seq: 0, kind: 'submit', name: 'child', result: child }]);
        const again = await store.submitChild(parent, 'w1', 1, 0, { type: 'child', inputs: { i: 0 } });
        assert.equal(again, child, 'a replay returns the journaled child');
        assert.equal((await store.listProcesses({ parentId: parent })).length, 1, 'no second child');
        const [r1, r2] = await Promise.all([
          store.submitChild(parent, 'w1', 1, 1, { type: 'child', inputs: 1 }),
          other.submitChild(parent, 'w1', 1, 1, { type: 'child', inputs: 1 }),
        ]);
        assert.equal(r1, r2, 'concurrent submissions at one seq create one child');
        assert.equal((await store.listProcesses({ parentId: parent })).length, 2);
      });

      it('refuses a caller without the lease, and a seq holding a step', async function () {
        const { parent } = await family('w1', 0);
        await assert.rejects(store.submitChild(parent, 'w2', 1, 0, { type: 'child', inputs: 1 }), LeaseLostError);
        await store.appendJournal(parent, 'w1', 1, { seq: 0, kind: 'step', name: 's', result: 1 });
        await assert.rejects(store.submitChild(parent, 'w1', 1, 0, { type: 'child', inputs: 1 }), NonDeterminismError);
        await assert.rejects(
          store.submitChild(999_999_999, 'w1', 1, 0, { type: 'child', inputs: 1 }),
          ProcessNotFoundError,
        );
        assert.deepEqual(await store.listProcesses({ parentId: parent }), []);
      });
    });

    describe('waitForChildren', function () {
      it('goes on running when every child has terminated', async function () {
        const { parent, children } = await family('w1', 2);
        await store.claim(children, 'w2', 30_000);
        await store.completeMany(children.map((id) => ({ id, owner: 'w2', claim: 1, outcome: finished() })));
        assert.deepEqual(await store.waitForChildren(parent, 'w1', 1, children), { waiting: false });
        assert.deepEqual(await store.waitForChildren(parent, 'w1', 1, []), { waiting: false });
        const p = (await store.getProcess(parent))!;
        assert.equal(p.state, 'running');
        assert.equal(p.leaseOwner, 'w1');
      });

      it('waits holding no lease, not pending; the last child to end wakes it', async function () {
        const { parent, children } = await family('w1', 3);
        const [c1, c2, c3] = children as [number, number, number];
        await store.claim(children, 'w2', 30_000);
        await store.complete(c1, 'w2', 1, finished());
        assert.deepEqual(await store.waitForChildren(parent, 'w1', 1, children), { waiting: true });
        let p = (await store.getProcess(parent))!;
        assert.equal(p.state, 'waiting');
        assert.equal(p.leaseOwner, null);
        assert.equal(p.leaseExpiresAt, null);
        assert.ok(!(await pending()).has(parent), 'a waiting parent is not dispatched');
        assert.deepEqual(await store.claim([parent], 'w3', 30_000), [{ claimed: false, reason: 'waiting' }]);
        assert.deepEqual(verdicts(await store.complete(c2, 'w2', 1, finished())), { ok: true, wokenParentId: null });
        assert.ok(!(await pending()).has(parent));
        assert.deepEqual(verdicts(await store.complete(c3, 'w2', 1, { state: 'excepted', exception: 'x' })), {
          ok: true,
          wokenParentId: parent,
        });
        assert.ok((await pending()).has(parent), 'the woken parent is pending dispatch');
        p = (await store.getProcess(parent))!;
        assert.equal(p.state, 'waiting');
        const [r] = await store.claim([parent], 'w3', 30_000);
        assert.ok(r && r.claimed);
        assert.equal(r.process.state, 'running');
        assert.equal(r.process.runs, 2);
        assert.equal(r.journal.length, 3);
      });

      it('wakes only for awaited children, and once', async function () {
        const { parent, children } = await family('w1', 2);
        const [c1, c2] = children as [number, number];
        await store.claim(children, 'w2', 30_000);
        assert.deepEqual(await store.waitForChildren(parent, 'w1', 1, [c2]), { waiting: true });
        assert.deepEqual(verdicts(await store.complete(c1, 'w2', 1, finished())), { ok: true, wokenParentId: null });
        assert.deepEqual(await store.claim([parent], 'w3', 30_000), [{ claimed: false, reason: 'waiting' }]);
        assert.deepEqual(verdicts(await store.complete(c2, 'w2', 1, finished())), { ok: true, wokenParentId: parent });
      });

      it('completeMany wakes a parent once, reported by the child that ended its wait', async function () {
        const { parent, children } = await family('w1', 4);
        const [c1, c2, c3, c4] = children as [number, number, number, number];
        await store.claim(children, 'w2', 30_000);
        assert.deepEqual(await store.waitForChildren(parent, 'w1', 1, [c1, c2, c3]), { waiting: true });
        const rs = await store.completeMany([
          { id: c2, owner: 'w2', claim: 1, outcome: finished() },
          { id: c1, owner: 'w2', claim: 1, outcome: finished() },
          { id: c2, owner: 'w2', claim: 1, outcome: finished() },
          { id: c3, owner: 'intruder', claim: 1, outcome: finished() },
        ]);
        assert.deepEqual(verdicts(rs), [
          { ok: true, wokenParentId: null },
          { ok: true, wokenParentId: null },
          { ok: false, wokenParentId: null },
          { ok: false, wokenParentId: null },
        ]);
        assert.deepEqual(await store.claim([parent], 'w3', 30_000), [{ claimed: false, reason: 'waiting' }]);
        const rs2 = await store.completeMany([
          { id: c3, owner: 'w2', claim: 1, outcome: finished() },
          { id: c4, owner: 'w2', claim: 1, outcome: finished() },
        ]);
        assert.deepEqual(verdicts(rs2), [
          { ok: true, wokenParentId: parent },
          { ok: true, wokenParentId: null },
        ]);
        assert.ok((await pending()).has(parent));
      });

      it('completeMany of top-level processes and children in one batch records each once and wakes the parent', async function () {
        const { parent, children } = await family('w1', 1);
        const { ids: tops } = await make(2);
        const [t1, t2] = tops as [number, number];
        await store.claim([...children, t1, t2], 'w2', 30_000);
        assert.deepEqual(await store.waitForChildren(parent, 'w1', 1, children), { waiting: true });
        const rs = await store.completeMany([
          { id: t2, owner: 'w2', claim: 1, outcome: finished({ n: 2 }) },
          { id: children[0]!, owner: 'w2', claim: 1, outcome: finished() },
          { id: t1, owner: 'intruder', claim: 1, outcome: finished() },
          { id: t2, owner: 'w2', claim: 1, outcome: finished({ n: 3 }) },
        ]);
        assert.deepEqual(verdicts(rs), [
          { ok: true, wokenParentId: null },
          { ok: true, wokenParentId: parent },
          { ok: false, wokenParentId: null },
          { ok: false, wokenParentId: null },
        ]);
        const [p1, p2] = [(await store.getProcess(t1))!, (await store.getProcess(t2))!];
        assert.deepEqual([p1.state, p1.leaseOwner], ['running', 'w2']);
        assert.deepEqual([p2.state, p2.outputs, p2.leaseOwner], ['finished', { n: 2 }, null]);
        assert.deepEqual(verdicts(await store.complete(t1, 'w2', 1, finished())), { ok: true, wokenParentId: null });
        assert.deepEqual(verdicts(await store.complete(t1, 'w2', 1, finished())), { ok: false, wokenParentId: null });
        assert.ok((await pending()).has(parent));
      });

      it("completeMany's parentId hints change no result, right or wrong; a malformed one is refused, writing nothing", async function () {
        const { parent, children } = await family('w1', 3);
        const [c1, c2, c3] = children as [number, number, number];
        const { ids: tops } = await make(2);
        const [t1, t2] = tops as [number, number];
        await store.claim([...children, t1, t2], 'w2', 30_000);
        assert.deepEqual(await store.waitForChildren(parent, 'w1', 1, children), { waiting: true });
        await assert.rejects(
          store.completeMany([
            { id: c1, owner: 'w2', claim: 1, outcome: finished(), parentId: parent },
            { id: c2, owner: 'w2', claim: 1, outcome: finished(), parentId: -3 },
          ]),
          (err: unknown) => err instanceof InputError && err.message.includes(`complete(${c2}): parentId`),
        );
        assert.equal((await store.getProcess(c1))!.state, 'running', 'nothing written');
        // Right hints, one child alone and then a child with a top-level process wrongly hinted as a
        // child and one hinted as top-level.
        assert.deepEqual(
          verdicts(
            await store.completeMany([{ id: c1, owner: 'w2', claim: 1, outcome: finished(), parentId: parent }]),
          ),
          [{ ok: true, wokenParentId: null }],
        );
        assert.deepEqual(
          verdicts(
            await store.completeMany([
              { id: c2, owner: 'w2', claim: 1, outcome: finished(), parentId: parent },
              { id: t1, owner: 'w2', claim: 1, outcome: finished({ n: 1 }), parentId: c3 },
              { id: t2, owner: 'w2', claim: 1, outcome: finished({ n: 2 }), parentId: null },
            ]),
          ),
          [
            { ok: true, wokenParentId: null },
            { ok: true, wokenParentId: null },
            { ok: true, wokenParentId: null },
          ],
        );
        // A child hinted as top-level still wakes its parent; a lease it does not hold is refused.
        assert.deepEqual(
          verdicts(
            await store.completeMany([
              { id: c3, owner: 'intruder', claim: 1, outcome: finished(), parentId: parent },
              { id: c3, owner: 'w2', claim: 1, outcome: finished(), parentId: null },
            ]),
          ),
          [
            { ok: false, wokenParentId: null },
            { ok: false, wokenParentId: null },
          ],
        );
        assert.deepEqual(
          verdicts(await store.completeMany([{ id: c3, owner: 'w2', claim: 1, outcome: finished(), parentId: null }])),
          [{ ok: true, wokenParentId: parent }],
        );
        const [p1, p2] = [(await store.getProcess(t1))!, (await store.getProcess(t2))!];
        assert.deepEqual([p1.state, p1.outputs, p2.state, p2.outputs], ['finished', { n: 1 }, 'finished', { n: 2 }]);
        assert.ok((await pending()).has(parent));
      });

      it('a repeat of a checkpoint that went through reports waiting again, for its owner only', async function () {
        const { parent, children } = await family('w1', 1);
        assert.deepEqual(await store.waitForChildren(parent, 'w1', 1, children), { waiting: true });
        assert.deepEqual(await store.waitForChildren(parent, 'w1', 1, children), { waiting: true });
        await assert.rejects(store.waitForChildren(parent, 'w2', 1, children), LeaseLostError);
        const p = (await store.getProcess(parent))!;
        assert.deepEqual([p.state, p.leaseOwner], ['waiting', null]);
        await store.claim(children, 'w2', 30_000);
        assert.deepEqual(verdicts(await store.complete(children[0]!, 'w2', 1, finished())), {
          ok: true,
          wokenParentId: parent,
        });
      });

      it('refuses non-children and callers without the lease, changing nothing', async function () {
        const { parent, children } = await family('w1', 1);
        const { ids: stranger } = await make(1);
        await assert.rejects(
          store.waitForChildren(parent, 'w1', 1, [children[0]!, stranger[0]!]),
          (err: unknown) => err instanceof InputError && err.message.includes(`${stranger[0]} are not children`),
        );
        await assert.rejects(store.waitForChildren(parent, 'w2', 1, children), LeaseLostError);
        const p = (await store.getProcess(parent))!;
        assert.equal(p.state, 'running');
        assert.equal(p.leaseOwner, 'w1');
      });

      it('never loses a wake-up when a child ends while its parent checkpoints (separate connections)', async function () {
        this.timeout(60_000);
        let waited = 0;
        let ranOn = 0;
        for (let i = 0; i < 60; i++) {
          const { parent, children } = await family('P', 1);
          const child = children[0]!;
          await other.claim([child], 'C', 30_000);
          const [w, c] = await Promise.all([
            store.waitForChildren(parent, 'P', 1, [child]),
            other.complete(child, 'C', 1, finished()),
          ]);
          assert.equal(c.ok, true);
          const p = (await store.getProcess(parent))!;
          if (w.waiting) {
            waited++;
            assert.equal(c.wokenParentId, parent, `iteration ${i}: the child's completion woke the parent`);
            assert.equal(p.state, 'waiting');
            assert.ok((await pending()).has(parent), `iteration ${i}: the woken parent is pending`);
            const [r] = await store.claim([parent], 'P2', 30_000);
            assert.ok(r && r.claimed, `iteration ${i}: the woken parent can be claimed`);
          } else {
            ranOn++;
            assert.equal(c.wokenParentId, null);
            assert.equal(p.state, 'running');
            assert.equal(p.leaseOwner, 'P');
          }
        }
        assert.equal(waited + ranOn, 60);
      });
    });

    describe('pause and kill', function () {
      it('pauses and un-pauses non-terminal processes; un-pausing re-dispatches', async function () {
        const { ids } = await make(3);
        const [a, b, done] = ids as [number, number, number];
        await store.claim([b, done], 'w1', 30_000);
        await store.complete(done, 'w1', 1, finished());
        await store.markDispatched(ids);
        assert.deepEqual(await store.setPaused([a, b, done], true), [a, b]);
        assert.deepEqual(await store.setPaused([a], true), [], 'already paused');
        assert.equal((await store.getProcess(a))!.paused, true);
        assert.equal((await store.getProcess(done))!.paused, false);
        // b is running under a live lease: un-pausing it needs no dispatch (its worker goes on).
        assert.deepEqual(await store.setPaused([a, b, done], false), [a, b]);
        const pend = await pending();
        assert.ok(pend.has(a), 'a paused process that no worker holds is re-dispatched on play');
        assert.ok(!pend.has(b));
        assert.equal((await store.getProcess(a))!.paused, false);
      });

      it('a paused process is not dispatched until played', async function () {
        const { ids } = await make(1);
        const id = ids[0]!;
        await store.setPaused([id], true);
        assert.ok(!(await pending()).has(id));
        await store.setPaused([id], false);
        assert.ok((await pending()).has(id));
      });

      it('kills a process no worker holds, flags a running one', async function () {
        const { ids } = await make(3);
        const [idle, running, expired] = ids as [number, number, number];
        await store.claim([running], 'w1', 30_000);
        await store.claim([expired], 'w1', 1);
        await sleep(20);
        assert.equal(await store.requestKill(idle, 'no longer needed'), 'killed');
        let p = (await store.getProcess(idle))!;
        assert.deepEqual([p.state, p.exitMessage], ['killed', 'no longer needed']);
        assert.ok(!(await pending()).has(idle));
        assert.equal(await store.requestKill(running, 'stop'), 'running');
        p = (await store.getProcess(running))!;
        assert.deepEqual([p.state, p.killRequested, p.leaseOwner], ['running', true, 'w1']);
        assert.equal(await store.requestKill(expired, null), 'killed');
        assert.equal((await store.getProcess(expired))!.state, 'killed');
        assert.equal(await store.requestKill(idle, null), 'terminal');
        assert.equal(await store.requestKill(999_999_999, null), 'not-found');
        assert.deepEqual(await store.claim([idle], 'w2', 1000), [{ claimed: false, reason: 'terminal' }]);
      });

      it('killing a paused or waiting process ends it; killing the last awaited child wakes the parent', async function () {
        const { parent, children } = await family('w1', 2);
        const [c1, c2] = children as [number, number];
        await store.setPaused([c2], true);
        assert.deepEqual(await store.waitForChildren(parent, 'w1', 1, children), { waiting: true });
        assert.deepEqual(await store.requestKillDetailed(c1, 'k'), { result: 'killed', wokenParentId: null });
        assert.deepEqual(await store.requestKillDetailed(c2, 'k'), { result: 'killed', wokenParentId: parent });
        assert.ok((await pending()).has(parent));
        const { parent: p2, children: ch2 } = await family('w1', 1);
        await store.waitForChildren(p2, 'w1', 1, ch2);
        assert.equal(await store.requestKill(p2, 'stop the workflow'), 'killed');
        assert.equal((await store.getProcess(p2))!.state, 'killed');
        await store.claim(ch2, 'w2', 30_000);
        assert.deepEqual(verdicts(await store.complete(ch2[0]!, 'w2', 1, finished())), {
          ok: true,
          wokenParentId: null,
        });
      });
    });

    describe('queries and reports', function () {
      it('lists with filters, newest first', async function () {
        const type = uniqueType('list');
        const ids = await store.createProcesses([
          { type, inputs: 1 },
          { type, inputs: 2 },
          { type, inputs: 3 },
        ]);
        await store.claim([ids[1]!], 'w1', 30_000);
        assert.deepEqual(
          (await store.listProcesses({ type })).map((p) => p.id),
          [...ids].reverse(),
        );
        assert.deepEqual(
          (await store.listProcesses({ type, states: ['running'] })).map((p) => p.id),
          [ids[1]],
        );
        assert.deepEqual(
          (await store.listProcesses({ type, states: ['created', 'finished'], limit: 1 })).map((p) => p.id),
          [ids[2]],
        );
        assert.equal((await store.listProcesses({ type, pastDays: 1 })).length, 3);
        assert.equal((await store.listProcesses({ limit: 2 })).length, 2);
        assert.deepEqual(await store.listProcesses({ type, states: [] }), []);
        const { parent, children } = await family('w1', 2);
        assert.deepEqual(
          (await store.listProcesses({ parentId: parent })).map((p) => p.id),
          [...children].reverse(),
        );
        await assert.rejects(store.listProcesses({ states: ['sleeping' as never] }), InputError);
        await assert.rejects(store.listProcesses({ limit: -1 }), InputError);
      });

      it('lists given ids (those that exist), with the other filters too', async function () {
        const type = uniqueType('ids');
        const ids = await store.createProcesses(Array.from({ length: 1500 }, (_, i) => ({ type, inputs: i })));
        await store.claim([ids[3]!], 'w1', 30_000);
        const asked = [ids[3]!, ids[1]!, 999_999_999, ids[1]!, ...ids.slice(100)];
        const got = await store.listProcesses({ ids: asked });
        assert.deepEqual(
          got.map((p) => p.id),
          [...new Set([ids[3]!, ids[1]!, ...ids.slice(100)])].sort((a, b) => b - a),
          'each once, newest first, the unknown id left out',
        );
        assert.deepEqual(got.find((p) => p.id === ids[3])?.state, 'running');
        assert.deepEqual(
          (await store.listProcesses({ ids: [ids[1]!, ids[3]!], states: ['running'] })).map((p) => p.id),
          [ids[3]],
        );
        assert.deepEqual(await store.listProcesses({ ids: [] }), []);
        // One id (what a wait of one submit reads), with and without other filters.
        assert.deepEqual(
          (await store.listProcesses({ ids: [ids[3]!] })).map((p) => [p.id, p.state]),
          [[ids[3], 'running']],
        );
        assert.deepEqual(await store.listProcesses({ ids: [999_999_999] }), []);
        assert.deepEqual(await store.listProcesses({ ids: [ids[3]!], states: ['created'] }), []);
        assert.deepEqual((await store.listProcesses({ ids: [ids[3]!], limit: 1 })).length, 1);
        await assert.rejects(store.listProcesses({ ids: [0] }), InputError);
        await assert.rejects(store.listProcesses({ ids: 'all' as never }), InputError);
      });

      it('counts every state', async function () {
        const before = await store.countByState();
        assert.deepEqual(Object.keys(before).sort(), [...PROCESS_STATES].sort());
        const { ids } = await make(4);
        await store.claim(ids.slice(1), 'w1', 30_000);
        await store.complete(ids[2]!, 'w1', 1, finished());
        await store.complete(ids[3]!, 'w1', 1, { state: 'excepted', exception: 'e' });
        const after = await store.countByState();
        assert.equal(after.created - before.created, 1);
        assert.equal(after.running - before.running, 1);
        assert.equal(after.finished - before.finished, 1);
        assert.equal(after.excepted - before.excepted, 1);
        assert.equal(after.killed - before.killed, 0);
        assert.equal(after.waiting - before.waiting, 0);
      });

      it('keeps a report log per process', async function () {
        const { ids } = await make(1);
        const t0 = Date.now();
        await store.claim(ids, 'w1', 30_000);
        await store.addReport(ids[0]!, 'w1', 1, 'first line');
        await store.addReport(ids[0]!, 'w1', 1, 'second\nline');
        const lines = await store.getReports(ids[0]!);
        assert.deepEqual(
          lines.map((l) => l.message),
          ['first line', 'second\nline'],
        );
        assert.ok(lines.every((l) => l.time >= t0 - 1000 && l.time <= Date.now() + 1000));
        assert.deepEqual(await store.getReports(999_999_999), []);
        await assert.rejects(store.addReport(999_999_999, 'w1', 1, 'x'), ProcessNotFoundError);
        await assert.rejects(store.addReport(ids[0]!, 'w2', 1, 'x'), LeaseLostError, 'only for the lease holder');
        await assert.rejects(store.addReport(ids[0]!, 'w1', 0, 'x'), InputError);
        assert.equal((await store.getReports(ids[0]!)).length, 2);
      });

      it('writes a report line with a position once: a repeat of its (process, position, index) does nothing', async function () {
        const { ids } = await make(2);
        const [a, b] = [ids[0]!, ids[1]!];
        await store.claim([a, b], 'w1', 60_000);
        assert.equal(await store.addReport(a, 'w1', 1, 'one', { position: 0, index: 0 }), true);
        assert.equal(await store.addReport(a, 'w1', 1, 'two', { position: 0, index: 1 }), true);
        assert.equal(await store.addReport(a, 'w1', 1, 'one, replayed', { position: 0, index: 0 }), false);
        assert.equal(await other.addReport(a, 'w1', 1, 'three', { position: 2, index: 0 }), true);
        assert.equal(await other.addReport(a, 'w1', 1, 'two, replayed', { position: 0, index: 1 }), false);
        // Lines without a position are always appended.
        assert.equal(await store.addReport(a, 'w1', 1, 'free'), true);
        assert.equal(await store.addReport(a, 'w1', 1, 'free'), true);
        // Keys are per process.
        assert.equal(await store.addReport(b, 'w1', 1, 'one of b', { position: 0, index: 0 }), true);
        // Racing repeats from two connections: exactly one writes.
        const raced = await Promise.all(
          Array.from({ length: 6 }, (_, i) =>
            (i % 2 ? store : other).addReport(a, 'w1', 1, 'raced', { position: 5, index: 3 }),
          ),
        );
        assert.equal(raced.filter((w) => w).length, 1, `written ${JSON.stringify(raced)}`);
        assert.deepEqual(
          (await store.getReports(a)).map((l) => l.message),
          ['one', 'two', 'three', 'free', 'free', 'raced'],
        );
        assert.deepEqual(
          (await store.getReports(b)).map((l) => l.message),
          ['one of b'],
        );
        for (const bad of [{ position: -1, index: 0 }, { position: 1.5, index: 0 }, { position: 0 }, 'x']) {
          await assert.rejects(store.addReport(a, 'w1', 1, 'bad', bad as never), InputError, JSON.stringify(bad));
        }
        await assert.rejects(
          store.addReport(999_999_999, 'w1', 1, 'x', { position: 0, index: 0 }),
          ProcessNotFoundError,
        );
      });
    });
  });
}
