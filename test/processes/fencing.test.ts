/**
 * Fencing (issue 11): every claim of a process has its own token (the claim counter), and every
 * write of a run is conditional on (owner, token).
 * - Through the store API, on SQLite and PostgreSQL: a write of an earlier claim (by another owner,
 *   or by the same owner that claimed the process again after its lease expired) is refused and
 *   changes nothing; the token goes up by one with every claim, and only with a claim.
 * - End to end (real workers): a worker frozen (SIGSTOP) for longer than its lease (both buses),
 *   or whose PostgreSQL store (a cluster of the test's own) is down for longer than its lease
 *   (RabbitMQ), stops the run by its own clock: its `core.shell` `sleep 60` is killed (with the
 *   store down, before the store is back), no step of the lost run starts any more, and the process
 *   finishes under a later claim whose `ctx.claim` is higher.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { InputError, LeaseLostError } from '../../src/errors/index.js';
import { processStartIdentity } from '../../src/util/index.js';
import { isTerminal, type ProcessOutcome, type ProcessRecord } from '../../src/protocol/index.js';
import { openStore, type ClaimResult, type ProcessStore } from '../../src/store/index.js';
import type { ProcessClient } from '../../src/api/processes.js';
import { killProcesses, waitForProcesses } from '../../src/api/control.js';
import {
  PG_ADMIN_URL,
  cleanupTempDirs,
  freshPostgresDatabase,
  portOpen,
  requireService,
  tempDir,
} from '../helpers/env.js';
import { pgClusterUnavailable, startPgCluster, type PgCluster } from '../helpers/pg-cluster.js';
import { makeProfile, waitUntil, type TestProfile } from '../helpers/profile.js';
import { pidAlive } from '../daemon/helpers.js';
import { BUSES, startPool, type Bus, type Pool, type PoolWorker } from '../helpers/pool.js';
import { verdicts } from '../helpers/complete.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const done: ProcessOutcome = { state: 'finished', outputs: { late: true }, exitStatus: 0, exitMessage: null };

function claimed(r: ClaimResult | undefined): Extract<ClaimResult, { claimed: true }> {
  assert.ok(r?.claimed, `claimed: ${JSON.stringify(r)}`);
  return r;
}

/** Everything a write could change about a process. */
async function snapshot(
  store: ProcessStore,
  id: number,
): Promise<{ p: ProcessRecord | null; journal: unknown; reports: unknown; children: number }> {
  return {
    p: await store.getProcess(id),
    journal: await store.getJournal(id),
    reports: (await store.getReports(id)).map((r) => r.message),
    children: (await store.listProcesses({ parentId: id })).length,
  };
}

/** Every write of a run with the claim `(owner, claim)`: each one must be refused. */
async function assertAllRefused(store: ProcessStore, id: number, owner: string, claim: number): Promise<void> {
  const before = await snapshot(store, id);
  assert.deepEqual(await store.complete(id, owner, claim, done), { ok: false, wokenParentId: null, stored: null });
  assert.deepEqual(await store.completeMany([{ id, owner, claim, outcome: done }]), [
    { ok: false, wokenParentId: null, stored: null },
  ]);
  await assert.rejects(
    store.appendJournal(id, owner, claim, { seq: 5, kind: 'step', name: 'late', result: 1 }),
    LeaseLostError,
  );
  await assert.rejects(store.addReport(id, owner, claim, 'late line'), LeaseLostError);
  await assert.rejects(store.submitChild(id, owner, claim, 6, { type: 'late-child', inputs: null }), LeaseLostError);
  await assert.rejects(store.waitForChildren(id, owner, claim, []), LeaseLostError);
  assert.deepEqual(await store.renewLeases(owner, [{ id, claim }], 60_000), []);
  assert.deepEqual(await store.releaseLeases(owner, [{ id, claim }]), []);
  const after = await snapshot(store, id);
  // Nothing changed, not even the modification time.
  assert.deepEqual(after, before);
}

interface Backend {
  name: 'sqlite' | 'postgres';
  available(): Promise<boolean>;
  open(): Promise<{ store: ProcessStore; drop: () => Promise<void> }>;
}

const BACKENDS: Backend[] = [
  {
    name: 'sqlite',
    available: async () => true,
    async open() {
      const store = await openStore({ backend: 'sqlite', path: path.join(tempDir(), 'fencing.db') });
      return { store, drop: async () => cleanupTempDirs() };
    },
  },
  {
    name: 'postgres',
    async available() {
      const u = new URL(PG_ADMIN_URL);
      return portOpen(Number(u.port || 5432), u.hostname);
    },
    async open() {
      const db = await freshPostgresDatabase();
      return { store: await openStore({ backend: 'postgres', url: db.url }), drop: db.drop };
    },
  },
];

for (const backend of BACKENDS) {
  describe(`fencing tokens in the store (${backend.name})`, function () {
    let store: ProcessStore;
    let drop: () => Promise<void> = async () => undefined;

    before(async function () {
      requireService(this, await backend.available(), `${backend.name} store`);
      ({ store, drop } = await backend.open());
    });
    after(async () => {
      await store?.close();
      await drop();
    });

    it('refuses every write of an earlier claim once another owner claimed again, changing nothing', async () => {
      const [id] = await store.createProcesses([{ type: 'fenced', inputs: null }]);
      const first = claimed((await store.claim([id!], 'w1', 150))[0]);
      assert.equal(first.claim, 1);
      await store.appendJournal(id!, 'w1', first.claim, { seq: 0, kind: 'step', name: 'a', result: 'w1' });
      await store.addReport(id!, 'w1', first.claim, 'w1 was here');
      await sleep(250);
      const second = claimed((await store.claim([id!], 'w2', 60_000))[0]);
      assert.equal(second.claim, 2);
      assert.deepEqual(second.journal, [{ seq: 0, kind: 'step', name: 'a', result: 'w1' }]);
      await assertAllRefused(store, id!, 'w1', first.claim);
      // The new claim still writes: the refusals took nothing from it.
      await store.appendJournal(id!, 'w2', second.claim, { seq: 1, kind: 'step', name: 'b', result: 'w2' });
      assert.deepEqual(verdicts(await store.complete(id!, 'w2', second.claim, done)), {
        ok: true,
        wokenParentId: null,
      });
      const p = (await store.getProcess(id!))!;
      assert.equal(p.state, 'finished');
      assert.equal(p.workerId, 'w2');
      assert.deepEqual(
        (await store.getJournal(id!)).map((e) => e.result),
        ['w1', 'w2'],
      );
      assert.deepEqual(
        (await store.getReports(id!)).map((r) => r.message),
        ['w1 was here'],
      );
    });

    it('refuses a late write of the same owner after it claimed the process again', async () => {
      const [id] = await store.createProcesses([{ type: 'fenced-same', inputs: null }]);
      const first = claimed((await store.claim([id!], 'w1', 150))[0]);
      await sleep(250);
      const second = claimed((await store.claim([id!], 'w1', 60_000))[0]);
      assert.equal(second.claim, first.claim + 1);
      assert.equal(second.process.leaseOwner, 'w1', 'the owner check alone would let the old claim through');
      await assertAllRefused(store, id!, 'w1', first.claim);
      const child = await store.submitChild(id!, 'w1', second.claim, 0, { type: 'fenced-child', inputs: null });
      assert.equal((await store.getProcess(child))!.parentId, id);
      assert.deepEqual(await store.renewLeases('w1', [{ id: id!, claim: second.claim }], 60_000), [id]);
      assert.deepEqual(await store.releaseLeases('w1', [{ id: id!, claim: second.claim }]), [id]);
    });

    it('counts claims: the token goes up by one with every claim, and only then', async () => {
      const [id] = await store.createProcesses([{ type: 'fenced-count', inputs: null }]);
      const tokens: number[] = [];
      const c1 = claimed((await store.claim([id!], 'w1', 60_000))[0]);
      tokens.push(c1.claim);
      // Renewals, journal entries and reports do not move it.
      await store.renewLeases('w1', [{ id: id!, claim: c1.claim }], 60_000);
      await store.appendJournal(id!, 'w1', c1.claim, { seq: 0, kind: 'step', name: 'a', result: 1 });
      await store.addReport(id!, 'w1', c1.claim, 'x');
      assert.equal((await store.getProcess(id!))!.runs, 1);
      // A refused claim does not move it either.
      assert.deepEqual(await store.claim([id!], 'w2', 60_000), [{ claimed: false, reason: 'leased' }]);
      // Released (as a pause does), claimed again: 2.
      await store.releaseLeases('w1', [{ id: id!, claim: c1.claim }]);
      const c2 = claimed((await store.claim([id!], 'w2', 60_000))[0]);
      tokens.push(c2.claim);
      // Waiting for a child, woken, claimed again: 3.
      const child = await store.submitChild(id!, 'w2', c2.claim, 1, { type: 'fenced-count-child', inputs: null });
      assert.deepEqual(await store.waitForChildren(id!, 'w2', c2.claim, [child]), { waiting: true });
      // A repeat of that checkpoint counts as done for its claim only.
      assert.deepEqual(await store.waitForChildren(id!, 'w2', c2.claim, [child]), { waiting: true });
      await assert.rejects(store.waitForChildren(id!, 'w2', c1.claim, [child]), LeaseLostError);
      const cc = claimed((await store.claim([child], 'w3', 60_000))[0]);
      assert.equal(cc.claim, 1, 'a child counts its own claims');
      assert.deepEqual(verdicts(await store.complete(child, 'w3', cc.claim, done)), { ok: true, wokenParentId: id });
      const c3 = claimed((await store.claim([id!], 'w1', 60_000))[0]);
      tokens.push(c3.claim);
      assert.deepEqual(tokens, [1, 2, 3]);
      assert.equal(c3.process.runs, c3.claim, 'the token is the claim counter');
      assert.deepEqual(verdicts(await store.complete(id!, 'w1', c3.claim, done)), { ok: true, wokenParentId: null });
    });

    it('checks the token argument like every other argument', async () => {
      const [id] = await store.createProcesses([{ type: 'fenced-args', inputs: null }]);
      claimed((await store.claim([id!], 'w1', 60_000))[0]);
      for (const bad of [0, -1, 1.5, '1', null, undefined]) {
        const claim = bad as unknown as number;
        await assert.rejects(store.complete(id!, 'w1', claim, done), InputError);
        await assert.rejects(
          store.appendJournal(id!, 'w1', claim, { seq: 0, kind: 'step', name: 'a', result: 1 }),
          InputError,
        );
        await assert.rejects(store.addReport(id!, 'w1', claim, 'x'), InputError);
        await assert.rejects(store.submitChild(id!, 'w1', claim, 0, { type: 'c', inputs: null }), InputError);
        await assert.rejects(store.waitForChildren(id!, 'w1', claim, []), InputError);
        await assert.rejects(store.renewLeases('w1', [{ id: id!, claim }], 1000), InputError);
        await assert.rejects(store.releaseLeases('w1', [{ id: id!, claim }]), InputError);
      }
      await assert.rejects(store.renewLeases('w1', [id!] as never, 1000), InputError);
      assert.equal((await store.getProcess(id!))!.leaseOwner, 'w1', 'nothing was released');
      assert.deepEqual(await store.getJournal(id!), []);
    });
  });
}

/** Pids of live processes whose parent is `ppid` and whose command line is exactly `argv`. */
function childProcesses(ppid: number, argv: readonly string[]): number[] {
  const out: number[] = [];
  const want = argv.join('\0') + '\0';
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(f[1]) !== ppid || f[0] === 'Z') continue;
      if (fs.readFileSync(`/proc/${e}/cmdline`, 'utf8') === want) out.push(Number(e));
    } catch {
      // gone
    }
  }
  return out;
}

interface StepLine {
  id: number;
  claim: number;
  pid: number;
  step: number;
  t: number;
}

function readSteps(file: string): StepLine[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as StepLine);
}

/** How a worker is kept from renewing its leases, and let go again. */
interface Cut {
  name: string;
  /** Skips the test when what it needs is missing. */
  check(ctx: Mocha.Context): Promise<void>;
  /** Profile options for the store (the cluster of the test's own for 'store down'). */
  profile(): Promise<Parameters<typeof makeProfile>[0]>;
  /** The bus it runs on. */
  bus: Bus;
  start(workerPid: number): void;
  end(workerPid: number): void;
  /** True when the worker runs while cut off (so it can act by its clock before `end`). */
  workerRuns: boolean;
  cleanup(): void;
}

/** True when `pid` is a live drover worker (never 0 or 1): the only pids the frozen cut signals. */
function isWorkerProcess(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 1 || !pidAlive(pid)) return false;
  try {
    // Forked by a daemon, or a `drover daemon worker` the pool started.
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return argv.includes('/dist/src/worker/main.js') || argv.includes('/bin/drover.js');
  } catch {
    return false;
  }
}

function frozenCut(bus: Bus): Cut {
  // The worker this cut stopped, with its start time: a SIGCONT goes to that very process only.
  let stopped: { pid: number; start: string } | null = null;
  const stillStopped = (pid: number): boolean =>
    stopped !== null && stopped.pid === pid && isWorkerProcess(pid) && processStartIdentity(pid) === stopped.start;
  return {
    name: 'frozen (SIGSTOP) past its lease',
    bus,
    async check() {},
    async profile() {
      return {};
    },
    start(pid) {
      // The pool's own worker (the parent of the test's sleep 60, and a worker process).
      const start = isWorkerProcess(pid) ? processStartIdentity(pid) : null;
      if (start === null) throw new Error(`not a worker pid: ${pid}`);
      process.kill(pid, 'SIGSTOP');
      stopped = { pid, start };
    },
    end(pid) {
      // Only the pid this cut stopped, still that worker.
      if (stillStopped(pid)) process.kill(pid, 'SIGCONT');
      stopped = null;
    },
    workerRuns: false,
    cleanup() {
      if (stopped !== null && stillStopped(stopped.pid)) process.kill(stopped.pid, 'SIGCONT');
    },
  };
}

function storeDownCut(): Cut {
  let cluster: PgCluster | null = null;
  return {
    name: 'its PostgreSQL store down past its lease',
    bus: 'rabbitmq',
    async check(ctx) {
      const why = pgClusterUnavailable();
      requireService(ctx, why === null, `a PostgreSQL cluster of its own: ${why}`);
    },
    async profile() {
      cluster = await startPgCluster();
      return { storage: 'postgres', postgresUrl: await cluster.createDatabase('drover_fencing') };
    },
    start() {
      cluster!.stop('immediate');
    },
    end() {
      cluster!.start();
    },
    workerRuns: true,
    cleanup() {
      cluster?.destroy();
    },
  };
}

for (const cut of [...BUSES.map(frozenCut), storeDownCut()]) {
  describe(`a worker that cannot renew its lease stops the run by its own clock (${cut.name}; ${cut.bus} bus)`, function () {
    this.timeout(120_000);
    const LEASE_S = 3;
    let tp: TestProfile;
    let client: ProcessClient;
    let pool: Pool | null = null;

    before(async function () {
      requireService(this, process.platform === 'linux', 'Linux (/proc)');
      if (cut.bus === 'rabbitmq') requireService(this, await portOpen(5672), 'RabbitMQ on 127.0.0.1:5672');
      await cut.check(this);
      tp = await makeProfile({
        name: 'fencing',
        bus: cut.bus,
        ...(await cut.profile()),
        options: { 'daemon.lease_seconds': LEASE_S, 'daemon.worker_process_slots': 4 },
      });
      client = await tp.openClient();
    });

    after(async () => {
      cut.cleanup();
      await pool?.stop();
      await client?.close();
      await tp?.cleanup();
      cleanupTempDirs();
    });

    it('its sleep 60 is killed, no step of the lost run starts after, a later claim finishes', async () => {
      const dir = tempDir('drover-fencing-');
      const file = path.join(dir, 'steps.log');
      pool = await startPool(tp, 1);
      const p0 = pool;
      const [{ pid, workerId }] = (await p0.workers()) as [PoolWorker];
      const shell = await client.submit('core.shell', { command: ['sleep', '60'] });
      const fenced = await client.submit('test.fenced_steps', { file, steps: 12, delayMs: 500 });

      const [sleeper] = (await waitUntil(
        () => {
          const found = childProcesses(pid, ['sleep', '60']);
          return found.length === 1 ? found : null;
        },
        20_000,
        'the worker to start sleep 60',
      )) as number[];
      await waitUntil(() => readSteps(file).length >= 2, 20_000, 'two steps of the first run');
      for (const id of [shell, fenced]) {
        const p = await client.getProcess(id);
        assert.equal(p.leaseOwner, workerId);
        assert.equal(p.runs, 1);
      }

      cut.start(pid);
      const cutAt = Date.now();
      if (cut.workerRuns) {
        // The store is unreachable: the worker cannot hear about any other claim; only its clock
        // can tell it the lease is gone, and it must stop the command by the lease's expiry.
        await waitUntil(
          () => !pidAlive(sleeper!),
          LEASE_S * 1000 + 3000,
          'the sleep 60 to be killed while the store is down',
        );
        const killedAfter = Date.now() - cutAt;
        assert.ok(killedAfter <= LEASE_S * 1000 + 1500, `killed ${killedAfter} ms after the store went down`);
        await sleep(1000);
      } else {
        await sleep(LEASE_S * 1000 + 2500);
        assert.ok(pidAlive(sleeper!), 'nobody else kills the command while its worker is frozen');
      }
      const linesBefore = readSteps(file).filter((l) => l.claim === 1).length;
      cut.end(pid);
      const endedAt = Date.now();

      await waitUntil(() => !pidAlive(sleeper!), 5_000, 'the sleep 60 of the lost run to be killed');
      assert.ok(Date.now() - endedAt < 5_000);
      // The lost run's outcome (killed, by its signal) was not recorded: the process is claimed
      // again (here by the same worker, the only one) and finishes under that later claim.
      const [done] = await waitForProcesses(client, [fenced], { timeoutSeconds: 60 });
      assert.equal(done!.state, 'finished', done!.exception ?? '');
      assert.ok(done!.runs >= 2, `claimed ${done!.runs} time(s)`);
      assert.deepEqual(done!.outputs, { claim: done!.runs }, 'ctx.claim of the finishing run is its claim number');

      const lines = readSteps(file);
      const first = lines.filter((l) => l.claim === 1);
      assert.equal(first.length, linesBefore, 'no step of the lost run (claim 1) started after it was let go');
      assert.ok(
        first.every((l) => l.t < cutAt + LEASE_S * 1000),
        `steps of claim 1 at ${JSON.stringify(first.map((l) => l.t - cutAt))} ms after the cut`,
      );
      const later = lines.filter((l) => l.claim > 1);
      assert.ok(later.length > 0, 'a later claim ran the remaining steps');
      assert.ok(
        later.every((l) => l.t >= endedAt),
        'the later claim started once the worker could reach the store again',
      );
      // Each step recorded once: the later run replayed what claim 1 journaled.
      assert.deepEqual(
        (await client.store.getJournal(fenced)).map((e) => e.name),
        Array.from({ length: 12 }, (_, i) => `step-${i}`),
      );
      assert.match(p0.output(), /lease not renewed before it expired by this worker's clock/);

      // The shell process runs again under a later claim (a new sleep 60); kill it to clean up.
      const shellNow = await client.getProcess(shell);
      assert.ok(!isTerminal(shellNow.state), `the lost run recorded no outcome (${shellNow.state})`);
      await killProcesses(client, [shell], { message: 'test over' });
      assert.equal((await client.getProcess(shell)).state, 'killed');
      await p0.stop();
      pool = null;
    });
  });
}
