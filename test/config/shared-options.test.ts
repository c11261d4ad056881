/**
 * Options every host of a profile shares (issue 11, must-show 2): on a PostgreSQL profile,
 * `drover config set daemon.worker_process_slots 50` on one host is written to the profile's
 * store, and every host's daemon uses 50 after its restart, with no edit on the other hosts.
 * Host options stay in each host's file; a SQLite profile keeps everything in its file.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import {
  RABBIT_URL,
  portOpen,
  requireService,
  runCliAsync,
  spawnCli,
  cleanupTempDirs,
  waitUntil,
} from '../helpers/env.js';
import { anotherHost, makeProfile, type TestProfile } from '../helpers/profile.js';

describe('shared options of a profile on several hosts (issue 11)', function () {
  this.timeout(60_000);
  let tp: TestProfile;
  let hostB: NodeJS.ProcessEnv;
  const children: ChildProcess[] = [];

  before(async function () {
    requireService(this, await portOpen(5672), `RabbitMQ is not reachable at ${RABBIT_URL}`);
    requireService(this, await portOpen(5432), 'PostgreSQL is not reachable at 127.0.0.1:5432');
    tp = await makeProfile({ storage: 'postgres', bus: 'rabbitmq' });
    hostB = anotherHost(tp, 'drover-hostb-');
  });
  after(async () => {
    for (const c of children) {
      if (c.exitCode === null && c.signalCode === null) {
        const exited = new Promise((r) => c.on('exit', r));
        c.kill('SIGTERM');
        await exited;
      }
    }
    await tp?.cleanup();
    cleanupTempDirs();
  });

  const json = <T>(r: { status: number; stdout: string; stderr: string }): T => {
    assert.equal(r.status, 0, r.stderr + r.stdout);
    return JSON.parse(r.stdout) as T;
  };

  it('config set of a shared option on host A reaches host B (config get, and its daemon after a start)', async () => {
    const fileB = fs.readFileSync(path.join(hostB.DROVER_HOME!, 'config.json'));
    const set = json<{ where: string }>(
      await runCliAsync(['config', 'set', 'daemon.worker_process_slots', '50', '--json'], tp.env),
    );
    assert.equal(set.where, 'store');
    const got = json<{ value: number; source: string }>(
      await runCliAsync(['config', 'get', 'daemon.worker_process_slots', '--json'], hostB),
    );
    assert.deepEqual([got.value, got.source], [50, 'store']);
    assert.deepEqual(fs.readFileSync(path.join(hostB.DROVER_HOME!, 'config.json')), fileB, 'no edit on host B');
    // A host option stays on its host.
    json(await runCliAsync(['config', 'set', 'daemon.timeout', '7', '--json'], tp.env));
    const timeoutB = json<{ value: number; source: string }>(
      await runCliAsync(['config', 'get', 'daemon.timeout', '--json'], hostB),
    );
    assert.deepEqual([timeoutB.value, timeoutB.source], [2, 'default']);
    const list = await runCliAsync(['config', 'list'], hostB);
    assert.match(list.stdout, /^daemon\.worker_process_slots\s+50\s+store\s+shared\s+yes$/m);
    assert.match(list.stdout, /^daemon\.timeout\s+2\s+default\s+host\s*$/m);
    // Host B's worker uses 50 slots.
    const w = spawnCli(['daemon', 'worker'], hostB);
    children.push(w);
    let out = '';
    w.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    w.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    await waitUntil(() => /consuming profile 'test' with \d+ slots/.test(out), 30_000, `the worker:\n${out}`);
    assert.match(out, /with 50 slots/);
    const pl = json<{ slots: { slotsPerWorker: number } }>(await runCliAsync(['process', 'list', '--json'], hostB));
    assert.equal(pl.slots.slotsPerWorker, 50, "process list's slot line counts the shared value");
  });

  it("a daemon on host B starts its workers with the store's value; unset on A brings the default back", async () => {
    json(await runCliAsync(['config', 'set', 'daemon.worker_process_slots', '40', '--json'], tp.env));
    const d = spawnCli(['daemon', 'start', '1', '--foreground'], hostB);
    children.push(d);
    let out = '';
    d.stdout!.on('data', (x: Buffer) => (out += x.toString()));
    d.stderr!.on('data', (x: Buffer) => (out += x.toString()));
    await waitUntil(() => /is ready/.test(out), 30_000, `the daemon:\n${out}`);
    assert.match(out, /shared options from the store: daemon\.worker_process_slots/);
    assert.match(out, /with 40 slots/);
    const status = await runCliAsync(['daemon', 'status', '--json'], hostB);
    assert.doesNotMatch(
      status.stdout + status.stderr,
      /worker_process_slots.*restart/,
      'no false "restart to pick up"',
    );
    const un = json<{ changed: boolean; value: number; source: string }>(
      await runCliAsync(['config', 'unset', 'daemon.worker_process_slots', '--json'], tp.env),
    );
    assert.deepEqual([un.changed, un.value, un.source], [true, 200, 'default']);
    const got = json<{ value: number; source: string }>(
      await runCliAsync(['config', 'get', 'daemon.worker_process_slots', '--json'], hostB),
    );
    assert.deepEqual([got.value, got.source], [200, 'default']);
  });

  it('a bad value changes nothing in the store; a SQLite profile keeps shared options in its file', async () => {
    const bad = await runCliAsync(['config', 'set', 'daemon.worker_process_slots', '0'], tp.env);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /daemon\.worker_process_slots/);
    const got = json<{ value: number }>(
      await runCliAsync(['config', 'get', 'daemon.worker_process_slots', '--json'], hostB),
    );
    assert.equal(got.value, 200);
    const local = await makeProfile({ bus: 'local' });
    try {
      const set = json<{ where: string }>(
        await runCliAsync(['config', 'set', 'daemon.worker_process_slots', '9', '--json'], local.env),
      );
      assert.equal(set.where, 'file');
      assert.equal(local.reload().options['daemon.worker_process_slots'], 9);
    } finally {
      await local.cleanup();
    }
  });
});
