/**
 * Workers that die with their daemon, outlive it, or die under running shell commands (issue 9,
 * must-show 2), on both message buses, with a real daemon and real workers:
 * - the daemon and its workers SIGKILLed together (the workers stopped first, so they release
 *   nothing themselves), its workers file emptied, then a new daemon: no lease of a dead worker is
 *   left in the store (counted), and every process finishes with no two runs overlapping;
 * - the daemon SIGKILLed alone: its orphaned workers drain (their log lines go to the daemon's log
 *   file, since their stdout pipe is dead), release every lease and exit before any new daemon;
 * - a worker SIGKILLed while it runs `core.shell` commands: each command holds a kernel lock
 *   (`flock`) for its whole run, in its process group, and logs start and end with its pid; a run
 *   of the same command while an earlier one still lives finds the lock held and says so. None
 *   does, and the killed worker's commands are gone.
 * And the same for a worker without a daemon (RabbitMQ, `drover daemon worker`): its commands die
 * with it, by its keeper, before its lease expires and the command runs elsewhere.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import type { ProcessClient } from '../../src/api/processes.js';
import type { DaemonClient } from '../../src/client/index.js';
import type { ProcessRecord, WorkerInfo } from '../../src/protocol/index.js';
import { DAEMON_WORKERS_FILE } from '../../src/protocol/index.js';
import { cleanupTempDirs, portOpen, requireService, tempDir } from '../helpers/env.js';
import { makeProfile, startWorker, stopWorkers, waitUntil, type TestProfile } from '../helpers/profile.js';
import { BUSES } from '../helpers/pool.js';
import { clientFor, ownPid, pidAlive, processesOfHome, stopAndCheckLeaks } from '../daemon/helpers.js';

interface Span {
  id: number;
  event: 'start' | 'end';
  pid: number;
  t: number;
}

function readSpans(file: string): Span[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Span);
}

/** Asserts that no two runs of a process overlapped: each began after the previous had ended or its worker died. */
function assertNoOverlap(spans: Span[]): void {
  const byId = new Map<number, Array<{ start: number; end: number | null; pid: number }>>();
  for (const e of spans) {
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
      if (prev.end !== null)
        assert.ok(prev.end <= runs[i]!.start, `process ${id}: runs overlap ${JSON.stringify(runs)}`);
      else assert.ok(!pidAlive(prev.pid), `process ${id}: the worker of an unfinished run is still alive`);
    }
    assert.ok(
      runs.some((r) => r.end !== null),
      `process ${id} never completed a run`,
    );
  }
}

/** The pids of the children of `pid` whose command line mentions `needle` (from /proc). */
function childrenOf(pid: number, needle: string): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(f[1]) !== pid || f[0] === 'Z') continue;
      if (fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(needle)) out.push(Number(e));
    } catch {
      // gone
    }
  }
  return out;
}

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Live processes in any of these process groups. */
function membersOf(pgids: ReadonlySet<number>): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (pgids.has(Number(f[2])) && f[0] !== 'Z') out.push(Number(e));
    } catch {
      // gone
    }
  }
  return out;
}

/**
 * A command that takes a lock on `lock` (inherited by its `sleep`, so held while any part of the
 * command lives), logs `start`/`end` with its pid, or `overlap` when an earlier run still holds it.
 */
function lockedCommand(dir: string, tag: string, seconds: number): string[] {
  const log = path.join(dir, 'commands.log');
  const lock = path.join(dir, `${tag}.lock`);
  return [
    'sh',
    '-c',
    `exec 9>'${lock}'; if flock -n 9; then echo "start ${tag} $$" >> '${log}'; sleep ${seconds}; ` +
      `echo "end ${tag} $$" >> '${log}'; else echo "overlap ${tag} $$" >> '${log}'; fi`,
  ];
}

interface CommandLog {
  starts: Map<string, number[]>;
  ends: Map<string, number>;
  overlaps: string[];
}

function readCommands(dir: string): CommandLog {
  const file = path.join(dir, 'commands.log');
  const log: CommandLog = { starts: new Map(), ends: new Map(), overlaps: [] };
  const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  for (const line of text.split('\n')) {
    const [what, tag, pid] = line.split(' ');
    if (tag === undefined) continue;
    if (what === 'start') log.starts.set(tag, [...(log.starts.get(tag) ?? []), Number(pid)]);
    else if (what === 'end') log.ends.set(tag, (log.ends.get(tag) ?? 0) + 1);
    else if (what === 'overlap') log.overlaps.push(tag);
  }
  return log;
}

function flockAvailable(): boolean {
  try {
    execFileSync('flock', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

for (const bus of BUSES) {
  describe(`dead workers leave no lease and no command behind (issue 9, must-show 2; ${bus} bus)`, function () {
    this.timeout(180_000);
    let tp: TestProfile;
    let processes: ProcessClient;
    let client: DaemonClient | null = null;
    let dir: string;

    before(async function () {
      if (bus === 'rabbitmq') requireService(this, await portOpen(5672), 'RabbitMQ on 127.0.0.1:5672');
      requireService(this, process.platform === 'linux', 'Linux (/proc)');
      tp = await makeProfile({
        name: 'dead-workers',
        bus,
        options: { 'daemon.lease_seconds': 300, 'daemon.worker_process_slots': 10 },
      });
      processes = await tp.openClient();
      dir = tempDir('drover-deadworkers-');
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

    async function readyWorkers(c: DaemonClient, n: number): Promise<WorkerInfo[]> {
      return (await waitUntil(
        async () => {
          const ws = await c.getWorkerInfo();
          return ws.length === n && ws.every((w) => w.state === 'ready') ? ws : null;
        },
        30_000,
        `${n} ready workers`,
        100,
      )) as WorkerInfo[];
    }

    async function all(ids: number[]): Promise<ProcessRecord[]> {
      const want = new Set(ids);
      return (await processes.listProcesses({})).filter((p) => want.has(p.id));
    }

    async function leasedBy(owners: ReadonlySet<string>): Promise<ProcessRecord[]> {
      return (await processes.listProcesses({})).filter((p) => p.leaseOwner !== null && owners.has(p.leaseOwner));
    }

    async function finished(ids: number[], timeoutMs: number): Promise<void> {
      await waitUntil(
        async () => (await all(ids)).every((p) => p.state === 'finished'),
        timeoutMs,
        `${ids.length} processes to finish`,
        100,
      );
    }

    it('daemon and workers SIGKILLed together, workers file emptied: the next daemon leaves no lease of a dead worker', async () => {
      client = clientFor(tp);
      await client.startDaemon({ numberWorkers: 2 });
      const workers = await readyWorkers(client, 2);
      const info = await client.getDaemonInfo();
      const spans = path.join(dir, 'spans-together');
      const ids = await processes.submitMany(
        'test.span',
        Array.from({ length: 40 }, () => ({ ms: 2500, file: spans })),
      );
      const dead = new Set(workers.map((w) => w.workerId!));
      await waitUntil(async () => (await leasedBy(dead)).length === 20, 30_000, 'both workers to hold 10 leases each');
      // Stopped first, so neither can release anything; then all three killed.
      const daemonPid = ownPid(tp.home, client.daemonPid);
      for (const w of workers) process.kill(ownPid(tp.home, w.pid), 'SIGSTOP');
      process.kill(ownPid(tp.home, daemonPid), 'SIGKILL');
      for (const w of workers) process.kill(ownPid(tp.home, w.pid), 'SIGKILL');
      // A process being torn down no longer shows its environment, yet is not gone: look at the pids too.
      await waitUntil(
        () =>
          processesOfHome(tp.home).length === 0 &&
          [daemonPid, ...workers.map((w) => w.pid!)].every((p) => !pidAlive(p)),
        10_000,
        'the daemon and its workers to be gone',
      );
      const held = (await leasedBy(dead)).length;
      assert.equal(held, 20, 'the dead workers hold their leases (300 s) in the store');
      // Whatever the workers file says, the leases of dead workers go.
      const workersFile = path.join(info.runtimeDir, DAEMON_WORKERS_FILE);
      assert.ok(fs.existsSync(workersFile));
      fs.writeFileSync(workersFile, JSON.stringify({ v: 1, workers: [] }));

      const t0 = Date.now();
      await client.startDaemon({ numberWorkers: 2 });
      await waitUntil(async () => (await leasedBy(dead)).length === 0, 30_000, 'no lease of a dead worker left');
      const releasedMs = Date.now() - t0;
      assert.deepEqual(
        (await leasedBy(dead)).map((p) => p.id),
        [],
      );
      await finished(ids, 60_000);
      assertNoOverlap(readSpans(spans));
      for (const p of await all(ids)) assert.equal(p.leaseOwner, null);
      await client.stopDaemon();
      console.log(
        `      ${bus}: ${held} leases of 2 dead workers; none left ${releasedMs} ms after the start ` +
          `(daemon start included); 40 finished, no run overlapped`,
      );
    });

    it('daemon SIGKILLed alone: its orphaned workers drain, release every lease and exit', async () => {
      client = clientFor(tp);
      await client.startDaemon({ numberWorkers: 2 });
      const workers = await readyWorkers(client, 2);
      const info = await client.getDaemonInfo();
      const spans = path.join(dir, 'spans-orphans');
      const ids = await processes.submitMany(
        'test.span',
        Array.from({ length: 40 }, () => ({ ms: 4000, file: spans })),
      );
      const orphans = new Set(workers.map((w) => w.workerId!));
      await waitUntil(
        async () => (await leasedBy(orphans)).length === 20,
        30_000,
        'both workers to hold 10 leases each',
      );
      const logBefore = fs.readFileSync(info.logFile, 'utf8').length;
      const t0 = Date.now();
      const daemonPid = ownPid(tp.home, client.daemonPid);
      process.kill(daemonPid, 'SIGKILL');
      await waitUntil(
        () => !pidAlive(daemonPid) && workers.every((w) => !pidAlive(w.pid!)),
        30_000,
        'the orphaned workers to exit by themselves',
      );
      const exitedMs = Date.now() - t0;
      // No daemon runs now: whatever is released, the orphans released it themselves.
      assert.equal(processesOfHome(tp.home).length, 0);
      assert.deepEqual(
        (await leasedBy(orphans)).map((p) => p.id),
        [],
        'no lease of an orphan is left',
      );
      const orphanLog = fs.readFileSync(info.logFile, 'utf8').slice(logBefore);
      for (const w of workers) {
        const who = escapeRe(`[worker ${w.workerId} pid ${w.pid}]`);
        assert.match(orphanLog, new RegExp(`${who} daemon gone: draining`));
        assert.match(orphanLog, new RegExp(`${who} worker \\S+ stopped`));
      }
      await client.startDaemon({ numberWorkers: 2 });
      await finished(ids, 60_000);
      assertNoOverlap(readSpans(spans));
      await client.stopDaemon();
      console.log(
        `      ${bus}: 20 leases held at the daemon's SIGKILL; both orphans drained and exited ${exitedMs} ms ` +
          `after it, 0 leases left; 40 finished, no run overlapped`,
      );
    });

    it('a worker SIGKILLed under core.shell commands: its commands are gone before they run elsewhere', async function () {
      requireService(this, flockAvailable(), 'flock (util-linux)');
      tp.setOption('daemon.worker_process_slots', 4);
      try {
        client = clientFor(tp);
        await client.startDaemon({ numberWorkers: 2 });
        const [victim] = await readyWorkers(client, 2);
        const cmds = path.join(dir, `shell-${Date.now()}`);
        fs.mkdirSync(cmds);
        const tags = Array.from({ length: 8 }, (_, k) => `cmd${k}`);
        const ids = await processes.submitMany(
          'core.shell',
          tags.map((t) => ({ command: lockedCommand(cmds, t, 4) })),
        );
        await waitUntil(() => readCommands(cmds).starts.size === 8, 30_000, 'all 8 commands to start');
        const theirs = childrenOf(victim!.pid!, cmds);
        assert.ok(theirs.length > 0, 'the victim runs some of the commands');
        const groups = new Set(theirs);
        process.kill(victim!.pid!, 'SIGKILL');
        await finished(ids, 60_000);
        const log = readCommands(cmds);
        assert.deepEqual(log.overlaps, [], 'no command ran while an earlier run of it still lived');
        for (const t of tags) assert.equal(log.ends.get(t), 1, `command ${t} ran to its end once`);
        const rerun = tags.filter((t) => log.starts.get(t)!.length > 1);
        assert.equal(rerun.length, theirs.length, "the killed worker's commands, and only those, ran again");
        assert.deepEqual(membersOf(groups), [], "nothing of the killed worker's commands is left");
        await client.stopDaemon();
        console.log(
          `      ${bus}: ${theirs.length} commands running in the killed worker; ${rerun.length} ran again, ` +
            `0 overlapped (flock), 0 left`,
        );
      } finally {
        tp.setOption('daemon.worker_process_slots', 10);
      }
    });
  });
}

describe('a worker without a daemon takes its commands with it (issue 9, must-show 2)', function () {
  this.timeout(120_000);
  let tp: TestProfile;
  let processes: ProcessClient;

  before(async function () {
    requireService(this, await portOpen(5672), 'RabbitMQ on 127.0.0.1:5672');
    requireService(this, process.platform === 'linux' && flockAvailable(), 'Linux and flock (util-linux)');
    tp = await makeProfile({
      name: 'keeper',
      options: { 'daemon.lease_seconds': 3, 'daemon.worker_process_slots': 4 },
    });
    processes = await tp.openClient();
  });

  after(async () => {
    await processes?.close();
    await tp?.cleanup();
    cleanupTempDirs();
  });

  it('SIGKILL of a foreground worker: its commands die at once, and run again only after its lease expired', async () => {
    const victim = await startWorker(tp);
    const dir = tempDir('drover-keeper-');
    const tags = ['k0', 'k1', 'k2', 'k3'];
    const ids = await processes.submitMany(
      'core.shell',
      tags.map((t) => ({ command: lockedCommand(dir, t, 8) })),
    );
    await waitUntil(() => readCommands(dir).starts.size === 4, 30_000, 'the 4 commands to start');
    const groups = new Set(childrenOf(victim.child.pid!, dir));
    assert.equal(groups.size, 4);
    victim.child.kill('SIGKILL');
    await victim.exited;
    // No daemon: nobody but the worker's keeper can stop them.
    await waitUntil(() => membersOf(groups).length === 0, 5000, "the killed worker's commands to be gone");
    const other = await startWorker(tp);
    try {
      await waitUntil(
        async () =>
          (await processes.listProcesses({})).filter((p) => ids.includes(p.id) && p.state === 'finished').length === 4,
        60_000,
        'the commands to run again elsewhere and finish',
        100,
      );
      const log = readCommands(dir);
      assert.deepEqual(log.overlaps, []);
      for (const t of tags) {
        assert.equal(log.starts.get(t)!.length, 2, `${t} ran again after its lease expired`);
        assert.equal(log.ends.get(t), 1);
      }
    } finally {
      await stopWorkers([other]);
    }
  });
});
