/**
 * The SQLite adapter: the conformance suite on a temp file, plus what only SQLite has: file and
 * directory modes, and several OS processes writing one file at once (busy handling, claims and
 * wake-ups across processes).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { StoreError, StoreFullError, StoreUnavailableError } from '../../src/errors/index.js';
import { SQLITE_SCHEMA_VERSION, openStore, type ProcessStore } from '../../src/store/index.js';
import { SQLITE_MIGRATIONS } from '../../src/store/sqlite/migrations.js';
import { JOURNAL_SIZE_LIMIT, openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { REPO_ROOT, cleanupTempDirs, requireService, tempDir } from '../helpers/env.js';
import { mountTmpfs, tmpfsUnavailable } from '../helpers/tmpfs.js';
import { storeConformance, type StoreHarness } from './conformance.js';
import { verdicts } from '../helpers/complete.js';

function sqliteHarness(): StoreHarness {
  const file = path.join(tempDir('drover-store-'), 'data', 'store.db');
  return {
    open: () => openStore({ backend: 'sqlite', path: file }),
    async insertSchemaVersion(version) {
      const db = new Database(file);
      try {
        db.prepare('INSERT INTO schema_version (version, applied_at) VALUES (?, ?)').run(version, Date.now());
      } finally {
        db.close();
      }
    },
    fresh: async () => sqliteHarness(),
    teardown: async () => fs.rmSync(path.dirname(path.dirname(file)), { recursive: true, force: true }),
  };
}

storeConformance('SQLite', async () => sqliteHarness());

const STORE_MODULE = pathToFileURL(path.join(REPO_ROOT, 'dist', 'src', 'store', 'index.js')).href;

/** Runs `script` (an ES module body with `openStore` in scope) in a new Node process; returns its JSON output. */
function runNode(script: string, env: Record<string, string>): Promise<unknown> {
  const code = `import { openStore } from ${JSON.stringify(STORE_MODULE)};\n${script}`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('close', (status) => {
      clearTimeout(timer);
      if (status !== 0) return reject(new Error(`node exited with ${status}: ${err}`));
      try {
        resolve(JSON.parse(out));
      } catch (e) {
        reject(new Error(`bad output ${JSON.stringify(out)}: ${String(e)}; stderr: ${err}`));
      }
    });
  });
}

/** Creates, claims (racing the other writers) and completes processes; drains what is left. */
const WRITER = `
const s = await openStore({ backend: 'sqlite', path: process.env.STORE_FILE });
const owner = process.env.OWNER;
const done = { state: 'finished', outputs: null, exitStatus: 0, exitMessage: null };
let won = 0;
const round = async () => {
  const ids = await s.pendingDispatches(0, 40);
  const res = await s.claim(ids, owner, 30000);
  const mine = ids.filter((_, i) => res[i].claimed);
  for (const id of mine) await s.addReport(id, owner, 1, owner + ' ran ' + id);
  const ends = await s.completeMany(mine.map((id) => ({ id, owner, claim: 1, outcome: done })));
  if (ends.some((e) => !e.ok)) throw new Error('lost a lease it had just taken');
  won += mine.length;
  return ids.length;
};
for (let r = 0; r < Number(process.env.ROUNDS); r++) {
  await s.createProcesses(Array.from({ length: 20 }, (_, i) => ({ type: 'mp', inputs: { owner, r, i } })));
  await round();
}
while ((await round()) > 0);
await s.close();
console.log(JSON.stringify({ won }));
`;

describe('SQLite store', function () {
  after(cleanupTempDirs);

  it('creates a missing parent directory 0700 and the file 0600', async function () {
    const dir = path.join(tempDir(), 'a', 'b');
    const file = path.join(dir, 'store.db');
    const s = await openStore({ backend: 'sqlite', path: file });
    try {
      assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
      assert.equal(fs.statSync(file).mode & 0o777, 0o600);
      await s.createProcesses([{ type: 'x', inputs: null }]);
      assert.equal(fs.statSync(`${file}-wal`).mode & 0o777, 0o600, 'the WAL file is private too');
      assert.equal((s as unknown as { file: string }).file, file);
    } finally {
      await s.close();
    }
  });

  it('a new store has 1 KiB pages, one made with 4 KiB keeps them, and either checkpoints its WAL at 1 MiB', async function () {
    const dir = tempDir();
    const older = path.join(dir, 'older.db');
    // A database as SQLite (and Drover before 1 KiB pages) made it.
    const raw = new Database(older);
    raw.pragma('journal_mode = WAL');
    raw.close();
    for (const [file, pageSize] of [
      [path.join(dir, 'new.db'), 1024],
      [older, 4096],
    ] as const) {
      const s = openSqliteStore(file);
      try {
        let most = 0;
        // 3 MiB in transactions of 8 KiB: the WAL grows to the mark, is copied back, starts over.
        for (let i = 0; i < 384; i++) {
          await s.createProcesses([{ type: 'x', inputs: 'p'.repeat(8 * 1024) }]);
          most = Math.max(most, fs.statSync(`${file}-wal`).size);
        }
        const probe = new Database(file, { readonly: true });
        assert.equal(probe.pragma('page_size', { simple: true }), pageSize, file);
        probe.close();
        assert.ok(most >= 0.9 * JOURNAL_SIZE_LIMIT, `${file}: the WAL was checkpointed at ${most} bytes`);
        assert.ok(most <= JOURNAL_SIZE_LIMIT + 64 * 1024, `${file}: the WAL reached ${most} bytes`);
        assert.equal((await s.listProcesses({ type: 'x' })).length, 384);
      } finally {
        await s.close();
      }
    }
  });

  it('brings a store of schema 1 up to date, keeping its processes and their pending dispatches', async function () {
    const file = path.join(tempDir(), 'v1.db');
    const db = new Database(file);
    db.exec('CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)');
    db.exec(SQLITE_MIGRATIONS[0]!.sql);
    db.prepare('INSERT INTO schema_version (version, applied_at) VALUES (1, ?)').run(Date.now());
    db.prepare(
      `INSERT INTO processes (uuid, type, state, inputs, dispatch_requested_at, ctime, mtime)
       VALUES ('u-1', 'old', 'created', '{}', 1, 1, 1)`,
    ).run();
    db.close();
    const s = await openStore({ backend: 'sqlite', path: file });
    try {
      assert.equal(await s.schemaVersion(), SQLITE_SCHEMA_VERSION);
      const [id] = await s.pendingDispatches(0, 10);
      assert.equal((await s.getProcess(id!))!.type, 'old');
      await s.markDispatched([id!]);
      assert.deepEqual(await s.unclaimedDispatches(0, 10), [id]);
    } finally {
      await s.close();
    }
  });

  it('brings a store of schema 2 up to date, keeping its report lines; replayed lines are then written once', async function () {
    const file = path.join(tempDir(), 'v2.db');
    const db = new Database(file);
    db.exec('CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)');
    for (const m of SQLITE_MIGRATIONS.filter((m) => m.version <= 2)) {
      db.exec(m.sql);
      db.prepare('INSERT INTO schema_version (version, applied_at) VALUES (?, ?)').run(m.version, Date.now());
    }
    db.prepare(
      `INSERT INTO processes (uuid, type, state, inputs, ctime, mtime, lease_owner, lease_expires_at, runs)
       VALUES ('u-1', 'old', 'running', '{}', 1, 1, 'w1', 32503680000000, 1)`,
    ).run();
    db.prepare(`INSERT INTO reports (process_id, time, message) VALUES (1, 1, 'old line'), (1, 2, 'old line')`).run();
    db.close();
    const s = await openStore({ backend: 'sqlite', path: file });
    try {
      assert.equal(await s.schemaVersion(), SQLITE_SCHEMA_VERSION, 'every migration applied');
      assert.deepEqual(
        (await s.getReports(1)).map((l) => [l.time, l.message]),
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
  });

  it('refuses a file that is not a database, naming it', async function () {
    const file = path.join(tempDir(), 'junk.db');
    fs.writeFileSync(file, 'this is not a database, just some text that is long enough '.repeat(200));
    await assert.rejects(
      openStore({ backend: 'sqlite', path: file }),
      (err: unknown) => err instanceof StoreError && err.message.includes(file) && /not a database/.test(err.message),
    );
  });

  it('refuses a path it cannot create, naming it', async function () {
    const blocker = path.join(tempDir(), 'file');
    fs.writeFileSync(blocker, '');
    const file = path.join(blocker, 'sub', 'store.db');
    await assert.rejects(
      openStore({ backend: 'sqlite', path: file }),
      (err: unknown) => err instanceof StoreError && err.message.includes(file),
    );
  });

  it('a writer waits for another connection holding the write lock, and fails clearly past its busy timeout', async function () {
    const file = path.join(tempDir(), 'busy', 'store.db');
    const s = openSqliteStore(file, { busyTimeoutMs: 300 });
    const raw = new Database(file);
    try {
      raw.exec('BEGIN IMMEDIATE');
      const t0 = Date.now();
      await assert.rejects(
        s.createProcesses([{ type: 'x', inputs: 2 }]),
        (err: unknown) =>
          err instanceof StoreUnavailableError &&
          err.code === 'STORE_UNAVAILABLE' &&
          !err.maybeApplied &&
          err.message.includes(file) &&
          /locked by another process/.test(err.message),
      );
      assert.ok(Date.now() - t0 >= 250, 'it waited for the lock before failing');
      raw.exec('ROLLBACK');
      assert.deepEqual(await s.listProcesses({ type: 'x' }), [], 'the failed call wrote nothing');
      assert.equal((await s.createProcesses([{ type: 'x', inputs: 3 }])).length, 1, 'it works once the lock is free');
    } finally {
      raw.close();
      await s.close();
    }
  });

  it('a full disk fails writes with StoreFullError, writing nothing; once space is back the WAL is emptied', async function () {
    const why = tmpfsUnavailable();
    requireService(this, why === null, `a tmpfs of its own (${why})`);
    const disk = mountTmpfs(4 << 20);
    const file = path.join(disk.dir, 'store.db');
    const s = openSqliteStore(file);
    try {
      const [id] = await s.createProcesses([{ type: 'x', inputs: 'before' }]);
      await s.claim([id!], 'w1', 60_000);
      disk.fill();
      const big = 'z'.repeat(256 * 1024);
      await assert.rejects(s.createProcesses([{ type: 'x', inputs: big }]), (err: unknown) => {
        assert.ok(err instanceof StoreFullError, String(err));
        assert.equal(err.code, 'STORE_DISK_FULL');
        assert.ok(err instanceof StoreUnavailableError && !err.maybeApplied, 'retryable, nothing written');
        assert.ok(err.message.includes(file) && /disk full/.test(err.message), err.message);
        return true;
      });
      assert.equal((await s.listProcesses({})).length, 1, 'reads work while full; the failed write left nothing');
      assert.equal((await s.getProcess(id!))!.leaseOwner, 'w1', 'the lease is untouched');
      disk.unfill();
      await s.createProcesses([{ type: 'x', inputs: big }]);
      // The first call after a second has passed empties the WAL (a TRUNCATE checkpoint).
      await new Promise((r) => setTimeout(r, 1100));
      assert.equal((await s.listProcesses({})).length, 2);
      assert.equal(fs.statSync(`${file}-wal`).size, 0, 'the WAL was emptied');
      for (let i = 0; i < 20; i++) await s.createProcesses([{ type: 'x', inputs: big.slice(0, 64 * 1024) }]);
      assert.ok(fs.statSync(`${file}-wal`).size <= JOURNAL_SIZE_LIMIT + 300 * 1024, 'the WAL stays near its limit');
      assert.deepEqual(
        verdicts(
          await s.complete(id!, 'w1', 1, { state: 'finished', outputs: null, exitStatus: 0, exitMessage: null }),
        ),
        {
          ok: true,
          wokenParentId: null,
        },
      );
    } finally {
      await s.close();
      disk.unmount();
    }
  });

  it("the daemon's background checkpoints keep the WAL small for connections that leave checkpoints to it", async function () {
    const file = path.join(tempDir(), 'store.db');
    const walSize = (): number => fs.statSync(`${file}-wal`).size;
    const daemon = openSqliteStore(file, { checkpoints: 'background' });
    const worker = openSqliteStore(file, { checkpoints: 'by-daemon' });
    const write = async (mib: number, gapMs: number): Promise<number> => {
      let most = 0;
      for (let i = 0; i < mib * 16; i++) {
        await worker.createProcesses([{ type: 'x', inputs: 'w'.repeat(64 * 1024) }]);
        most = Math.max(most, walSize());
        if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
      }
      return most;
    };
    // The thread starts (loads the driver, opens its connection) while the daemon starts up.
    await new Promise((r) => setTimeout(r, 500));
    // 64 KiB at a time, 20 ms apart: the thread has its turn every 100 ms.
    const withThread = await write(3, 20);
    // 3 MiB written; the thread keeps the WAL to a fraction of it (one or two rounds' worth).
    assert.ok(withThread <= 2 * 1024 * 1024, `the WAL reached ${withThread} bytes with the thread`);
    await daemon.close();
    // Without the daemon the worker's connection checkpoints past its fallback (64 MiB), not before.
    const alone = await write(66, 0);
    assert.ok(alone >= 60 * 1024 * 1024, `the WAL stayed at ${alone} bytes: someone checkpointed`);
    // The mark counts pages; each frame of the WAL is a page (1 KiB) and a header of 24 bytes.
    assert.ok(alone <= 64 * (1024 + 24) * 1024 + 600 * 1024, `the WAL reached ${alone} bytes`);
    assert.equal((await worker.listProcesses({ type: 'x' })).length, 69 * 16, 'every write is there');
    await worker.close();
  });

  it('several OS processes write one file at once: nothing fails, every process runs exactly once', async function () {
    this.timeout(60_000);
    const file = path.join(tempDir(), 'shared', 'store.db');
    // The processes also race on creating and migrating the new file.
    const outs = (await Promise.all(
      ['w1', 'w2', 'w3'].map((owner) => runNode(WRITER, { STORE_FILE: file, OWNER: owner, ROUNDS: '25' })),
    )) as { won: number }[];
    const s = await openStore({ backend: 'sqlite', path: file });
    try {
      const total = 3 * 25 * 20;
      assert.equal(
        outs.reduce((n, o) => n + o.won, 0),
        total,
      );
      const counts = await s.countByState();
      assert.deepEqual(counts, { created: 0, running: 0, waiting: 0, finished: total, excepted: 0, killed: 0 });
      const all = await s.listProcesses({ type: 'mp' });
      assert.ok(all.every((p) => p.runs === 1));
      for (const p of all) assert.equal((await s.getReports(p.id)).length, 1, `one report line of process ${p.id}`);
    } finally {
      await s.close();
    }
  });

  it('a child ending in one OS process while its parent checkpoints in another never loses the wake-up', async function () {
    this.timeout(60_000);
    const file = path.join(tempDir(), 'wake', 'store.db');
    const s: ProcessStore = await openStore({ backend: 'sqlite', path: file });
    try {
      const pairs: [number, number][] = [];
      for (let i = 0; i < 150; i++) {
        const [parent] = await s.createProcesses([{ type: 'parent', inputs: i }]);
        await s.claim([parent!], 'P', 60_000);
        const child = await s.submitChild(parent!, 'P', 1, 0, { type: 'child', inputs: i });
        await s.claim([child], 'C', 60_000);
        pairs.push([parent!, child]);
      }
      const env = { STORE_FILE: file, PAIRS: JSON.stringify(pairs), START: String(Date.now() + 1500) };
      const prelude = `
        const s = await openStore({ backend: 'sqlite', path: process.env.STORE_FILE });
        const pairs = JSON.parse(process.env.PAIRS);
        await new Promise((r) => setTimeout(r, Math.max(0, Number(process.env.START) - Date.now())));
        const out = [];`;
      const [waits, ends] = (await Promise.all([
        runNode(
          `${prelude}
          for (const [p, c] of pairs) out.push((await s.waitForChildren(p, 'P', 1, [c])).waiting);
          await s.close(); console.log(JSON.stringify(out));`,
          env,
        ),
        runNode(
          `${prelude}
          const done = { state: 'finished', outputs: null, exitStatus: 0, exitMessage: null };
          for (const [, c] of pairs) out.push((await s.complete(c, 'C', 1, done)).wokenParentId);
          await s.close(); console.log(JSON.stringify(out));`,
          env,
        ),
      ])) as [boolean[], (number | null)[]];
      const pending = new Set(await s.pendingDispatches(0, 100_000));
      for (let i = 0; i < pairs.length; i++) {
        const [parent] = pairs[i]!;
        const p = (await s.getProcess(parent))!;
        if (waits[i]) {
          assert.equal(ends[i], parent, `pair ${i}: the child woke its waiting parent`);
          assert.equal(p.state, 'waiting');
          assert.ok(pending.has(parent), `pair ${i}: the woken parent is pending dispatch`);
        } else {
          assert.equal(ends[i], null);
          assert.deepEqual([p.state, p.leaseOwner], ['running', 'P']);
        }
      }
    } finally {
      await s.close();
    }
  });
});
