/**
 * `src/store/index.ts` loads an adapter (and its native or network driver) only when a profile of
 * that backend is opened: a CLI command on a SQLite profile never pays for `pg`, and one on a
 * PostgreSQL profile never loads `better-sqlite3`.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import {
  PG_ADMIN_URL,
  REPO_ROOT,
  cleanupTempDirs,
  freshPostgresDatabase,
  portOpen,
  requireService,
  tempDir,
} from '../helpers/env.js';

const STORE_MODULE = pathToFileURL(path.join(REPO_ROOT, 'dist', 'src', 'store', 'index.js')).href;

/** Imports the store module in a fresh Node, opens `settings` (unless null); returns the drivers loaded. */
function driversLoaded(settings: object | null): string[] {
  const code = `
    import { createRequire } from 'node:module';
    const m = await import(${JSON.stringify(STORE_MODULE)});
    const settings = ${JSON.stringify(settings)};
    if (settings !== null) await (await m.openStore(settings)).close();
    const cache = createRequire(import.meta.url).cache;
    const names = new Set();
    for (const k of Object.keys(cache)) {
      const hit = /node_modules\\/(pg|better-sqlite3)\\//.exec(k);
      if (hit) names.add(hit[1]);
    }
    console.log(JSON.stringify([...names].sort()));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as string[];
}

describe('store adapters are loaded lazily', function () {
  after(cleanupTempDirs);

  it('importing the store module loads neither pg nor better-sqlite3', function () {
    assert.deepEqual(driversLoaded(null), []);
  });

  it('opening a SQLite store loads better-sqlite3 and not pg', function () {
    const file = path.join(tempDir('drover-lazy-'), 'store.db');
    assert.deepEqual(driversLoaded({ backend: 'sqlite', path: file }), ['better-sqlite3']);
  });

  it('opening a PostgreSQL store loads pg and not better-sqlite3', async function () {
    const u = new URL(PG_ADMIN_URL);
    requireService(this, await portOpen(Number(u.port || 5432), u.hostname), `PostgreSQL at ${PG_ADMIN_URL}`);
    const db = await freshPostgresDatabase();
    try {
      assert.deepEqual(driversLoaded({ backend: 'postgres', url: db.url }), ['pg']);
    } finally {
      await db.drop();
    }
  });
});
