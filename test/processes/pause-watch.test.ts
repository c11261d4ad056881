/**
 * Issue 13: pause and play of a running command (its process group stopped with SIGSTOP and
 * continued with SIGCONT), the `pausing` reply for a workflow, and `drover process watch` printing
 * the current state first and then every change in order. Run on both buses (test/helpers/pool.ts).
 * Real daemon, workers, SQLite and (for the rabbitmq bus) RabbitMQ.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { ProcessClient } from '../../src/api/processes.js';
import { killProcesses, pauseProcesses, playProcesses, waitForProcesses } from '../../src/api/control.js';
import { stateOrder } from '../../src/api/watch.js';
import type { StateBroadcast } from '../../src/protocol/index.js';
import { portOpen, requireService, runCliAsync, spawnCli, tempDir, cleanupTempDirs } from '../helpers/env.js';
import { makeProfile, waitUntil, type TestProfile } from '../helpers/profile.js';
import { BUSES, startPool, type Pool } from '../helpers/pool.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The state letter of an OS process in /proc/<pid>/stat (`T`: stopped), or `X` when it is gone. */
function procState(pid: number): string {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] ?? '';
  } catch {
    return 'X';
  }
}

/** Pids of live OS processes whose command line contains `needle`. */
function osProcessesMatching(needle: string): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ');
      if (cmd.includes(needle) && !['X', 'Z'].includes(procState(Number(entry)))) pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

/** Waits until exactly one OS process matches `needle`; returns its pid. */
async function oneProcess(needle: string): Promise<number> {
  return waitUntil(
    () => {
      const pids = osProcessesMatching(needle);
      return pids.length === 1 ? pids[0]! : 0;
    },
    20_000,
    `one OS process running '${needle}'`,
  );
}

const readCounter = (file: string): number => Number(fs.readFileSync(file, 'utf8').trim() || '0');

let unique = 0;
/** A sleep duration of about `seconds` that no other test's command line contains. */
const markedSeconds = (seconds: number): string => `${seconds}.0${process.pid}${unique++}`;

for (const bus of BUSES) {
  describe(`pause and play of running commands, process watch (issue 13; ${bus} bus)`, function () {
    this.timeout(180_000);
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

    // The kernel's timer of a `sleep` keeps running while the process is stopped (a nanosleep
    // continued by SIGCONT ends at its original deadline): a paused `sleep 5` cannot end while
    // stopped, but once played after its 5 s it ends at once. Work that stops with its process
    // (the counter loop below) takes its time plus the time paused.
    it('pauses a running core.shell sleep 5: done, stopped (T), not finished while paused, ends when played', async () => {
      pool = await startPool(tp, 1);
      const seconds = markedSeconds(5);
      const id = await client.submit('core.shell', { command: ['sleep', seconds] });
      const pid = await oneProcess(`sleep ${seconds}`);
      const seen = Date.now(); // the command started before this
      await sleep(1000);
      const [r] = await pauseProcesses(client, [id]);
      const pausedFrom = Date.now();
      assert.deepEqual([r!.outcome, r!.state, r!.paused], ['done', 'running', true]);
      assert.equal(procState(pid), 'T', 'the OS process is stopped once pause replied done');
      // Past the end of the sleep: had the pause not stopped it, it would have finished by now.
      await sleep(seen + Number(seconds) * 1000 + 1000 - Date.now());
      assert.equal(procState(pid), 'T', 'still stopped');
      const during = await client.getProcess(id);
      assert.deepEqual([during.state, during.paused], ['running', true], 'it has not finished while paused');
      assert.notEqual(during.leaseOwner, null, 'a stopped command keeps its worker');
      const pausedMs = Date.now() - pausedFrom;
      const [played] = await playProcesses(client, [id]);
      assert.deepEqual([played!.outcome, played!.paused], ['done', false]);
      const [p] = await waitForProcesses(client, [id], { timeoutSeconds: 30 });
      assert.equal(p!.state, 'finished', p!.exception ?? '');
      assert.equal(p!.exitStatus, 0);
      assert.equal(p!.runs, 1, 'continued in place, not run again');
      const total = p!.mtime - seen;
      assert.ok(total >= 1000 + pausedMs - 300, `took ${total} ms: 1 s running and ${pausedMs} ms paused`);
      await waitUntil(() => osProcessesMatching(`sleep ${seconds}`).length === 0, 5_000, 'the sleep to be gone');
    });

    it('a command counting every 0.2 s makes no progress while paused and takes its 5 s plus the pause', async () => {
      pool = await startPool(tp, 1);
      const file = path.join(dir, `counter-${bus}`);
      const script = 'i=0; while [ $i -lt 25 ]; do i=$((i+1)); echo $i > "$1"; sleep 0.2; done';
      const id = await client.submit('core.shell', { command: ['sh', '-c', script, 'counter', file] });
      await waitUntil(() => fs.existsSync(file), 20_000, 'the counter to start');
      const started = Date.now(); // its first write was before this
      await waitUntil(() => readCounter(file) >= 5, 20_000, 'the counter to reach 5');
      const [r] = await pauseProcesses(client, [id]);
      assert.equal(r!.outcome, 'done');
      const pausedFrom = Date.now();
      const atPause = readCounter(file);
      await sleep(2000);
      assert.equal(readCounter(file), atPause, 'no progress while paused');
      assert.ok(atPause < 25, `paused before the end (counter ${atPause})`);
      const pausedMs = Date.now() - pausedFrom;
      await playProcesses(client, [id]);
      await waitUntil(() => readCounter(file) > atPause, 5_000, 'the counter to go on after play');
      const [p] = await waitForProcesses(client, [id], { timeoutSeconds: 30 });
      assert.deepEqual([p!.state, p!.exitStatus], ['finished', 0]);
      assert.equal(readCounter(file), 25);
      // 24 sleeps of 0.2 s after the first write; a sleep stopped part-way loses at most its 0.2 s.
      const total = p!.mtime - started;
      assert.ok(total >= 24 * 200 + pausedMs - 200 - 300, `took ${total} ms: 4.8 s of work and ${pausedMs} ms paused`);
    });

    it('kills a paused command: killed, and its OS process is gone', async () => {
      pool = await startPool(tp, 1);
      const seconds = markedSeconds(60);
      const id = await client.submit('core.shell', { command: ['sleep', seconds] });
      const pid = await oneProcess(`sleep ${seconds}`);
      assert.equal((await pauseProcesses(client, [id]))[0]!.outcome, 'done');
      assert.equal(procState(pid), 'T');
      const [k] = await killProcesses(client, [id]);
      assert.deepEqual([k!.outcome, k!.state], ['done', 'killed']);
      await waitUntil(() => procState(pid) === 'X', 5_000, 'the stopped sleep to be gone');
    });

    it('a stopped command dies with its worker; the process stays paused', async () => {
      pool = await startPool(tp, 1);
      const seconds = markedSeconds(60);
      const id = await client.submit('core.shell', { command: ['sleep', seconds] });
      const pid = await oneProcess(`sleep ${seconds}`);
      assert.equal((await pauseProcesses(client, [id]))[0]!.outcome, 'done');
      assert.equal(procState(pid), 'T');
      const victim = (await pool.workers())[0]!;
      await pool.killWorker(victim);
      await waitUntil(() => procState(pid) === 'X', 10_000, 'the stopped sleep to be killed with its worker');
      // Its lease is released (local: by the daemon) or expires (rabbitmq); it is not run again while paused.
      await waitUntil(
        async () => {
          const p = await client.getProcess(id);
          return p.leaseOwner === null || (p.leaseExpiresAt ?? 0) < Date.now();
        },
        15_000,
        'the dead worker to hold no live lease',
      );
      await sleep(500);
      const p = await client.getProcess(id);
      assert.deepEqual([p.state, p.paused, p.runs], ['running', true, 1]);
      assert.deepEqual(osProcessesMatching(`sleep ${seconds}`), [], 'not started again while paused');
      const [k] = await killProcesses(client, [id]);
      assert.deepEqual([k!.outcome, k!.state], ['done', 'killed']);
    });

    it('pause of a workflow in a long step replies pausing (CLI exit 0); it pauses at the step boundary', async () => {
      pool = await startPool(tp, 1);
      const file = path.join(dir, `long-steps-${bus}`);
      const id = await client.submit('test.append_steps', { file, steps: 3, delayMs: 3000 });
      await waitUntil(async () => (await client.getProcess(id)).leaseOwner !== null, 20_000, 'the workflow to run');
      const [r] = await pauseProcesses(client, [id]);
      assert.deepEqual([r!.outcome, r!.state, r!.paused], ['pausing', 'running', true]);
      // The step under way finishes, then it pauses: lease released, no further step.
      await waitUntil(
        async () => (await client.getProcess(id)).leaseOwner === null,
        10_000,
        'the pause to take effect',
      );
      const journaled = (await client.store.getJournal(id)).length;
      assert.equal(journaled, 1, 'paused after the step under way');
      await sleep(1000);
      assert.equal((await client.store.getJournal(id)).length, journaled, 'no progress while paused');
      assert.equal((await playProcesses(client, [id]))[0]!.outcome, 'done');
      // The CLI: a second workflow, paused in its long step, prints pausing and exits 0.
      // (Its step is long: the CLI may take a few seconds to start on a busy machine.)
      const other = await client.submit('test.append_steps', { file: `${file}-2`, steps: 2, delayMs: 6000 });
      await waitUntil(async () => (await client.getProcess(other)).leaseOwner !== null, 20_000, 'it to run');
      const cli = await runCliAsync(['process', 'pause', String(other)], tp.env);
      assert.equal(cli.status, 0, cli.stdout + cli.stderr);
      assert.match(cli.stdout, new RegExp(`^\\s*${other}\\s+pausing\\s+running \\(paused\\)`, 'm'), cli.stdout);
      await waitUntil(async () => (await client.getProcess(other)).leaseOwner === null, 15_000, 'it to pause');
      assert.equal((await killProcesses(client, [other]))[0]!.state, 'killed');
      const [p] = await waitForProcesses(client, [id], { timeoutSeconds: 30 });
      assert.equal(p!.state, 'finished', p!.exception ?? '');
      assert.deepEqual(fs.readFileSync(file, 'utf8').trim().split('\n'), ['step-0', 'step-1', 'step-2']);
    });

    it('process watch --json without ids: the active processes first, then changes, a CLI pause and play too', async () => {
      pool = await startPool(tp, 1);
      const stopFile = path.join(dir, `stop-all-${bus}`);
      const id = await client.submit('test.steps_until', { stopFile, delayMs: 50 });
      await waitUntil(async () => (await client.getProcess(id)).leaseOwner !== null, 20_000, 'the workflow to run');
      const active = (await client.listProcesses({ states: ['created', 'running', 'waiting'] })).map((p) => p.id);
      const watch = spawnCli(['process', 'watch', '--json', '--timeout', '60'], tp.env);
      let out = '';
      let err = '';
      watch.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      watch.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      const exited = new Promise<number | null>((resolve) => watch.on('exit', (code) => resolve(code)));
      const lines = (): StateBroadcast[] =>
        out
          .split('\n')
          .filter((l) => l.trim() !== '')
          .map((l) => JSON.parse(l) as StateBroadcast);
      try {
        await waitUntil(() => err.includes('Watching'), 20_000, 'watch to subscribe');
        const current = lines().slice(0, active.length);
        assert.deepEqual(
          current.map((m) => m.processId).sort((a, b) => a - b),
          [...active].sort((a, b) => a - b),
          `the active processes first: ${out}`,
        );
        assert.deepEqual(
          current.filter((m) => m.processId === id).map((m) => [m.state, m.paused]),
          [['running', false]],
        );
        const paused = await runCliAsync(['process', 'pause', String(id)], tp.env);
        assert.equal(paused.status, 0, paused.stdout + paused.stderr);
        const ofId = (): StateBroadcast[] => lines().filter((m) => m.processId === id);
        await waitUntil(() => ofId().some((m) => m.paused), 10_000, `watch to show the CLI pause: ${out}`);
        await waitUntil(async () => (await client.getProcess(id)).leaseOwner === null, 10_000, 'the pause');
        const played = await runCliAsync(['process', 'play', String(id)], tp.env);
        assert.equal(played.status, 0, played.stdout + played.stderr);
        const pauseAt = ofId().findIndex((m) => m.paused);
        await waitUntil(
          () => ofId().some((m, k) => k > pauseAt && !m.paused),
          10_000,
          `watch to show the CLI play: ${out}`,
        );
        fs.writeFileSync(stopFile, '');
        await waitUntil(() => ofId().some((m) => m.state === 'finished'), 20_000, `watch to show the end: ${out}`);
        const child = lines().filter((m) => m.parentId === id);
        assert.deepEqual(
          [child[0]?.state, child.at(-1)?.state],
          ['created', 'finished'],
          `a child created after the watch started is followed: ${out}`,
        );
      } finally {
        watch.kill('SIGINT');
        await exited;
      }
    });

    it('process watch --json ID: the current state first, then pause and play, each process in order (20 times)', async () => {
      pool = await startPool(tp, 1);
      const one = async (i: number): Promise<void> => {
        const stopFile = path.join(dir, `stop-${bus}-${i}`);
        const id = await client.submit('test.steps_until', { stopFile, delayMs: 50 });
        await waitUntil(async () => (await client.getProcess(id)).leaseOwner !== null, 20_000, `workflow ${i} to run`);
        const watch = spawnCli(['process', 'watch', '--json', String(id), '--timeout', '60'], tp.env);
        let out = '';
        let err = '';
        watch.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        watch.stderr!.on('data', (d: Buffer) => (err += d.toString()));
        const exited = new Promise<number | null>((resolve) => watch.on('exit', (code) => resolve(code)));
        const lines = (): StateBroadcast[] =>
          out
            .split('\n')
            .filter((l) => l.trim() !== '')
            .map((l) => JSON.parse(l) as StateBroadcast);
        const ofRoot = (): StateBroadcast[] => lines().filter((m) => m.processId === id);
        try {
          await waitUntil(() => lines().length > 0, 20_000, `watch ${i} to print`);
          const first = lines()[0]!;
          assert.deepEqual(
            [first.processId, first.state, first.paused, first.runs],
            [id, 'running', false, 1],
            `watch ${i}: the first line is the current state: ${out}`,
          );
          // A late broadcast, as one from another sender can be on RabbitMQ: older than what was printed.
          const bus = (await client.bus())!;
          const stale = (m: Partial<StateBroadcast>): void =>
            bus.publishState({ ...first, time: Date.now(), ...m, v: 1, kind: 'state', processId: id });
          stale({ state: 'created', runs: 0 });
          const [paused] = await pauseProcesses(client, [id]);
          assert.ok(['done', 'pausing'].includes(paused!.outcome), paused!.outcome);
          await waitUntil(() => ofRoot().some((m) => m.paused), 10_000, `watch ${i} to show the pause`);
          await waitUntil(async () => (await client.getProcess(id)).leaseOwner === null, 10_000, 'the pause');
          assert.equal((await playProcesses(client, [id]))[0]!.outcome, 'done');
          await waitUntil(
            () =>
              ofRoot().some(
                (m, k) =>
                  !m.paused &&
                  ofRoot()
                    .slice(0, k)
                    .some((e) => e.paused),
              ),
            10_000,
            `watch ${i} to show the play`,
          );
          // A worker's late word about the pause that the play undid: the store's flag says otherwise.
          const now = await client.getProcess(id);
          stale({ state: now.state, runs: now.runs, paused: true, control: 'pausing' });
          await sleep(300);
          fs.writeFileSync(stopFile, '');
          const code = await exited;
          assert.equal(code, 0, `watch ${i} exits 0 when the process ended: ${err}`);
        } finally {
          if (watch.exitCode === null && watch.signalCode === null) {
            watch.kill('SIGINT');
            await exited;
          }
        }
        const all = lines();
        const root = all.filter((m) => m.processId === id);
        const children = [...new Set(all.map((m) => m.processId).filter((p) => p !== id))];
        assert.equal(children.length, 1, `watch ${i} follows the child: ${out}`);
        const child = all.filter((m) => m.processId === children[0]);
        assert.equal(root.at(-1)!.state, 'finished', `watch ${i}: ${out}`);
        assert.deepEqual(
          [child[0]!.state, child.at(-1)!.state],
          ['created', 'finished'],
          `watch ${i}: the child's lines start with created: ${out}`,
        );
        const pauseAt = root.findIndex((m) => m.paused);
        assert.ok(pauseAt > 0, `watch ${i} shows the pause after the current state`);
        assert.ok(!root.some((m) => m.state === 'created'), `watch ${i} printed a late 'created': ${out}`);
        const playAt = root.findIndex((m, k) => k > pauseAt && !m.paused);
        assert.ok(!root.slice(playAt).some((m) => m.paused), `watch ${i} printed a late pause: ${out}`);
        assert.ok(
          root.slice(pauseAt).some((m) => !m.paused && m.state === 'running'),
          `watch ${i} shows the play`,
        );
        for (const events of [root, child]) {
          for (let k = 1; k < events.length; k++) {
            const [a, b] = [events[k - 1]!, events[k]!];
            const [oa, ob] = [stateOrder(a)!, stateOrder(b)!];
            assert.ok(ob >= oa, `watch ${i}: process ${b.processId}: ${b.state} after ${a.state}: ${out}`);
            assert.ok(ob > oa || a.paused !== b.paused, `watch ${i}: a repeated line for ${b.processId}: ${out}`);
          }
        }
      };
      const t0 = Date.now();
      const CONCURRENT = 4;
      for (let i = 0; i < 20; i += CONCURRENT) {
        await Promise.all(Array.from({ length: CONCURRENT }, (_, k) => one(i + k)));
      }
      console.log(`      20 watches in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    });
  });
}
