/**
 * Issues 3 and 10: processes are stored, dispatched through the profile's message bus, claimed by
 * exactly one worker and run to completion; nothing is lost when a worker or a submitter dies. Run
 * on both buses (test/helpers/pool.ts): RabbitMQ with `drover daemon worker` processes, and the
 * local bus with a real daemon as the hub. Real RabbitMQ, real SQLite, real worker processes.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import amqp from 'amqplib';
import type { ProcessClient } from '../../src/api/processes.js';
import type { RabbitBus } from '../../src/broker/rabbitmq/index.js';
import { waitForProcesses } from '../../src/api/control.js';
import { RABBIT_URL, portOpen, requireService, runCli, runCliAsync, tempDir, cleanupTempDirs } from '../helpers/env.js';
import { countRuns, makeProfile, waitUntil, type TestProfile } from '../helpers/profile.js';
import { BUSES, startPool, type Pool } from '../helpers/pool.js';
import { checkEndRecords } from '../helpers/end-record.js';

for (const bus of BUSES) {
  describe(`processes run to completion (issues 3, 10; ${bus} bus)`, function () {
    this.timeout(120_000);
    let tp: TestProfile;
    let client: ProcessClient;
    let pool: Pool | null = null;
    let dir: string;

    before(async function () {
      if (bus === 'rabbitmq') requireService(this, await portOpen(5672), 'RabbitMQ on 127.0.0.1:5672');
      tp = await makeProfile({ bus, options: { 'daemon.lease_seconds': 3 } });
      client = await tp.openClient();
      dir = tempDir();
    });

    afterEach(async () => {
      await pool?.stop();
      pool = null;
    });

    after(async () => {
      await client?.close();
      await tp?.cleanup();
      cleanupTempDirs();
    });

    async function waitAllTerminal(ids: number[], timeoutMs = 60_000): Promise<void> {
      await waitForProcesses(client, ids, { timeoutSeconds: timeoutMs / 1000 });
    }

    it('a wait for one process returns the record as stored, carried by its end event (no second store read)', async () => {
      pool = await startPool(tp, 1);
      await checkEndRecords(client);
    });

    it('a loop of awaited submits that never waits otherwise: its first process runs while the loop goes on', async () => {
      pool = await startPool(tp, 1);
      const fresh = await tp.openClient();
      const ids: number[] = [];
      try {
        const first = await fresh.submit('core.arithmetic.add', { x: 1, y: 1 });
        ids.push(first);
        let state = 'created';
        // SQLite answers every await here with a settled promise: nothing in the loop itself waits
        // for the event loop. Up to 3,000 submits, fewer than a client leaves unconfirmed.
        while (state !== 'finished' && ids.length < 3000) {
          ids.push(await fresh.submit('core.arithmetic.add', { x: ids.length, y: 1 }));
          state = (await fresh.getProcess(first)).state;
        }
        assert.equal(state, 'finished', `the first process is still ${state} after ${ids.length} submits`);
      } finally {
        await waitForProcesses(fresh, ids, { timeoutSeconds: 60 });
        await fresh.close();
      }
    });

    it('runs 1,000 additions on 2 workers: all finished, every sum right, each run exactly once', async () => {
      const runs = path.join(dir, 'runs-1000');
      pool = await startPool(tp, 2);
      const inputs = Array.from({ length: 1000 }, (_, i) => ({ x: i, y: 2 * i, file: runs }));
      const ids = await client.submitMany('test.record_add', inputs);
      await waitAllTerminal(ids);
      const procs = await client.listProcesses({ type: 'test.record_add' });
      assert.equal(procs.length, 1000);
      const byId = new Map(procs.map((p) => [p.id, p]));
      ids.forEach((id, i) => {
        const p = byId.get(id)!;
        assert.equal(p.state, 'finished', `process ${id}`);
        assert.equal(p.exitStatus, 0);
        assert.deepEqual(p.outputs, { sum: 3 * i });
        assert.equal(p.runs, 1, `process ${id} claimed ${p.runs} times`);
      });
      const counts = countRuns(runs);
      assert.equal(counts.size, 1000);
      for (const id of ids) assert.equal(counts.get(id), 1, `process ${id} ran ${counts.get(id)} times`);
      // Both workers took part.
      const owners = new Set(procs.map((p) => p.workerId));
      assert.equal(owners.size, 2, `expected both workers to run processes, got ${[...owners].join(', ')}`);
    });

    it('finishes every process once when one of two workers is SIGKILLed mid-run', async () => {
      const runs = path.join(dir, 'runs-kill');
      pool = await startPool(tp, 2);
      const ids = await client.submitMany(
        'test.record_sleep',
        Array.from({ length: 200 }, () => ({ seconds: 1, file: runs })),
      );
      // Wait until both workers run some, then kill one.
      await waitUntil(
        async () => {
          const running = await client.listProcesses({ states: ['running'] });
          return new Set(running.map((p) => p.workerId)).size === 2;
        },
        20_000,
        'both workers to run processes',
      );
      const victim = (await pool.workers())[0]!;
      const victimId = victim.workerId;
      await pool.killWorker(victim);
      await waitAllTerminal(ids, 60_000);
      const procs = await Promise.all(ids.map((id) => client.getProcess(id)));
      const counts = countRuns(runs);
      let rerun = 0;
      for (const p of procs) {
        assert.equal(p.state, 'finished', `process ${p.id} is ${p.state}`);
        assert.deepEqual(p.outputs, { slept: 1 });
        assert.equal(p.leaseOwner, null, `process ${p.id} still leased`);
        assert.notEqual(p.workerId, victimId, `process ${p.id} recorded as finished by the dead worker`);
        // A process interrupted by the kill starts again elsewhere; any other starts once. (The dead
        // worker may have claimed some it had not yet started: starts <= claims.)
        const starts = counts.get(p.id) ?? 0;
        assert.ok(starts >= 1 && starts <= p.runs, `process ${p.id}: ${starts} starts, ${p.runs} claims`);
        if (p.runs === 1) assert.equal(starts, 1, `process ${p.id} ran ${starts} times on one claim`);
        if (p.runs > 1) rerun++;
        assert.ok(p.runs <= 2, `process ${p.id} claimed ${p.runs} times`);
      }
      assert.ok(rerun > 0, 'the killed worker was running processes, so some must have been resumed elsewhere');
      const stuck = await client.listProcesses({ states: ['running'] });
      assert.deepEqual(stuck, []);
    });

    it('drops a duplicate continue task and a task for a finished process', async () => {
      const runs = path.join(dir, 'runs-dup');
      pool = await startPool(tp, 1);
      const [id] = await client.store.createProcesses([
        { type: 'test.record_add', inputs: { x: 1, y: 1, file: runs } },
      ]);
      const broker = (await client.bus())!;
      await broker.publishContinue([id!, id!]);
      await waitAllTerminal([id!]);
      await broker.publishContinue([id!]);
      // Give the worker time to take (and drop) the third task, then check nothing ran again.
      const marker = await client.submit('core.arithmetic.add', { x: 0, y: 0 });
      await waitAllTerminal([marker]);
      assert.equal(countRuns(runs).get(id!), 1);
      const p = await client.getProcess(id!);
      assert.equal(p.runs, 1);
      assert.equal(p.state, 'finished');
    });

    it('runs a process whose submitter died between the store commit and the publish', async () => {
      const runs = path.join(dir, 'runs-crash');
      const r = await runCliAsync(
        ['process', 'submit', 'test.record_add', '--inputs', JSON.stringify({ x: 2, y: 3, file: runs })],
        { ...tp.env, DROVER_FAULT: 'crash-after-commit' },
      );
      assert.notEqual(r.status, 0, 'the submitter should have been killed');
      const [p] = await client.listProcesses({ type: 'test.record_add', limit: 1 });
      assert.ok(p && p.state === 'created', 'the process was committed before the crash');
      pool = await startPool(tp, 1);
      await waitAllTerminal([p.id], 30_000);
      const done = await client.getProcess(p.id);
      assert.equal(done.state, 'finished');
      assert.deepEqual(done.outputs, { sum: 5 });
      assert.equal(countRuns(runs).get(p.id), 1);
    });

    it('runs core.shell: non-zero exit finishes with that status; a missing command excepts clearly', async () => {
      pool = await startPool(tp, 1);
      const ok = await client.submit('core.shell', { command: ['sh', '-c', 'echo hi; exit 3'] });
      const missing = await client.submit('core.shell', { command: ['drover-no-such-command-xyz'] });
      await waitAllTerminal([ok, missing]);
      const a = await client.getProcess(ok);
      assert.equal(a.state, 'finished');
      assert.equal(a.exitStatus, 3);
      assert.match(a.exitMessage ?? '', /exited with status 3/);
      assert.equal((a.outputs as { stdout: string }).stdout, 'hi\n');
      const b = await client.getProcess(missing);
      assert.equal(b.state, 'excepted');
      assert.match(b.exception ?? '', /command not found: 'drover-no-such-command-xyz'/);
      // The worker is alive and still runs work.
      const after = await client.submit('core.arithmetic.add', { x: 1, y: 1 });
      await waitAllTerminal([after]);
      assert.equal((await client.getProcess(after)).state, 'finished');
      assert.ok(!/exited unexpectedly/.test(pool.output()), 'no worker died');
    });

    // RabbitMQ only: the local bus has no queue to put bytes on (its garbage test is in test/broker/local.test.ts).
    if (bus === 'rabbitmq')
      it('survives garbage on the task queue: logs one line each, dead-letters it, no loop', async () => {
        pool = await startPool(tp, 1);
        const broker = ((await client.bus()) as RabbitBus).connection;
        await broker.publishRawTask(Buffer.from('this is not json'));
        await broker.publishRawTask(Buffer.from(JSON.stringify({ v: 1, kind: 'continue', processId: 987654321 })));
        await broker.publishRawTask(Buffer.from(JSON.stringify({ v: 1, kind: 'continue', processId: 'seven' })));
        const marker = await client.submit('core.arithmetic.add', { x: 0, y: 1 });
        await waitAllTerminal([marker]);
        await waitUntil(
          () => /no such process/.test(pool!.output()) && (pool!.output().match(/dead-lettered/g) ?? []).length >= 2,
          10_000,
          'log lines for the garbage',
        );
        const out = pool.output();
        assert.equal((out.match(/not JSON/g) ?? []).length, 1, out);
        assert.equal((out.match(/processId must be a positive integer/g) ?? []).length, 1, out);
        // Acked (nothing requeued, see below) but logged at ERROR, naming the store and the profile.
        const unknown = out.split('\n').filter((l) => l.includes('dropped task for process 987654321'));
        assert.equal(unknown.length, 1, out);
        assert.match(
          unknown[0]!,
          new RegExp(
            `ERROR .*dropped task for process 987654321: store \\S+ has no such process ` +
              `\\(profile '${tp.profile.name}', uuid ${tp.profile.uuid}\\)`,
          ),
        );
        const conn = await amqp.connect(RABBIT_URL);
        try {
          const ch = await conn.createChannel();
          const tasks = await ch.checkQueue(broker.topology.taskQueue);
          const dead = await ch.checkQueue(broker.topology.deadQueue);
          assert.equal(tasks.messageCount, 0, 'task queue must be empty (no requeue loop)');
          assert.equal(dead.messageCount, 2, 'the two malformed bodies are dead-lettered');
          await ch.purgeQueue(broker.topology.deadQueue);
        } finally {
          await conn.close();
        }
        assert.equal((await pool.workers()).length, 1, 'worker still up');
      });

    it('rejects an unknown type or inputs that are not valid JSON at submit, storing nothing', async () => {
      const before = (await client.listProcesses({})).length;
      const a = runCli(['process', 'submit', 'no.such.type'], tp.env);
      assert.equal(a.status, 1);
      assert.match(a.stderr, /unknown process type 'no\.such\.type'/);
      const b = runCli(['process', 'submit', 'core.arithmetic.add', '--inputs', '{"x": 1,'], tp.env);
      assert.equal(b.status, 1);
      assert.match(b.stderr, /--inputs is not valid JSON/);
      const c = runCli(['process', 'submit', 'core.arithmetic.add', '-i', 'x=1', '-i', 'y=two'], tp.env);
      assert.equal(c.status, 1);
      assert.match(c.stderr, /'y' must be a number/);
      await assert.rejects(client.submit('core.sleep', { seconds: -1 }), /'seconds' must be a number/);
      assert.equal((await client.listProcesses({})).length, before);
    });

    it('drover process submit --wait prints the outcome; process kill replies per id', async () => {
      pool = await startPool(tp, 1);
      const r = await runCliAsync(
        ['process', 'submit', 'core.arithmetic.add', '-i', 'x=40', '-i', 'y=2', '--wait', '--json'],
        tp.env,
      );
      assert.equal(r.status, 0, r.stderr);
      const res = JSON.parse(r.stdout) as { id: number; state: string; exitStatus: number; outputs: unknown };
      assert.equal(res.state, 'finished');
      assert.deepEqual(res.outputs, { sum: 42 });
      const k = await runCliAsync(['process', 'kill', String(res.id), '999999', '--json'], tp.env);
      const replies = (JSON.parse(k.stdout) as { replies: Array<{ id: number; outcome: string }> }).replies;
      assert.deepEqual(
        replies.map((x) => [x.id, x.outcome]),
        [
          [res.id, 'already terminated'],
          [999999, 'not found'],
        ],
      );
    });

    it('prints process list with the slot-usage line, show, and report', async () => {
      const id = await client.submit('test.throws', null);
      pool = await startPool(tp, 1);
      await waitAllTerminal([id]);
      const show = runCli(['process', 'show', String(id), '--json'], tp.env);
      assert.equal(show.status, 0, show.stderr);
      const rec = JSON.parse(show.stdout) as { state: string; exception: string };
      assert.equal(rec.state, 'excepted');
      assert.match(rec.exception, /boom from test\.throws/);
      const rep = runCli(['process', 'report', String(id)], tp.env);
      assert.match(rep.stdout, /about to throw/);
      const list = runCli(['process', 'list', '--all', '--limit', '5'], tp.env);
      assert.equal(list.status, 0, list.stderr);
      assert.match(list.stdout, new RegExp(`^${id}\\s+.*excepted.*test\\.throws`, 'm'));
      assert.match(list.stdout, /active process\(es\)/);
      fs.rmSync(path.join(dir, 'nothing'), { force: true });
    });
  });
}
