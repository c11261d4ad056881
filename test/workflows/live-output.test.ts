/**
 * Issue 13, live output: report lines are written once however often a workflow replays (also
 * after its worker is SIGKILLed), `drover process logs -f` streams a core.shell command's output
 * while it runs, and the output log stays within its size bound. Run on both buses
 * (test/helpers/pool.ts) with SQLite, and on the local bus with PostgreSQL; real daemon or workers.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { ProcessClient } from '../../src/api/processes.js';
import { waitForProcesses } from '../../src/api/control.js';
import { processLogPaths } from '../../src/config/index.js';
import { PG_ADMIN_URL, REPO_ROOT, portOpen, requireService, runCliAsync, spawnCli } from '../helpers/env.js';
import { FIXTURE_MODULE, makeProfile, waitUntil, type TestProfile } from '../helpers/profile.js';
import { BUSES, startPool, type Pool } from '../helpers/pool.js';

const PIPELINE = path.join(REPO_ROOT, 'dist', 'examples', 'shell-pipeline.js');
/** The output log limit of these tests (small, so a test passes it quickly). */
const LOG_MAX = 64 * 1024;

function counts(lines: readonly string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const l of lines) m.set(l, (m.get(l) ?? 0) + 1);
  return m;
}

/** Both buses on SQLite, and the local bus on PostgreSQL (the other store's report keys). */
const SETUPS = [
  ...BUSES.map((bus) => ({ bus, storage: 'sqlite' as const })),
  { bus: 'local' as const, storage: 'postgres' as const },
];

for (const { bus, storage } of SETUPS) {
  describe(`live output: report lines once, process logs (issue 13; ${bus} bus, ${storage})`, function () {
    this.timeout(120_000);
    let tp: TestProfile;
    let client: ProcessClient;
    let pool: Pool | null = null;

    before(async function () {
      if (bus === 'rabbitmq') requireService(this, await portOpen(5672), 'RabbitMQ on 127.0.0.1:5672');
      if (storage === 'postgres') {
        const u = new URL(PG_ADMIN_URL);
        requireService(this, await portOpen(Number(u.port || 5432), u.hostname), `PostgreSQL at ${PG_ADMIN_URL}`);
      }
      tp = await makeProfile({
        bus,
        storage,
        options: {
          'processes.modules': [FIXTURE_MODULE, PIPELINE],
          'daemon.lease_seconds': 3,
          'processes.log_max_bytes': LOG_MAX,
        },
      });
      client = await tp.openClient();
    });

    afterEach(async () => {
      await pool?.stop();
      pool = null;
    });

    after(async () => {
      await client?.close();
      await tp?.cleanup();
    });

    it('the shell pipeline resumed after each step, and after its worker was SIGKILLed, reports each step once', async () => {
      pool = await startPool(tp, 1);
      const commands = [['true'], ['sh', '-c', 'echo two'], ['sleep', '3'], ['sh', '-c', 'echo four']];
      const id = await client.submit('examples.shell_pipeline', { commands });
      // Kill the worker while step 3's command runs: the command runs again, the workflow resumes.
      await waitUntil(
        async () =>
          (await client.listProcesses({ parentId: id, states: ['running'] })).some((c) => c.label === 'step 3'),
        30_000,
        'step 3 to run',
      );
      const victim = (await pool.workers())[0]!;
      await pool.killWorker(victim);
      const [p] = await waitForProcesses(client, [id], { timeoutSeconds: 60 });
      assert.equal(p!.state, 'finished', p!.exception ?? '');
      assert.ok(p!.runs >= 5, `the workflow ran ${p!.runs} times (once, then resumed after each step)`);
      const lines = (await client.getReports(id)).map((l) => l.message);
      assert.deepEqual(
        lines,
        commands.map((c, i) => `step ${i + 1} (${c.join(' ')}): finished, exit status 0`),
        'each step is reported once, in order',
      );
      const step3 = (await client.listProcesses({ parentId: id })).find((c) => c.label === 'step 3')!;
      assert.equal(step3.runs, 2, 'step 3 ran again after the kill');
    });

    it('a workflow reporting before, inside and after steps, SIGKILLed mid-run, has every line exactly once', async () => {
      pool = await startPool(tp, 1);
      const steps = 12;
      const id = await client.submit('test.report_steps', { steps, delayMs: 200 });
      await waitUntil(async () => (await client.store.getJournal(id)).length >= 3, 30_000, '3 steps journaled');
      const victim = (await pool.workers())[0]!;
      await pool.killWorker(victim);
      const [p] = await waitForProcesses(client, [id], { timeoutSeconds: 60 });
      assert.equal(p!.state, 'finished', p!.exception ?? '');
      assert.ok(p!.runs >= 3, `runs ${p!.runs}: the first, the one after the kill, the one after the wait`);
      const lines = (await client.getReports(id)).map((l) => l.message);
      const expected: string[] = [];
      for (let i = 0; i < steps; i++) {
        expected.push(`before ${i}`, `inside ${i}`, `after ${i}`);
        if (i === Math.floor(steps / 2)) expected.push('waited');
      }
      const n = counts(lines);
      for (const e of expected)
        assert.equal(n.get(e) ?? 0, 1, `'${e}' appears ${n.get(e) ?? 0} times in ${lines.join(' | ')}`);
      assert.deepEqual(lines, expected, 'in the order reported');
    });

    it('drover process logs -f shows a core.shell command’s lines while it runs, and ends when it ends', async () => {
      pool = await startPool(tp, 1);
      const id = await client.submit('core.shell', {
        command: ['sh', '-c', 'for i in 1 2 3 4 5; do echo "tick $i"; echo "warn $i" >&2; sleep 1; done'],
      });
      const cli = spawnCli(['process', 'logs', String(id), '-f'], tp.env);
      let out = '';
      let err = '';
      const seenWhile: string[] = [];
      cli.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        // What the store says when a chunk arrives (asynchronously: it can only be later).
        void client.getProcess(id).then((p) => seenWhile.push(`${p.state}:${out.split('\n').length - 1}`));
      });
      cli.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      const exited = new Promise<number | null>((r) => cli.on('exit', (code) => r(code)));
      try {
        await waitUntil(() => out.includes('tick 2'), 30_000, 'tick 2 from logs -f');
        const mid = await client.getProcess(id);
        assert.equal(mid.state, 'running', 'a line arrived while the command was still running');
        assert.ok(!out.includes('tick 5'), `not everything yet: ${out}`);
        const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), 30_000))]);
        assert.equal(code, 0, `logs -f ended: ${err}`);
        const [p] = await waitForProcesses(client, [id], { timeoutSeconds: 5 });
        assert.equal(p!.state, 'finished');
        const want = [1, 2, 3, 4, 5].flatMap((i) => [`tick ${i}`, `warn ${i}`]);
        assert.deepEqual(out.trim().split('\n').sort(), [...want].sort(), out);
        for (const w of want) assert.ok(out.includes(w), w);
        assert.ok(
          seenWhile.some((s) => s.startsWith('running:')),
          seenWhile.join(', '),
        );
        // The outputs it returns are unchanged.
        assert.equal((p!.outputs as { stdout: string }).stdout, [1, 2, 3, 4, 5].map((i) => `tick ${i}\n`).join(''));
        // Without -f: the same output at once.
        const again = await runCliAsync(['process', 'logs', String(id)], tp.env);
        assert.equal(again.status, 0, again.stderr);
        assert.equal(again.stdout, out);
      } finally {
        if (cli.exitCode === null) cli.kill('SIGINT');
        await exited;
      }
    });

    it(`the output log stays within 2 × processes.log_max_bytes (${LOG_MAX} B) and keeps the last of the output`, async () => {
      pool = await startPool(tp, 1);
      const script =
        'i=0; while [ $i -lt 20000 ]; do echo "line $i of the output ....................."; i=$((i+1)); done';
      const id = await client.submit('core.shell', { command: ['sh', '-c', script] });
      const [p] = await waitForProcesses(client, [id], { timeoutSeconds: 60 });
      assert.equal(p!.state, 'finished', p!.exception ?? '');
      const stdout = (p!.outputs as { stdout: string; stdoutTruncated: boolean }).stdout;
      assert.equal((p!.outputs as { stdoutTruncated: boolean }).stdoutTruncated, false);
      assert.ok(stdout.length > 10 * LOG_MAX, `printed ${stdout.length} bytes`);
      const [rotated, current] = processLogPaths(tp.name, id, { ...process.env, ...tp.env });
      const sizes = [fs.statSync(rotated).size, fs.statSync(current).size];
      for (const s of sizes) assert.ok(s > 0 && s <= LOG_MAX, `file sizes ${sizes.join(', ')}`);
      const kept = fs.readFileSync(rotated, 'utf8') + fs.readFileSync(current, 'utf8');
      assert.ok(stdout.endsWith(kept), 'the files hold the end of the output, oldest first');
      assert.ok(kept.endsWith('line 19999 of the output .....................\n'));
      assert.ok(kept.length > LOG_MAX, 'more than one file’s worth is kept');
      const shown = await runCliAsync(['process', 'logs', String(id)], tp.env);
      assert.equal(shown.status, 0, shown.stderr);
      assert.equal(shown.stdout, kept, 'logs prints the rotated file, then the current one');
    });
  });
}
