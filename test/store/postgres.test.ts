/**
 * The PostgreSQL adapter: the conformance suite on a fresh database (dropped afterwards), plus
 * connection failures.
 */
import assert from 'node:assert/strict';
import pg from 'pg';
import { StoreError, StoreUnavailableError } from '../../src/errors/index.js';
import { openStore, type ProcessStore } from '../../src/store/index.js';
import {
  PG_ADMIN_URL,
  closedPort,
  freshPostgresDatabase,
  portOpen,
  requireService,
  waitUntil,
} from '../helpers/env.js';
import { POSTGRES_MIGRATIONS, POSTGRES_SCHEMA_VERSION } from '../../src/store/postgres/migrations.js';
import { openPostgresStore } from '../../src/store/postgres/postgres-store.js';
import { storeConformance, type StoreHarness } from './conformance.js';
import { verdicts } from '../helpers/complete.js';

async function postgresAvailable(): Promise<boolean> {
  const u = new URL(PG_ADMIN_URL);
  return portOpen(Number(u.port || 5432), u.hostname);
}

async function postgresHarness(): Promise<StoreHarness> {
  const db = await freshPostgresDatabase();
  return {
    open: () => openStore({ backend: 'postgres', url: db.url }),
    async insertSchemaVersion(version) {
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      try {
        await c.query('INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)', [version, Date.now()]);
      } finally {
        await c.end();
      }
    },
    fresh: postgresHarness,
    teardown: db.drop,
  };
}

storeConformance('PostgreSQL', async (ctx) => {
  requireService(ctx, await postgresAvailable(), `PostgreSQL at ${PG_ADMIN_URL}`);
  return postgresHarness();
});

describe('PostgreSQL store', function () {
  it('fails with a StoreError naming the server when it cannot connect', async function () {
    const port = await closedPort();
    const url = `postgres://drover:secret@127.0.0.1:${port}/nowhere`;
    await assert.rejects(openStore({ backend: 'postgres', url }), (err: unknown) => {
      assert.ok(err instanceof StoreUnavailableError, 'a refused connection may pass: retryable');
      assert.match(
        err.message,
        new RegExp(`cannot connect to PostgreSQL store postgres://drover:\\*\\*\\*@127\\.0\\.0\\.1:${port}/nowhere`),
      );
      assert.ok(!err.message.includes('secret'), 'the password is not shown');
      return true;
    });
  });

  it('fails with a StoreError naming the database when it does not exist', async function () {
    requireService(this, await postgresAvailable(), `PostgreSQL at ${PG_ADMIN_URL}`);
    const u = new URL(PG_ADMIN_URL);
    u.pathname = '/drover_no_such_database';
    await assert.rejects(
      openStore({ backend: 'postgres', url: u.toString() }),
      (err: unknown) =>
        err instanceof StoreError &&
        err.message.includes('drover_no_such_database') &&
        /does not exist/.test(err.message),
    );
  });
});

describe('PostgreSQL store: schema upgrades', function () {
  it('brings a store of schema 2 up to date, keeping its report lines; replayed lines are then written once', async function () {
    requireService(this, await postgresAvailable(), `PostgreSQL at ${PG_ADMIN_URL}`);
    const db = await freshPostgresDatabase();
    try {
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      try {
        await c.query('CREATE TABLE schema_version (version integer PRIMARY KEY, applied_at bigint NOT NULL)');
        for (const m of POSTGRES_MIGRATIONS.filter((m) => m.version <= 2)) {
          await c.query(m.sql);
          await c.query('INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)', [m.version, Date.now()]);
        }
        await c.query(
          `INSERT INTO processes (id, uuid, type, state, inputs, ctime, mtime, lease_owner, lease_expires_at, runs)
           VALUES (1, gen_random_uuid(), 'old', 'running', '{}', 1, 1, 'w1', 32503680000000, 1)`,
        );
        await c.query(`INSERT INTO reports (process_id, time, message) VALUES (1, 1, 'old line'), (1, 2, 'old line')`);
      } finally {
        await c.end();
      }
      const s = await openStore({ backend: 'postgres', url: db.url });
      try {
        assert.equal(await s.schemaVersion(), POSTGRES_SCHEMA_VERSION, 'every migration applied');
        assert.deepEqual(
          (await s.getReports(1)).map((l) => [Number(l.time), l.message]),
          [
            [1, 'old line'],
            [2, 'old line'],
          ],
        );
        assert.equal(await s.addReport(1, 'w1', 1, 'new line', { position: 0, index: 0 }), true);
        assert.equal(await s.addReport(1, 'w1', 1, 'new line', { position: 0, index: 0 }), false);
        assert.equal(await s.addReport(1, 'w1', 1, 'free line'), true);
        assert.deepEqual(
          (await s.getReports(1)).map((l) => l.message),
          ['old line', 'old line', 'new line', 'free line'],
        );
      } finally {
        await s.close();
      }
    } finally {
      await db.drop();
    }
  });
});

describe('PostgreSQL store: a connection dropped in the middle of a call', function () {
  let db: { url: string; drop: () => Promise<void> } | null = null;
  let name: string;
  let store: ProcessStore;
  let admin: pg.Client;

  before(async function () {
    requireService(this, await postgresAvailable(), `PostgreSQL at ${PG_ADMIN_URL}`);
    db = await freshPostgresDatabase();
    name = new URL(db.url).pathname.slice(1);
    store = await openStore({ backend: 'postgres', url: db.url });
    admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
  });

  after(async () => {
    await store?.close();
    await admin?.end();
    await db?.drop();
  });

  /**
   * Runs `call` while another session holds `lock` (so the call's statement waits on it), then
   * terminates the backend of the waiting statement, as a server restart would: only backends of
   * this test's database, never anyone else's.
   */
  async function dropWhileWaiting<T>(lock: string, params: unknown[], call: () => Promise<T>): Promise<T> {
    await admin.query('BEGIN');
    await admin.query(lock, params);
    const p = call();
    p.catch(() => undefined);
    try {
      await waitUntil(
        async () =>
          (
            await admin.query<{ n: number }>(
              "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
              [name],
            )
          ).rows[0]!.n > 0,
        10_000,
        'the call to wait for the lock',
      );
      await admin.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
        [name],
      );
    } finally {
      await admin.query('ROLLBACK');
    }
    return p;
  }

  const rowLock = 'SELECT id FROM processes WHERE id = $1 FOR UPDATE';
  const done = { state: 'finished' as const, outputs: null, exitStatus: 0, exitMessage: null };

  it('a transaction whose connection is terminated does not crash the process, and is retried', async function () {
    const [id] = await store.createProcesses([{ type: 'x', inputs: 1 }]);
    await store.claim([id!], 'w1', 60_000);
    const r = await dropWhileWaiting(rowLock, [id], () =>
      store.completeMany([{ id: id!, owner: 'w1', claim: 1, outcome: done }]),
    );
    assert.deepEqual(verdicts(r), [{ ok: true, wokenParentId: null }]);
    assert.equal((await store.getProcess(id!))!.state, 'finished');
  });

  it('a creation whose connection broke mid-insert is repeated without creating twice', async function () {
    const before = (await store.listProcesses({ type: 'once' })).length;
    const ids = await dropWhileWaiting('LOCK TABLE processes IN EXCLUSIVE MODE', [], () =>
      store.createProcesses([
        { type: 'once', inputs: 1 },
        { type: 'once', inputs: 2 },
      ]),
    );
    const now = await store.listProcesses({ type: 'once' });
    assert.equal(now.length - before, 2);
    assert.deepEqual(
      ids,
      now.map((p) => p.id).sort((a, b) => a - b),
    );
  });

  it('a claim whose connection broke mid-write is not repeated: StoreUnavailableError with maybeApplied', async function () {
    const [id] = await store.createProcesses([{ type: 'x', inputs: 1 }]);
    await assert.rejects(
      dropWhileWaiting(rowLock, [id], () => store.claim([id!], 'w1', 60_000)),
      (err: unknown) => {
        assert.ok(err instanceof StoreUnavailableError, String(err));
        assert.equal(err.code, 'STORE_UNAVAILABLE');
        assert.equal(err.maybeApplied, true);
        assert.match(err.message, /may have been applied/);
        return true;
      },
    );
    // It was not applied here (the statement was waiting); the next claim takes it.
    const [r] = await store.claim([id!], 'w1', 60_000);
    assert.equal(r!.claimed, true);
  });

  it('a completion whose connection broke mid-write is repeated and recorded once', async function () {
    const [id] = await store.createProcesses([{ type: 'x', inputs: 1 }]);
    await store.claim([id!], 'w1', 60_000);
    const r = await dropWhileWaiting(rowLock, [id], () => store.complete(id!, 'w1', 1, done));
    assert.deepEqual(verdicts(r), { ok: true, wokenParentId: null });
    const p = (await store.getProcess(id!))!;
    assert.deepEqual([p.state, p.leaseOwner, p.runs], ['finished', null, 1]);
    assert.deepEqual(verdicts(await store.complete(id!, 'w1', 1, done)), { ok: false, wokenParentId: null });
  });

  it('idle connections the server drops are replaced', async function () {
    await store.countByState();
    await admin.query(
      'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
      [name],
    );
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(typeof (await store.countByState()).created, 'number');
  });
});

describe('PostgreSQL store: a table that grows after its connections planned their statements', function () {
  let db: { url: string; drop: () => Promise<void> } | null = null;
  let store: ProcessStore | null = null;
  let admin: pg.Client | null = null;

  before(async function () {
    requireService(this, await postgresAvailable(), `PostgreSQL at ${PG_ADMIN_URL}`);
    db = await freshPostgresDatabase();
    store = await openStore({ backend: 'postgres', url: db.url });
    admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
  });

  after(async function () {
    await store?.close();
    await admin?.end();
    await db?.drop();
  });

  /** Submits, claims and completes `n` processes, as a worker's batch does. */
  async function cycle(s: ProcessStore, n: number): Promise<void> {
    const ids = await s.createProcesses(Array.from({ length: n }, (_, i) => ({ type: 'x', inputs: i })));
    const claims = await s.claim(ids, 'w1', 60_000);
    const done = await s.completeMany(
      ids.map((id, i) => ({
        id,
        owner: 'w1',
        claim: claims[i]!.claimed ? claims[i]!.claim : 0,
        outcome: { state: 'finished' as const, outputs: {}, exitStatus: 0, exitMessage: null },
      })),
    );
    assert.ok(done.every((d) => d.ok));
    assert.equal((await s.listProcesses({ ids })).length, n);
  }

  it('claims and completions of one process at a time do not read the whole table', async function () {
    // Plans made on a new, nearly empty table (as on a new profile), then 100,000 processes arrive
    // before anything analyzes the table. A plan kept from the start scans the table at every
    // call: with the array statements, one at a time, 65,000 rows read and 87 ms a cycle. (Batches
    // still take the array statements: docs/store.md.)
    for (let i = 0; i < 20; i++) await cycle(store!, 1);
    await admin!.query(
      `INSERT INTO processes (uuid, type, state, inputs, ctime, mtime)
       SELECT gen_random_uuid(), 'old', 'finished', '{}', g, g FROM generate_series(1, 100000) g`,
    );
    const seqRead = async (): Promise<number> => {
      // Server statistics arrive within a second of a backend's transaction.
      await new Promise((r) => setTimeout(r, 1500));
      const r = await admin!.query<{ n: string }>(
        "SELECT seq_tup_read AS n FROM pg_stat_user_tables WHERE relname = 'processes'",
      );
      return Number(r.rows[0]!.n);
    };
    const before = await seqRead();
    for (let i = 0; i < 10; i++) await cycle(store!, 1);
    const read = (await seqRead()) - before;
    assert.ok(read < 50_000, `10 cycles read ${read} rows by sequential scans of the 100,000-row table`);
  });

  it("batches too, once the daemon's store has analyzed the table that grew (within seconds, not autovacuum's minute)", async function () {
    // Its own database: the plans are made on a nearly empty table again.
    const fresh = await freshPostgresDatabase();
    const worker = await openStore({ backend: 'postgres', url: fresh.url });
    const daemon = await openPostgresStore(fresh.url, { keepStatistics: 200 });
    const a = new pg.Client({ connectionString: fresh.url });
    await a.connect();
    try {
      // Batches of 5, as a worker claims: plans kept from a nearly empty table read it all (1,000,000
      // rows in 10 cycles of a 100,000-row table when nothing analyzes it).
      for (let i = 0; i < 20; i++) await cycle(worker, 5);
      await a.query(
        `INSERT INTO processes (uuid, type, state, inputs, ctime, mtime)
         SELECT gen_random_uuid(), 'old', 'finished', '{}', g, g FROM generate_series(1, 100000) g`,
      );
      const counted = async (): Promise<number> =>
        (await a.query<{ n: number }>("SELECT reltuples AS n FROM pg_class WHERE relname = 'processes'")).rows[0]!.n;
      await waitUntil(async () => (await counted()) > 50_000, 20_000, "the daemon's store to analyze the grown table");
      const seq = async (): Promise<number> => {
        await new Promise((r) => setTimeout(r, 1500));
        const r = await a.query<{ n: string }>(
          "SELECT seq_tup_read AS n FROM pg_stat_user_tables WHERE relname = 'processes'",
        );
        return Number(r.rows[0]!.n);
      };
      const before = await seq();
      for (let i = 0; i < 10; i++) await cycle(worker, 5);
      const read = (await seq()) - before;
      assert.ok(read < 50_000, `10 cycles of 5 read ${read} rows by sequential scans of the 100,000-row table`);
    } finally {
      await a.end();
      await worker.close();
      await daemon.close();
      await fresh.drop();
    }
  });
});
