/**
 * The SQLite store's own wait for a busy write lock (its connection's busy timeout is 0; the store
 * tries again in short steps up to its own busy timeout): a write that meets another OS process's
 * transaction waits for it and then succeeds, writing once; reads are not held up by it.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { REPO_ROOT, cleanupTempDirs, tempDir } from '../helpers/env.js';

/** Another OS process that takes the write lock, writes a row, says `locked`, and commits after `holdMs`. */
const HOLDER = `
import Database from 'better-sqlite3';
const db = new Database(process.argv[1]);
db.exec('BEGIN IMMEDIATE');
db.prepare("INSERT INTO profile_options (key, value, updated_at) VALUES ('holder', '1', 0)").run();
process.stdout.write('locked\\n');
setTimeout(() => { db.exec('COMMIT'); db.close(); }, Number(process.argv[2]));
`;

describe('SQLite store: waiting for the write lock', () => {
  after(cleanupTempDirs);

  it('a write that meets another process holding the write lock waits for its commit, then succeeds once', async () => {
    const file = path.join(tempDir(), 'busy', 'store.db');
    const s = openSqliteStore(file);
    try {
      const child = spawn(process.execPath, ['--input-type=module', '-e', HOLDER, file, '400'], {
        cwd: REPO_ROOT,
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
      await new Promise<void>((resolve, reject) => {
        let out = '';
        child.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('locked')) resolve();
        });
        child.on('exit', () => reject(new Error(`the holder exited before it took the lock: ${out}`)));
      });
      // A read does not wait for the writer (WAL): it sees the state before the holder's commit.
      assert.deepEqual(await s.getSharedOptions(), {});
      const ids = await s.createProcesses([
        { type: 'x', inputs: 1 },
        { type: 'x', inputs: 2 },
      ]);
      assert.equal(ids.length, 2);
      // The write went in after the holder's commit: the holder's row is there too.
      assert.deepEqual(await s.getSharedOptions(), { holder: 1 });
      assert.equal(await exited, 0);
      assert.deepEqual(
        (await s.listProcesses({ type: 'x' })).map((p) => p.id),
        [...ids].reverse(),
        'written once',
      );
    } finally {
      await s.close();
    }
  });
});
