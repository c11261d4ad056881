/**
 * Issues 6 and 10: workflows that wait without holding a slot, durable steps, process control,
 * state broadcasts and (RabbitMQ) work longer than RabbitMQ's consumer_timeout. Run on both buses
 * (test/helpers/pool.ts). Real RabbitMQ, SQLite, daemon and workers.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import amqp from 'amqplib';
import type { ProcessClient } from '../../src/api/processes.js';
import { killProcesses, pauseProcesses, playProcesses, waitForProcesses } from '../../src/api/control.js';
import { RABBIT_URL, REPO_ROOT, portOpen, requireService, spawnCli, tempDir, cleanupTempDirs } from '../helpers/env.js';
import { FIXTURE_MODULE, makeProfile, waitUntil, type TestProfile } from '../helpers/profile.js';
import { BUSES, startPool, type Pool } from '../helpers/pool.js';

const EXAMPLES = [
  path.join(REPO_ROOT, 'dist', 'examples', 'fan-out.js'),
  path.join(REPO_ROOT, 'dist', 'examples', 'shell-pipeline.js'),
];

function procState(pid: number): string {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] ?? '';
  } catch {
    return 'X';
  }
}

function osProcessesMatching(needle: string): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ');
      if (cmd.includes(needle)) pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

for (const bus of BUSES) {
  describe(`workflows, durable steps and process control (issues 6, 10; ${bus} bus)`, function () {
    this.timeout(180_000);
    let tp: TestProfile;
    let client: ProcessClient;
    let pool: Pool | null = null;
    let dir: string;

    before(async function () {
      if (bus === 'rabbitmq') requireService(this, await portOpen(5672), 'RabbitMQ on 127.0.0.1:5672');
      tp = await makeProfile({
        bus,
        options: { 'processes.modules': [FIXTURE_MODULE, ...EXAMPLES], 'daemon.lease_seconds': 3 },
      });
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

    it('fans out 500 children on 1 worker with 10 slots and sums them (no deadlock)', async () => {
      tp.setOption('daemon.worker_process_slots', 10);
      try {
        pool = await startPool(tp, 1);
        const id = await client.submit('examples.sum_of_squares', { n: 500 });
        const [p] = await waitForProcesses(client, [id], { timeoutSeconds: 120 });
        assert.equal(p!.state, 'finished', p!.exception ?? '');
        assert.deepEqual(p!.outputs, { sum: (500 * 501 * 1001) / 6, children: 500 });
        const children = await client.listProcesses({ parentId: id });
        assert.equal(children.length, 500);
        assert.ok(children.every((c) => c.state === 'finished'));
        // More waiting workflows than slots: each gives its slot back while it waits, so their
        // children still get slots (AiiDA deadlocks here: waiting parents fill every slot).
        const parents = await client.submitMany(
          'examples.sum_of_squares',
          Array.from({ length: 15 }, () => ({ n: 20 })),
        );
        const done = await waitForProcesses(client, parents, { timeoutSeconds: 120 });
        for (const d of done) assert.deepEqual(d.outputs, { sum: (20 * 21 * 41) / 6, children: 20 });
        assert.ok(
          done.some((d) => d.runs >= 2),
          'with 15 parents on 10 slots, some parents must have waited and been resumed',
        );
      } finally {
        tp.setOption('daemon.worker_process_slots', 200);
      }
    });

    it('resumes a workflow after its worker is SIGKILLed: completed steps are not run again', async () => {
      const file = path.join(dir, 'steps.txt');
      pool = await startPool(tp, 1);
      const id = await client.submit('test.append_steps', { file, steps: 10, delayMs: 250 });
      await waitUntil(
        () => fs.existsSync(file) && fs.readFileSync(file, 'utf8').split('\n').length > 4,
        20_000,
        '4 steps',
      );
      // The journal as it was at the kill: taken before the replacement worker can add to it.

      const victim = (await pool.workers())[0]!;
      const killing = pool.killWorker(victim);
      await waitUntil(() => ['X', 'Z'].includes(procState(victim.pid)), 10_000, 'the kill');
      const journaled = (await client.store.getJournal(id)).map((e) => e.name);
      await killing;
      assert.ok(journaled.length >= 3, `journal at kill time: ${journaled.join(', ')}`);
      const [p] = await waitForProcesses(client, [id], { timeoutSeconds: 60 });
      assert.equal(p!.state, 'finished', p!.exception ?? '');
      assert.equal(p!.runs, 2);
      const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
      for (let i = 0; i < 10; i++) {
        const n = lines.filter((l) => l === `step-${i}`).length;
        if (journaled.includes(`step-${i}`)) assert.equal(n, 1, `completed step-${i} appears ${n} times`);
        else assert.ok(n >= 1 && n <= 2, `step-${i} appears ${n} times`);
      }
    });

    // RabbitMQ only: the local bus holds no delivery a broker could time out.
    if (bus === 'rabbitmq')
      it('finishes a 20 s process once with consumer_timeout at 5 s, and no channel is closed', async function () {
        const get = (key: string): string =>
          execFileSync('rabbitmqctl', ['eval', `application:get_env(rabbit, ${key}).`], { encoding: 'utf8' }).trim();
        const set = (key: string, value: string): void => {
          execFileSync('rabbitmqctl', ['eval', `application:set_env(rabbit, ${key}, ${value}).`]);
        };
        let original: { timeout: string; tick: string };
        try {
          original = { timeout: get('consumer_timeout'), tick: get('channel_tick_interval') };
        } catch (err) {
          requireService(this, false, `rabbitmqctl not usable: ${(err as Error).message}`);
          return;
        }
        const restore = (): void => {
          const t = /\{ok,(\d+)\}/.exec(original.timeout);
          set('consumer_timeout', t ? t[1]! : '1800000');
          // Never unset channel_tick_interval: RabbitMQ 3.10 then crashes on every new channel.
          const k = /\{ok,(\d+)\}/.exec(original.tick);
          set('channel_tick_interval', k ? k[1]! : '60000');
        };
        set('consumer_timeout', '5000');
        set('channel_tick_interval', '1000'); // check timeouts every second, not every minute
        try {
          // Control: a consumer that holds a delivery unacked does get its channel closed here.
          const conn = await amqp.connect(RABBIT_URL);
          const ch = await conn.createChannel();
          let closedByBroker = '';
          ch.on('error', (e: Error) => (closedByBroker = e.message));
          const q = await ch.assertQueue('', { exclusive: true });
          await ch.consume(q.queue, () => undefined);
          ch.sendToQueue(q.queue, Buffer.from('held'));
          pool = await startPool(tp, 1);
          const id = await client.submit('core.sleep', { seconds: 20 });
          await waitUntil(() => closedByBroker !== '', 30_000, 'the control channel to be closed by the broker');
          assert.match(closedByBroker, /delivery acknowledgement on channel \d+ timed out/);
          await conn.close().catch(() => undefined);
          const [p] = await waitForProcesses(client, [id], { timeoutSeconds: 60 });
          assert.equal(p!.state, 'finished');
          assert.equal(p!.runs, 1, 'ran once');
          const log = pool.output();
          assert.doesNotMatch(log, /channel (error|closed)|PRECONDITION_FAILED|timed out/i, log);
        } finally {
          restore();
        }
      });

    it('kills a running core.shell sleep: killed within daemon.timeout and the OS process is gone', async () => {
      pool = await startPool(tp, 1);
      const marker = '100.0' + String(process.pid);
      const id = await client.submit('core.shell', { command: ['sleep', marker] });
      await waitUntil(() => osProcessesMatching(`sleep ${marker}`).length === 1, 20_000, 'the OS sleep to start');
      const t0 = Date.now();
      const [reply] = await killProcesses(client, [id]);
      const took = Date.now() - t0;
      assert.equal(reply!.outcome, 'done');
      assert.equal(reply!.state, 'killed');
      assert.ok(took <= tp.profile.options['daemon.timeout'] * 1000 + 500, `kill took ${took} ms`);
      await waitUntil(() => osProcessesMatching(`sleep ${marker}`).length === 0, 5_000, 'the OS sleep to be gone');
    });

    it('kills a waiting workflow: it and its children end killed', async () => {
      pool = await startPool(tp, 1);
      const id = await client.submit('examples.shell_pipeline', { commands: [['sleep', '200.5']] });
      await waitUntil(async () => (await client.getProcess(id)).state === 'waiting', 20_000, 'the workflow to wait');
      const [child] = await client.listProcesses({ parentId: id });
      assert.ok(child);
      const [reply] = await killProcesses(client, [id]);
      assert.equal(reply!.outcome, 'done');
      assert.equal((await client.getProcess(id)).state, 'killed');
      assert.equal((await client.getProcess(child.id)).state, 'killed');
      await waitUntil(() => osProcessesMatching('sleep 200.5').length === 0, 5_000, 'the child command to be gone');
      const again = await killProcesses(client, [id]);
      assert.equal(again[0]!.outcome, 'already terminated');
    });

    it('pause keeps a queued process from starting; kill works on created and paused processes', async () => {
      const queued = await client.submit('core.arithmetic.add', { x: 20, y: 22 });
      const created = await client.submit('core.arithmetic.add', { x: 1, y: 1 });
      const pausedThenKilled = await client.submit('core.arithmetic.add', { x: 2, y: 2 });
      assert.deepEqual(
        (await pauseProcesses(client, [queued, pausedThenKilled])).map((r) => r.outcome),
        ['done', 'done'],
      );
      const killed = await killProcesses(client, [created, pausedThenKilled]);
      assert.deepEqual(
        killed.map((r) => [r.outcome, r.state]),
        [
          ['done', 'killed'],
          ['done', 'killed'],
        ],
      );
      pool = await startPool(tp, 1);
      const marker = await client.submit('core.arithmetic.add', { x: 0, y: 0 });
      await waitForProcesses(client, [marker], { timeoutSeconds: 30 });
      const p = await client.getProcess(queued);
      assert.equal(p.state, 'created', 'a paused process does not start');
      assert.equal(p.paused, true);
      await playProcesses(client, [queued]);
      const [done] = await waitForProcesses(client, [queued], { timeoutSeconds: 30 });
      assert.equal(done!.state, 'finished');
      assert.deepEqual(done!.outputs, { sum: 42 });
      for (const id of [created, pausedThenKilled]) assert.equal((await client.getProcess(id)).runs, 0);
    });

    it('pauses a running workflow at a step boundary and finishes it when played', async () => {
      const file = path.join(dir, 'pause.txt');
      pool = await startPool(tp, 1);
      const id = await client.submit('test.append_steps', { file, steps: 12, delayMs: 200 });
      await waitUntil(
        () => fs.existsSync(file) && fs.readFileSync(file, 'utf8').split('\n').length > 2,
        20_000,
        '2 steps',
      );
      const [r] = await pauseProcesses(client, [id]);
      assert.equal(r!.outcome, 'done');
      assert.equal(r!.paused, true);
      const p = await client.getProcess(id);
      assert.equal(p.leaseOwner, null, 'a paused process holds no slot');
      const stepsAtPause = (await client.store.getJournal(id)).length;
      const linesAtPause = fs.readFileSync(file, 'utf8').trim().split('\n').length;
      assert.equal(linesAtPause, stepsAtPause, 'it stopped at a step boundary (every appended step is journaled)');
      await new Promise((res) => setTimeout(res, 1000));
      assert.equal(fs.readFileSync(file, 'utf8').trim().split('\n').length, linesAtPause, 'no progress while paused');
      const [played] = await playProcesses(client, [id]);
      assert.equal(played!.outcome, 'done');
      const [done] = await waitForProcesses(client, [id], { timeoutSeconds: 30 });
      assert.equal(done!.state, 'finished');
      const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
      assert.deepEqual(
        lines,
        Array.from({ length: 12 }, (_, i) => `step-${i}`),
      );
    });

    it('excepts a replay that diverges from the journal, naming the step', async () => {
      pool = await startPool(tp, 1);
      const id = await client.submit('test.diverge', { marker: path.join(dir, 'diverge-marker') });
      const [p] = await waitForProcesses(client, [id], { timeoutSeconds: 30 });
      assert.equal(p!.state, 'excepted');
      assert.match(
        p!.exception ?? '',
        /non-deterministic replay .* journal has step 'first' but run now called step 'second'/,
      );
    });

    it('drover process watch shows created → running → waiting → running → finished for a workflow', async () => {
      pool = await startPool(tp, 1);
      const watch = spawnCli(['process', 'watch', '--json', '--timeout', '60'], tp.env);
      let out = '';
      let err = '';
      watch.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      watch.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      const exited = new Promise((r) => watch.on('exit', r));
      try {
        await waitUntil(() => err.includes('Watching'), 20_000, 'watch to subscribe');
        const id = await client.submit('examples.shell_pipeline', { commands: [['sleep', '0.5']] });
        await waitForProcesses(client, [id], { timeoutSeconds: 30 });
        await waitUntil(
          () => out.split('\n').some((l) => l.includes(`"processId":${id}`) && l.includes('"finished"')),
          10_000,
          'the finished broadcast',
        );
        const states = out
          .split('\n')
          .filter((l) => l.trim() !== '')
          .map((l) => JSON.parse(l) as { processId: number; state: string })
          .filter((m) => m.processId === id)
          .map((m) => m.state);
        assert.deepEqual(states, ['created', 'running', 'waiting', 'running', 'finished']);
      } finally {
        watch.kill('SIGINT');
        await exited;
      }
    });
  });
}
