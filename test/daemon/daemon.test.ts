/**
 * Issue 4: the daemon supervises real workers (dist/src/worker/main.js) against real RabbitMQ
 * and SQLite, and DaemonClient controls it. Every test starts its own daemon in the test file's
 * DROVER_HOME and checks the OS process table afterwards: nothing of the profile may be left.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import type { ProcessClient } from '../../src/api/processes.js';
import type { DaemonClient } from '../../src/client/index.js';
import { DaemonException, DaemonNotRunningException, DaemonTimeoutException } from '../../src/errors/index.js';
import type { ProcessState, WorkerInfo } from '../../src/protocol/index.js';
import { cleanupTempDirs, portOpen, requireService, runCli, tempDir } from '../helpers/env.js';
import { countRuns, makeProfile, waitUntil, type TestProfile } from '../helpers/profile.js';
import { BUSES } from '../helpers/pool.js';
import {
  clientFor,
  daemonsOfHome,
  ownPid,
  pidAlive,
  processesOfHome,
  stopAndCheckLeaks,
  workersOfHome,
} from './helpers.js';

const mode = (file: string): number => fs.statSync(file).mode & 0o777;

/** The start and end lines `test.span` processes wrote. */
function readSpans(file: string): Array<{ id: number; event: 'start' | 'end'; pid: number; t: number }> {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as { id: number; event: 'start' | 'end'; pid: number; t: number });
}

for (const bus of BUSES) {
  describe(`the daemon and its client (issues 4, 10; ${bus} bus)`, function () {
    this.timeout(120_000);
    let tp: TestProfile;
    let processes: ProcessClient;
    let client: DaemonClient | null = null;
    let dir: string;

    before(async function () {
      if (bus === 'rabbitmq') requireService(this, await portOpen(5672), 'RabbitMQ on 127.0.0.1:5672');
      tp = await makeProfile({ name: 'daemon-test', bus });
      processes = await tp.openClient();
      dir = tempDir();
    });

    afterEach(async () => {
      await stopAndCheckLeaks(client, tp.home);
      client = null;
    });

    after(async () => {
      await processes?.close();
      await tp?.cleanup();
      cleanupTempDirs();
    });

    async function waitStates(ids: number[], states: ProcessState[], timeoutMs: number, what: string): Promise<void> {
      await waitUntil(
        async () => {
          const all = await processes.listProcesses({ states });
          const have = new Set(all.map((p) => p.id));
          return ids.every((id) => have.has(id));
        },
        timeoutMs,
        what,
        100,
      );
    }

    async function readyWorkers(c: DaemonClient, n: number): Promise<WorkerInfo[]> {
      return waitUntil<WorkerInfo[] | null>(
        async () => {
          const ws = await c.getWorkerInfo();
          return ws.length === n && ws.every((w) => w.state === 'ready') ? ws : null;
        },
        30_000,
        `${n} ready workers`,
        100,
      ) as Promise<WorkerInfo[]>;
    }

    it('1, 8: runs 200 processes on 2 workers, keeps its files private, and stop leaves no process behind', async () => {
      client = clientFor(tp);
      assert.equal(client.isDaemonRunning, false);
      await client.startDaemon({ numberWorkers: 2 });
      assert.equal(client.isDaemonRunning, true);
      assert.equal(await client.getNumberOfWorkers(), 2);
      const info = await client.getDaemonInfo();
      assert.equal(info.pid, client.daemonPid);
      assert.equal(info.profile, 'daemon-test');
      assert.equal(info.supervisor, 'self');

      // 8: only the owner gets in.
      assert.equal(mode(info.runtimeDir), 0o700, 'runtime dir');
      assert.equal(mode(info.socket), 0o600, 'socket');
      assert.ok(fs.statSync(info.socket).isSocket());
      assert.equal(mode(info.pidFile), 0o600, 'PID file');
      assert.equal(mode(info.lockFile), 0o600, 'lock file');
      assert.equal(mode(path.dirname(info.logFile)), 0o700, 'log dir');
      assert.equal(mode(info.logFile), 0o600, 'log file');

      await readyWorkers(client, 2);
      const runs = path.join(dir, 'runs-200');
      const ids = await processes.submitMany(
        'test.record_add',
        Array.from({ length: 200 }, (_, i) => ({ x: i, y: 1, file: runs })),
      );
      await waitStates(ids, ['finished'], 60_000, '200 processes to finish');
      const counts = countRuns(runs);
      for (const id of ids) assert.equal(counts.get(id), 1, `process ${id} ran ${counts.get(id)} times`);
      const ws = await client.getWorkerInfo();
      assert.equal(ws.length, 2);
      for (const w of ws) {
        assert.equal(w.state, 'ready');
        assert.ok(w.pid !== null && pidAlive(w.pid));
        assert.ok(w.memoryRss !== null && w.memoryRss > 1024 * 1024, `worker ${w.id} memory ${w.memoryRss}`);
        assert.equal(w.restarts, 0);
      }
      assert.equal(workersOfHome(tp.home).length, 2);
      assert.equal(daemonsOfHome(tp.home).length, 1);

      await client.stopDaemon({ wait: true });
      assert.deepEqual(processesOfHome(tp.home), [], 'no daemon or worker of the profile is left');
      assert.equal(client.isDaemonRunning, false);
      assert.equal(fs.existsSync(info.socket), false, 'socket removed');
      assert.equal(fs.existsSync(info.pidFile), false, 'PID file removed');
      await assert.rejects(client.getStatus(), DaemonNotRunningException);
    });

    it('2: revives a SIGKILLed worker within 1 s and its processes finish elsewhere without waiting for the lease', async () => {
      tp.setOption('daemon.lease_seconds', 300);
      try {
        client = clientFor(tp);
        await client.startDaemon({ numberWorkers: 2 });
        await readyWorkers(client, 2);
        const runs = path.join(dir, 'runs-kill-worker');
        const ids = await processes.submitMany(
          'test.record_sleep',
          Array.from({ length: 10 }, () => ({ seconds: 4, file: runs })),
        );
        // Wait until every process is claimed, then pick the worker holding the most.
        const owners = await waitUntil(
          async () => {
            const ps = (await processes.listProcesses({ states: ['running'] })).filter((p) => ids.includes(p.id));
            return ps.length === ids.length && ps.every((p) => p.leaseOwner !== null) ? ps : null;
          },
          30_000,
          'all 10 processes to be claimed',
          100,
        );
        // Claimed is not yet started: wait for every run to begin, so the start counts below are exact.
        await waitUntil(() => countRuns(runs).size === ids.length, 10_000, 'all 10 runs to start');
        const byOwner = new Map<string, number[]>();
        for (const p of owners!) byOwner.set(p.leaseOwner!, [...(byOwner.get(p.leaseOwner!) ?? []), p.id]);
        const [victimId, victimProcs] = [...byOwner.entries()].sort((a, b) => b[1].length - a[1].length)[0]!;
        const victim = (await client.getWorkerInfo()).find((w) => w.workerId === victimId)!;
        assert.ok(victim && victim.pid !== null, 'the lease owner is one of the daemon workers');

        process.kill(ownPid(tp.home, victim.pid), 'SIGKILL');
        const revived = await waitUntil(
          async () => {
            const w = (await client!.getWorkerInfo()).find((x) => x.id === victim.id);
            return w && w.pid !== null && w.pid !== victim.pid && pidAlive(w.pid) ? w : null;
          },
          1000,
          'a new worker in the slot of the killed one',
          20,
        );
        assert.equal(revived!.restarts, 1);
        assert.equal(revived!.lastExit?.signal, 'SIGKILL');

        // Lease 300 s: only the daemon's release can explain a finish within seconds.
        await waitStates(ids, ['finished'], 30_000, 'all processes to finish');
        const counts = countRuns(runs);
        const all = await Promise.all(ids.map((id) => processes.getProcess(id)));
        for (const p of all) {
          const expected = victimProcs.includes(p.id) ? 2 : 1;
          assert.equal(counts.get(p.id), expected, `process ${p.id} started ${counts.get(p.id)} times`);
          assert.equal(p.runs, expected);
          assert.notEqual(p.workerId, victimId);
        }
      } finally {
        tp.setOption('daemon.lease_seconds', 30);
      }
    });

    it('4: after a SIGKILL of the daemon its workers exit by themselves and a new start needs no clean-up', async () => {
      client = clientFor(tp);
      await client.startDaemon({ numberWorkers: 2 });
      const workers = await readyWorkers(client, 2);
      const pid = ownPid(tp.home, client.daemonPid);
      const info = await client.getDaemonInfo();
      process.kill(pid, 'SIGKILL');
      await waitUntil(() => !pidAlive(pid), 5000, 'the daemon to die');
      assert.equal(client.isDaemonRunning, false);
      await waitUntil(
        () => workers.every((w) => !pidAlive(w.pid!)),
        10_000,
        'the orphaned workers to exit by themselves',
      );
      // Its socket and PID file are stale now; they must not block the next start.
      assert.ok(fs.existsSync(info.socket) && fs.existsSync(info.pidFile));
      await assert.rejects(client.getStatus(), DaemonNotRunningException);
      await client.startDaemon({ numberWorkers: 1 });
      assert.equal(client.isDaemonRunning, true);
      assert.notEqual(client.daemonPid, pid);
      assert.equal((await client.getStatus()).numberOfWorkers, 1);
      await client.stopDaemon();

      // PID reuse: the PID file names a live process that is not the daemon.
      const unrelated = spawn('sleep', ['30'], { stdio: 'ignore' });
      try {
        fs.writeFileSync(
          info.pidFile,
          JSON.stringify({ v: 1, pid: unrelated.pid, start: '1', profile: 'daemon-test', startedAt: Date.now() }),
          { mode: 0o600 },
        );
        assert.equal(client.isDaemonRunning, false, 'a live process with another start time is not the daemon');
        await client.startDaemon({ numberWorkers: 1 });
        assert.equal(client.isDaemonRunning, true);
        assert.notEqual(client.daemonPid, unrelated.pid);
        await client.stopDaemon();
        assert.ok(pidAlive(unrelated.pid!), 'the unrelated process was left alone');
      } finally {
        unrelated.kill('SIGKILL');
      }
    });

    it('4: when the daemon and its worker die together, the next daemon releases what the worker held', async () => {
      tp.setOption('daemon.lease_seconds', 300);
      try {
        client = clientFor(tp);
        await client.startDaemon({ numberWorkers: 1 });
        const [worker] = await readyWorkers(client, 1);
        const runs = path.join(dir, 'runs-both-die');
        const [id] = await processes.submitMany('test.record_sleep', [{ seconds: 1, file: runs }]);
        await waitStates([id!], ['running'], 30_000, 'the process to run');
        // Claimed is not yet started: wait for the run itself to begin, so the count below is exact.
        await waitUntil(() => countRuns(runs).get(id!) === 1, 10_000, 'the run to start');
        // The worker cannot release anything itself: stopped first, killed after its daemon.
        const daemonPid = ownPid(tp.home, client.daemonPid);
        const workerPid = ownPid(tp.home, worker!.pid);
        // Checked again at each signal: still a live process of this home (a stopped one is).
        process.kill(ownPid(tp.home, workerPid), 'SIGSTOP');
        process.kill(ownPid(tp.home, daemonPid), 'SIGKILL');
        process.kill(ownPid(tp.home, workerPid), 'SIGKILL');
        // By pid, not only by environment: a process tearing down its memory has no readable
        // environ yet still exists, and the next start rightly calls its daemon running.
        await waitUntil(
          () => processesOfHome(tp.home).length === 0 && !pidAlive(daemonPid) && !pidAlive(workerPid),
          5000,
          'both to be gone',
        );
        const held = await processes.getProcess(id!);
        assert.equal(held.state, 'running');
        assert.equal(held.leaseOwner, worker!.workerId, 'still leased (for 300 s) by the dead worker');

        await client.startDaemon({ numberWorkers: 1 });
        // Lease 300 s: only the new daemon's release (from the dead daemon's workers file) explains this.
        await waitStates([id!], ['finished'], 30_000, 'the process to finish under the new daemon');
        assert.equal(countRuns(runs).get(id!), 2);
        await client.stopDaemon();
      } finally {
        tp.setOption('daemon.lease_seconds', 30);
      }
    });

    it('4: SIGKILL of the daemon mid-run, then a new start: every process finishes, none ran in two workers at once', async () => {
      client = clientFor(tp);
      await client.startDaemon({ numberWorkers: 2 });
      await readyWorkers(client, 2);
      const spans = path.join(dir, 'spans-daemon-kill');
      const ids = await processes.submitMany(
        'test.span',
        Array.from({ length: 60 }, () => ({ ms: 700, file: spans })),
      );
      await waitUntil(() => readSpans(spans).length >= 20, 30_000, 'processes to be running');
      const orphans = (await client.getWorkerInfo()).map((w) => w.pid!);
      const pid = ownPid(tp.home, client.daemonPid);
      process.kill(pid, 'SIGKILL');
      await waitUntil(() => !pidAlive(pid), 5000, 'the daemon to die');
      await client.startDaemon({ numberWorkers: 2 });
      await waitStates(ids, ['finished'], 60_000, 'every process to finish under the new daemon');
      for (const id of ids) {
        const p = await processes.getProcess(id);
        assert.equal(p.state, 'finished', `process ${id}`);
        assert.equal(p.leaseOwner, null);
      }
      // No two runs of one process overlapped: each started only after the previous run had ended
      // (or was cut off with its worker).
      const byId = new Map<number, Array<{ start: number; end: number | null; pid: number }>>();
      for (const e of readSpans(spans)) {
        let runs = byId.get(e.id);
        if (!runs) byId.set(e.id, (runs = []));
        if (e.event === 'start') runs.push({ start: e.t, end: null, pid: e.pid });
        else {
          const r = runs.find((x) => x.pid === e.pid && x.end === null);
          if (r) r.end = e.t;
        }
      }
      for (const [id, runs] of byId) {
        runs.sort((a, b) => a.start - b.start);
        for (let i = 1; i < runs.length; i++) {
          const prev = runs[i - 1]!;
          // A run cut off by the kill has no end; its worker was gone (or going) when the next began.
          if (prev.end !== null)
            assert.ok(prev.end <= runs[i]!.start, `process ${id}: runs overlap ${JSON.stringify(runs)}`);
          else assert.ok(!pidAlive(prev.pid), `process ${id}: the worker of an unfinished run is still alive`);
        }
        assert.ok(
          runs.some((r) => r.end !== null),
          `process ${id} never completed a run`,
        );
      }
      // The killed daemon's workers drain what they run and exit by themselves (not leaked).
      await waitUntil(() => orphans.every((p) => !pidAlive(p)), 30_000, "the killed daemon's workers to exit");
      await client.stopDaemon();
    });

    it('accepts submits with no daemon running; a daemon started later runs them all', async () => {
      client = clientFor(tp);
      assert.equal(client.isDaemonRunning, false);
      const runs = path.join(dir, 'runs-no-daemon');
      const cli = runCli(
        ['process', 'submit', 'test.record_add', '--inputs', JSON.stringify({ x: 1, y: 2, file: runs }), '--json'],
        tp.env,
      );
      assert.equal(cli.status, 0, cli.stderr);
      const first = (JSON.parse(cli.stdout) as { id: number }).id;
      const more = await processes.submitMany(
        'test.record_add',
        Array.from({ length: 49 }, (_, i) => ({ x: i, y: 1, file: runs })),
      );
      const ids = [first, ...more];
      await new Promise((r) => setTimeout(r, 500));
      for (const id of ids) assert.equal((await processes.getProcess(id)).state, 'created', 'nothing runs them yet');
      await client.startDaemon({ numberWorkers: 1 });
      await waitStates(ids, ['finished'], 30_000, 'the daemon to run what was submitted before it started');
      const counts = countRuns(runs);
      for (const id of ids) assert.equal(counts.get(id), 1, `process ${id} ran ${counts.get(id)} times`);
      await client.stopDaemon();
    });

    it('5: two concurrent starts give one daemon; no daemon fails at once; a stopped daemon times out', async () => {
      tp.setOption('daemon.timeout', 10);
      try {
        client = clientFor(tp);
        const other = clientFor(tp);
        const results = await Promise.allSettled([
          client.startDaemon({ numberWorkers: 1 }),
          other.startDaemon({ numberWorkers: 1 }),
        ]);
        const ok = results.filter((r) => r.status === 'fulfilled');
        const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
        assert.equal(ok.length, 1, `exactly one start succeeds: ${JSON.stringify(results)}`);
        assert.ok(failed[0]!.reason instanceof DaemonException);
        assert.match((failed[0]!.reason as Error).message, /already running/);
        await waitUntil(() => daemonsOfHome(tp.home).length === 1, 5000, 'the losing daemon to exit');
        assert.equal(daemonsOfHome(tp.home)[0]!.pid, client.daemonPid);
        // A second start while it runs is refused without spawning anything.
        await assert.rejects(client.startDaemon(), /already running \(pid \d+\)/);

        // SIGSTOP: it accepts connections (the kernel does) but does not answer.
        const pid = ownPid(tp.home, client.daemonPid);
        process.kill(pid, 'SIGSTOP');
        try {
          const t0 = Date.now();
          await assert.rejects(client.getStatus({ timeout: 1 }), DaemonTimeoutException);
          assert.ok(Date.now() - t0 >= 900, 'the timeout was waited for');
        } finally {
          process.kill(pid, 'SIGCONT');
        }
        assert.equal((await client.getStatus()).pid, pid, 'it answers again once continued');
        await client.stopDaemon();

        // Not running: fails at once, not after daemon.timeout (10 s here).
        const t0 = Date.now();
        await assert.rejects(client.getStatus(), DaemonNotRunningException);
        await assert.rejects(client.increaseWorkers(1), DaemonNotRunningException);
        await assert.rejects(client.stopDaemon(), DaemonNotRunningException);
        assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
      } finally {
        tp.setOption('daemon.timeout', 2);
      }
    });

    it('6: incr 2 then decr 3 with processes running: counts follow, nothing is killed or lost', async () => {
      client = clientFor(tp);
      await client.startDaemon({ numberWorkers: 2 });
      await readyWorkers(client, 2);
      const runs = path.join(dir, 'runs-incr-decr');
      const ids = await processes.submitMany(
        'test.record_sleep',
        Array.from({ length: 12 }, () => ({ seconds: 3, file: runs })),
      );
      await waitStates(ids, ['running'], 30_000, 'the processes to run');
      // Status counts them, from the workers' own reports.
      await waitUntil(
        async () => (await client!.getStatus()).runningProcesses === 12,
        5000,
        'status to count 12 running',
      );
      const slots = (await client.getWorkerInfo()).map((w) => w.slots);
      assert.deepEqual(slots, [200, 200]);
      assert.equal(await client.increaseWorkers(2), 4);
      assert.equal(await client.getNumberOfWorkers(), 4);
      assert.equal(await client.decreaseWorkers(3), 1);
      assert.equal(await client.getNumberOfWorkers(), 1);
      const ws = await client.getWorkerInfo();
      assert.equal(ws.filter((w) => w.state !== 'draining').length, 1);
      assert.equal(ws[0]!.id, 'w1', 'the most recently added workers are removed first');
      await assert.rejects(client.decreaseWorkers(2), /cannot remove 2 workers: the daemon has 1 \(PARAMS_INVALID\)/);

      await waitStates(ids, ['finished'], 60_000, 'all processes to finish');
      for (const id of ids) {
        const p = await processes.getProcess(id);
        assert.equal(p.state, 'finished');
        assert.equal(p.exitStatus, 0);
      }
      const counts = countRuns(runs);
      for (const id of ids) assert.equal(counts.get(id), 1, `process ${id} started ${counts.get(id)} times`);
      await waitUntil(() => workersOfHome(tp.home).length === 1, 30_000, 'the removed workers to exit');
      // The daemon forgets a drained worker once it has reaped it (just after it left the process table).
      await waitUntil(async () => (await client!.getWorkerInfo()).length === 1, 5000, 'status to drop the drained');
      await client.stopDaemon();
    });
  });
}
