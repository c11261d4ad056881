/**
 * The registry of daemons in the store (issue 11): every daemon of a profile records itself and
 * its workers; `daemon status --cluster` on any of them lists all, stale ones marked; the slot
 * line of `process list` counts every live worker; a daemon that stops leaves the registry.
 * Two daemons of one profile on this machine stand for two hosts (each its own DROVER_HOME, the
 * same profile uuid, one PostgreSQL store and one RabbitMQ).
 */
import assert from 'node:assert/strict';
import os from 'node:os';
import pg from 'pg';
import type { ChildProcess } from 'node:child_process';
import { EXIT } from '../../src/cli/exit-codes.js';
import { REGISTRY_STALE_MS } from '../../src/store/types.js';
import { openStore } from '../../src/store/index.js';
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
import type { ClusterStatusResult } from '../../src/cli/cluster-status.js';

describe('the registry of daemons across hosts (issue 11)', function () {
  this.timeout(90_000);
  let tp: TestProfile;
  let second: NodeJS.ProcessEnv;
  const daemons: Array<{ child: ChildProcess; out: () => string }> = [];

  const startDaemon = async (
    env: NodeJS.ProcessEnv,
    n: number,
  ): Promise<{ child: ChildProcess; out: () => string }> => {
    const child = spawnCli(['daemon', 'start', String(n), '--foreground'], env);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const d = { child, out: () => out };
    daemons.push(d);
    await waitUntil(() => (out.match(/is ready/g) ?? []).length >= n, 30_000, `a daemon with ${n} workers:\n${out}`);
    return d;
  };
  const stop = async (d: { child: ChildProcess }): Promise<void> => {
    if (d.child.exitCode !== null || d.child.signalCode !== null) return;
    const exited = new Promise((r) => d.child.on('exit', r));
    d.child.kill('SIGTERM');
    await exited;
  };
  const cluster = async (env: NodeJS.ProcessEnv): Promise<{ status: number; r: ClusterStatusResult; text: string }> => {
    const j = await runCliAsync(['daemon', 'status', '--cluster', '--json'], env);
    const t = await runCliAsync(['daemon', 'status', '--cluster'], env);
    return { status: j.status, r: JSON.parse(j.stdout) as ClusterStatusResult, text: t.stdout };
  };

  before(async function () {
    requireService(this, await portOpen(5672), `RabbitMQ is not reachable at ${RABBIT_URL}`);
    requireService(this, await portOpen(5432), 'PostgreSQL is not reachable at 127.0.0.1:5432');
    tp = await makeProfile({ storage: 'postgres', bus: 'rabbitmq' });
    second = anotherHost(tp);
  });
  after(async () => {
    for (const d of daemons) await stop(d);
    await tp?.cleanup();
    cleanupTempDirs();
  });

  it('daemon status --cluster lists both daemons and their workers from either; process list counts every worker', async () => {
    const none = await cluster(tp.env);
    assert.equal(none.status, EXIT.UNREACHABLE, 'no daemon registered: exit 3');
    assert.match(none.text, /No daemon of profile 'test' is registered/);
    const a = await startDaemon(tp.env, 1);
    const b = await startDaemon(second, 2);
    for (const env of [tp.env, second]) {
      const { status, r, text } = (await waitUntil(
        async () => {
          const c = await cluster(env);
          return c.r.live === 2 ? c : null;
        },
        20_000,
        'both daemons in the registry',
      ))!;
      assert.equal(status, EXIT.OK);
      assert.deepEqual(
        r.daemons.map((d) => [d.pid, d.workers.length, d.stale, d.host]).sort(),
        [
          [a.child.pid, 1, false, os.hostname()],
          [b.child.pid, 2, false, os.hostname()],
        ].sort(),
      );
      for (const d of r.daemons) for (const w of d.workers) assert.ok(w.id.startsWith(`${os.hostname()}:`), w.id);
      assert.match(text, /Daemons of profile 'test': 2 live/);
      assert.equal((text.match(new RegExp(`^${os.hostname()}:\\S+-w\\d`, 'gm')) ?? []).length, 3, text);
    }
    const list = await runCliAsync(['process', 'list', '--json'], tp.env);
    assert.equal(list.status, EXIT.OK, list.stderr + list.stdout);
    const slots = (JSON.parse(list.stdout) as { slots: { workers: number } }).slots;
    assert.equal(slots.workers, 3, 'the workers of both daemons');
    const text = await runCliAsync(['process', 'list'], second);
    assert.match(text.stdout, /\(3 worker\(s\) × \d+\)/);

    // A daemon that stops leaves the registry at once.
    await stop(b);
    const after = await cluster(tp.env);
    assert.deepEqual(
      after.r.daemons.map((d) => d.pid),
      [a.child.pid],
    );
    const one = await runCliAsync(['process', 'list', '--json'], tp.env);
    assert.equal((JSON.parse(one.stdout) as { slots: { workers: number } }).slots.workers, 1);
  });

  it('a daemon silent for four heartbeats is shown stale and its workers are not counted', async () => {
    const store = await openStore(tp.profile.storage);
    try {
      await store.registerDaemon({
        id: 'lost-host:4242:1',
        host: 'lost-host',
        pid: 4242,
        version: '0.0.1',
        state: 'running',
        startedAt: 1,
        workers: [{ id: 'lost-host:abc-w1-000000', pid: 4243, slots: 200, running: 7 }],
      });
    } finally {
      await store.close();
    }
    // Its heartbeat made old, as a host cut off 20 s ago would leave it.
    const url = tp.profile.storage.backend === 'postgres' ? tp.profile.storage.url : '';
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      await c.query('UPDATE daemons SET heartbeat_at = heartbeat_at - $1 WHERE id = $2', [
        REGISTRY_STALE_MS + 5000,
        'lost-host:4242:1',
      ]);
    } finally {
      await c.end();
    }
    const { r, text } = await cluster(tp.env);
    const lost = r.daemons.find((d) => d.host === 'lost-host')!;
    assert.equal(lost.stale, true);
    assert.ok(lost.ageMs >= REGISTRY_STALE_MS, String(lost.ageMs));
    assert.equal(r.live, 1);
    assert.equal(r.stale, 1);
    assert.match(text, /lost-host\s+4242\s+stale \(was running\)/);
    const list = await runCliAsync(['process', 'list', '--json'], tp.env);
    assert.equal(
      (JSON.parse(list.stdout) as { slots: { workers: number } }).slots.workers,
      1,
      'the stale one is not counted',
    );
  });
});
