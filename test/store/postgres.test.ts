/**
 * The PostgreSQL adapter: the conformance suite on a fresh database (dropped afterwards), plus
 * connection failures.
 */
import assert from 'node:assert/strict';
import pg from 'pg';
import { StoreError } from '../../src/errors/index.js';
import { openStore } from '../../src/store/index.js';
import { PG_ADMIN_URL, closedPort, freshPostgresDatabase, portOpen, requireService } from '../helpers/env.js';
import { storeConformance, type StoreHarness } from './conformance.js';

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
      assert.ok(err instanceof StoreError);
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
