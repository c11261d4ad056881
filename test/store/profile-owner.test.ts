/**
 * A store records the profile it belongs to (issue 11): the first daemon or worker that opens it
 * (openStore with `profile`) adopts it, one of another profile is refused with a message naming
 * the store, both uuids and what to do, and a store made before schema version 6 adopts the first
 * profile that opens it, logged. Both adapters.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import path from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { StoreProfileMismatchError } from '../../src/errors/index.js';
import type { StorageSettings } from '../../src/config/index.js';
import { createLogger, type LogSink } from '../../src/logging/index.js';
import { openStore } from '../../src/store/index.js';
import { ProcessClient } from '../../src/api/processes.js';
import { makeProfile } from '../helpers/profile.js';
import { SQLITE_MIGRATIONS } from '../../src/store/sqlite/migrations.js';
import { POSTGRES_MIGRATIONS } from '../../src/store/postgres/migrations.js';
import {
  PG_ADMIN_URL,
  cleanupTempDirs,
  freshPostgresDatabase,
  portOpen,
  requireService,
  tempDir,
} from '../helpers/env.js';

function memoryLogger(): { lines: string[]; logger: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  const sink: LogSink = { write: (level, _scope, message) => lines.push(`${level} ${message}`) };
  return { lines, logger: createLogger({ sinks: [sink], level: 'debug' }) };
}

interface Backend {
  name: string;
  /** A fresh, empty location. */
  fresh(): Promise<{ settings: StorageSettings; display: string; drop: () => Promise<void> }>;
  /** A fresh location with the schema of version 2 (before store_meta) and one process in it. */
  beforeOwners(): Promise<{ settings: StorageSettings; drop: () => Promise<void> }>;
}

const sqlite: Backend = {
  name: 'SQLite',
  async fresh() {
    const file = path.join(tempDir('drover-owner-'), 'store.db');
    return { settings: { backend: 'sqlite', path: file }, display: `sqlite:${file}`, drop: async () => undefined };
  },
  async beforeOwners() {
    const file = path.join(tempDir('drover-owner-'), 'old.db');
    const db = new Database(file);
    db.exec('CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)');
    for (const m of SQLITE_MIGRATIONS.filter((x) => x.version <= 2)) {
      db.exec(m.sql);
      db.prepare('INSERT INTO schema_version (version, applied_at) VALUES (?, ?)').run(m.version, Date.now());
    }
    db.prepare(
      `INSERT INTO processes (uuid, type, state, inputs, ctime, mtime) VALUES ('u-1', 'old', 'created', '{}', 1, 1)`,
    ).run();
    db.close();
    return { settings: { backend: 'sqlite', path: file }, drop: async () => undefined };
  },
};

const postgres: Backend = {
  name: 'PostgreSQL',
  async fresh() {
    const db = await freshPostgresDatabase();
    return { settings: { backend: 'postgres', url: db.url }, display: db.url, drop: db.drop };
  },
  async beforeOwners() {
    const db = await freshPostgresDatabase();
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      await c.query('CREATE TABLE schema_version (version integer PRIMARY KEY, applied_at bigint NOT NULL)');
      for (const m of POSTGRES_MIGRATIONS.filter((x) => x.version <= 2)) {
        await c.query(m.sql);
        await c.query('INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)', [m.version, Date.now()]);
      }
      await c.query(
        `INSERT INTO processes (uuid, type, state, inputs, ctime, mtime)
         VALUES (gen_random_uuid(), 'old', 'created', '{}', 1, 1)`,
      );
    } finally {
      await c.end();
    }
    return { settings: { backend: 'postgres', url: db.url }, drop: db.drop };
  },
};

for (const b of [sqlite, postgres]) {
  describe(`${b.name} store: the profile it belongs to`, function () {
    this.timeout(60_000);
    const drops: Array<() => Promise<void>> = [];
    before(async function () {
      if (b === postgres) {
        const u = new URL(PG_ADMIN_URL);
        requireService(this, await portOpen(Number(u.port || 5432), u.hostname), `PostgreSQL at ${PG_ADMIN_URL}`);
      }
    });
    after(async () => {
      for (const d of drops.splice(0)) await d().catch(() => undefined);
      cleanupTempDirs();
    });

    it('a new store adopts the first profile that opens it to consume, and refuses any other', async () => {
      const loc = await b.fresh();
      drops.push(loc.drop);
      const mine = { name: 'alpha', uuid: crypto.randomUUID() };
      const theirs = { name: 'beta', uuid: crypto.randomUUID() };
      // A client (no profile given) neither records nor checks anything.
      const plain = await openStore(loc.settings);
      assert.equal(await plain.storeProfile(), null);
      await plain.close();

      const { lines, logger } = memoryLogger();
      const s = await openStore(loc.settings, { profile: mine, logger });
      try {
        assert.deepEqual(
          { ...(await s.storeProfile())!, since: 0 },
          { uuid: mine.uuid, name: 'alpha', since: 0 },
          'recorded at the first open',
        );
      } finally {
        await s.close();
      }
      assert.ok(
        lines.some((l) => l.startsWith('info ') && l.includes(`now belongs to profile 'alpha' (uuid ${mine.uuid})`)),
        lines.join('\n'),
      );
      // The same profile again (by another machine's name for it, too): fine, nothing logged.
      const again = memoryLogger();
      const s2 = await openStore(loc.settings, {
        profile: { name: 'alpha-on-host-b', uuid: mine.uuid },
        logger: again.logger,
      });
      await s2.close();
      assert.ok(!again.lines.some((l) => l.includes('belongs to')), again.lines.join('\n'));

      await assert.rejects(openStore(loc.settings, { profile: theirs }), (err: unknown) => {
        assert.ok(err instanceof StoreProfileMismatchError, String(err));
        assert.equal(err.code, 'STORE_PROFILE_MISMATCH');
        const m = err.message;
        assert.ok(m.includes(b === sqlite ? loc.display : 'postgres://'), m);
        assert.ok(m.includes(mine.uuid) && m.includes(theirs.uuid), `both uuids: ${m}`);
        assert.ok(m.includes("profile 'alpha'") && m.includes("'beta'"), m);
        assert.match(m, /refusing to consume/);
        assert.match(m, /drover profile import/);
        return true;
      });
      // Refused, not taken over.
      const check = await openStore(loc.settings);
      try {
        assert.equal((await check.storeProfile())!.uuid, mine.uuid);
      } finally {
        await check.close();
      }
    });

    it('a client of another profile is refused too: nothing it submits would ever run', async () => {
      const loc = await b.fresh();
      drops.push(loc.drop);
      const owner = await openStore(loc.settings, { profile: { name: 'alpha', uuid: crypto.randomUUID() } });
      await owner.close();
      const other = await makeProfile({
        name: 'beta',
        bus: 'local',
        storage: b === sqlite ? 'sqlite' : 'postgres',
        ...(loc.settings.backend === 'sqlite' ? { sqlitePath: loc.settings.path } : { postgresUrl: loc.settings.url }),
      });
      try {
        await assert.rejects(ProcessClient.open(other.profile), (err: unknown) => {
          assert.ok(err instanceof StoreProfileMismatchError, String(err));
          assert.match(err.message, /belongs to profile 'alpha'.*not to profile 'beta'.*refusing to use it/s);
          return true;
        });
        const check = await openStore(loc.settings);
        try {
          const counts = await check.countByState();
          assert.equal(
            Object.values(counts).reduce((x, y) => x + y, 0),
            0,
            'nothing was written',
          );
          assert.equal((await check.storeProfile())!.name, 'alpha');
        } finally {
          await check.close();
        }
      } finally {
        await other.cleanup();
      }
    });

    it('a store made before schema version 6 adopts the first profile that opens it, with a warning', async () => {
      const loc = await b.beforeOwners();
      drops.push(loc.drop);
      const mine = { name: 'legacy', uuid: crypto.randomUUID() };
      const { lines, logger } = memoryLogger();
      const s = await openStore(loc.settings, { profile: mine, logger });
      try {
        assert.equal((await s.storeProfile())!.uuid, mine.uuid);
        assert.equal((await s.listProcesses()).length, 1, 'its processes are kept');
      } finally {
        await s.close();
      }
      assert.ok(
        lines.some(
          (l) =>
            l.startsWith('warn ') &&
            l.includes('holds 1 process(es) but recorded no profile') &&
            l.includes(`now belongs to profile 'legacy' (uuid ${mine.uuid})`),
        ),
        lines.join('\n'),
      );
      await assert.rejects(
        openStore(loc.settings, { profile: { name: 'other', uuid: crypto.randomUUID() } }),
        StoreProfileMismatchError,
      );
    });
  });
}
