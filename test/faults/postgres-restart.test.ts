/**
 * The PostgreSQL server restarting under a running profile (issue 9, must-show 3). The cluster is
 * the test's own (initdb'd into a temp dir, on a free port), never the shared server. It is
 * stopped with `pg_ctl -m fast` and with `-m immediate` mid-run, and started again, while real
 * workers run a mix of shell commands, workflows and stepped processes: no worker crashes, nothing
 * unhandled is logged, every process finishes, and none runs twice beyond those whose outcome could
 * not be written (counted from the workers' logs).
 */
import assert from 'node:assert/strict';
import pg from 'pg';
import { ProcessClient } from '../../src/api/processes.js';
import { StoreUnavailableError, isTerminal } from '../../src/index.js';
import { openStore } from '../../src/store/index.js';
import { openPostgresStore } from '../../src/store/postgres/postgres-store.js';
import { cleanupTempDirs, portOpen, requireService, tempDir } from '../helpers/env.js';
import {
  FIXTURE_MODULE,
  makeProfile,
  startWorker,
  stopWorkers,
  waitUntil,
  type TestProfile,
  type WorkerProc,
} from '../helpers/profile.js';
import { pgClusterUnavailable, startPgCluster, type PgCluster } from '../helpers/pg-cluster.js';
import { verdicts } from '../helpers/complete.js';
import { SHELL_PIPELINE_MODULE, allProcesses, countRepeats, submitWorkload } from '../helpers/fault-workload.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Locks the rows of the running processes in a transaction of another session (as an operator's
 * psql or a slow transaction would) and waits (up to 10 s) until a worker's transaction waits for
 * one: so the server usually goes down with worker transactions in flight, not only idle
 * connections. Best effort: on a loaded machine no write may come in time, and the restart then
 * happens with whatever is in flight (the assertions are the same). The session dies with the
 * server.
 */
async function holdRunningRows(url: string, database: string): Promise<pg.Client> {
  const locker = new pg.Client({ connectionString: url });
  locker.on('error', () => undefined);
  await locker.connect();
  await locker.query('BEGIN');
  await locker.query("SELECT id FROM processes WHERE state = 'running' FOR UPDATE");
  await waitUntil(
    async () =>
      (
        await locker.query(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
          [database],
        )
      ).rows[0].n > 0,
    10_000,
    'a worker transaction to wait for a locked row',
  ).catch(() => console.log('      (no worker transaction waited on a locked row within 10 s; restarting anyway)'));
  return locker;
}
/** How long the server stays down in each restart. */
const DOWN_MS = 1500;

describe('PostgreSQL restarts under the store', function () {
  this.timeout(300_000);
  let cluster: PgCluster | null = null;

  before(async function () {
    const why = pgClusterUnavailable();
    requireService(this, why === null, `a PostgreSQL cluster of its own: ${why}`);
    cluster = await startPgCluster();
  });

  after(() => {
    cluster?.destroy();
    cleanupTempDirs();
  });

  it('a store waits out a restart: calls made while the server is down succeed once it is back', async function () {
    const url = await cluster!.createDatabase('drover_store');
    const store = await openStore({ backend: 'postgres', url });
    const impatient = await openPostgresStore(url, { retryMs: 300 });
    try {
      const [id] = await store.createProcesses([{ type: 'x', inputs: 1 }]);
      const [c] = await store.claim([id!], 'w1', 60_000);
      assert.ok(c?.claimed);
      await store.appendJournal(id!, 'w1', 1, { seq: 0, kind: 'step', name: 'a', result: 1 });

      cluster!.stop('fast');
      // Every kind of call, while the server is down: reads, conditional writes, a transaction,
      // and a creation, which must not create twice.
      const calls = Promise.all([
        store.getProcess(id!),
        store.renewLeases('w1', [{ id: id!, claim: 1 }], 60_000),
        store.appendJournal(id!, 'w1', 1, { seq: 1, kind: 'step', name: 'b', result: 2 }),
        store.createProcesses([{ type: 'y', inputs: 2 }]),
        store.listProcesses({}),
      ]);
      await assert.rejects(impatient.getProcess(id!), (err: unknown) => {
        assert.ok(err instanceof StoreUnavailableError, String(err));
        assert.equal(err.code, 'STORE_UNAVAILABLE');
        assert.ok(err.message.includes('127.0.0.1') && err.message.includes('getProcess'), err.message);
        return true;
      });
      await sleep(DOWN_MS);
      cluster!.start();
      const [p, renewed, , created] = await calls;
      assert.equal(p!.leaseOwner, 'w1');
      assert.deepEqual(renewed, [id]);
      assert.equal(created.length, 1);

      cluster!.stop('immediate');
      const done = store.completeMany([
        {
          id: id!,
          owner: 'w1',
          claim: 1,
          outcome: { state: 'finished', outputs: null, exitStatus: 0, exitMessage: null },
        },
      ]);
      await sleep(DOWN_MS);
      cluster!.start();
      assert.deepEqual(verdicts(await done), [{ ok: true, wokenParentId: null }]);
      assert.deepEqual(
        (await store.getJournal(id!)).map((e) => e.name),
        ['a', 'b'],
      );
      assert.equal((await store.listProcesses({ type: 'y' })).length, 1, 'created once');
      assert.equal((await impatient.getProcess(id!))!.state, 'finished', 'the impatient store works again too');
    } finally {
      await store.close();
      await impatient.close();
    }
  });

  describe('with real workers', function () {
    let tp: TestProfile | null = null;
    let client: ProcessClient | null = null;
    let workers: WorkerProc[] = [];
    let dir: string;
    let url: string;

    before(async function () {
      requireService(this, await portOpen(5672), 'RabbitMQ on 127.0.0.1:5672');
      url = await cluster!.createDatabase('drover_workers');
      dir = tempDir('drover-pgrestart-');
      tp = await makeProfile({
        storage: 'postgres',
        postgresUrl: url,
        options: {
          'processes.modules': [FIXTURE_MODULE, SHELL_PIPELINE_MODULE],
          'daemon.worker_process_slots': 4,
          'daemon.lease_seconds': 30,
        },
      });
      client = await ProcessClient.open(tp.profile);
      workers = [await startWorker(tp), await startWorker(tp)];
    });

    after(async () => {
      await stopWorkers(workers);
      await client?.close();
      await tp?.cleanup();
    });

    it('fast and immediate restarts mid-run: no crash, nothing unhandled, nothing run twice', async () => {
      const c = client!;
      const pgc = cluster!;
      const running = async (): Promise<number> => (await c.listProcesses({ states: ['running'] })).length;
      const ids = await submitWorkload(c, dir, { shells: 30, workflows: 6, stepped: 8, seconds: 1 });
      const runningAtStop: number[] = [];

      await waitUntil(async () => (await running()) >= 6, 30_000, 'processes to be running');
      // Quick ones keep claims and completions in flight when the server goes.
      ids.push(...(await submitWorkload(c, dir, { shells: 0, workflows: 0, stepped: 0, quick: 300, round: 'q1' })));
      await sleep(300);
      runningAtStop.push(await running());
      let locker = await holdRunningRows(url, 'drover_workers');
      pgc.stop('fast');
      await locker.end().catch(() => undefined);
      // A submission while the server is down waits for it and goes through.
      const during = submitWorkload(c, dir, { shells: 6, workflows: 1, stepped: 2, seconds: 1, round: 'b' });
      await sleep(DOWN_MS);
      pgc.start();

      // Let the workers make progress on the restarted server before the second restart.
      const finished = async (): Promise<number> => (await c.listProcesses({ states: ['finished'] })).length;
      const before = await finished();
      await waitUntil(async () => (await finished()) >= before + 8, 60_000, 'processes to finish after the restart');
      // Long work again for the second restart: the first round may be nearly done by now on a
      // fast run, or still catching up on a loaded one.
      ids.push(...(await submitWorkload(c, dir, { shells: 8, workflows: 2, stepped: 2, seconds: 1, round: 'c' })));
      await waitUntil(async () => (await running()) >= 4, 60_000, 'processes to be running again');
      ids.push(...(await submitWorkload(c, dir, { shells: 0, workflows: 0, stepped: 0, quick: 300, round: 'q2' })));
      await sleep(300);
      runningAtStop.push(await running());
      locker = await holdRunningRows(url, 'drover_workers');
      pgc.stop('immediate');
      await locker.end().catch(() => undefined);
      await sleep(DOWN_MS);
      pgc.start();
      ids.push(...(await during));

      await waitUntil(
        async () => (await allProcesses(c)).every((p) => isTerminal(p.state)),
        180_000,
        'every process to end',
      );
      const all = await allProcesses(c);
      assert.equal(all.filter((p) => ids.includes(p.id)).length, ids.length, 'every submitted process is there');
      const notFinished = all.filter((p) => p.state !== 'finished' || p.exitStatus !== 0);
      assert.deepEqual(
        notFinished.map((p) => `${p.id} ${p.type} ${p.state} ${p.exception ?? p.exitMessage ?? ''}`),
        [],
        'every process finished',
      );

      const logs = workers.map((w) => w.output());
      const unwritten = logs.reduce((n, o) => n + (o.match(/outcome not recorded/g) ?? []).length, 0);
      const repeats = countRepeats(dir);
      const report = {
        processes: all.length,
        runningAtStop,
        commandStarts: repeats.commandStarts,
        commandsTwice: repeats.commandsTwice.length,
        commandsOverlapping: repeats.commandsOverlapping.length,
        stepsTwice: repeats.stepsTwice.length,
        quickTwice: repeats.quickTwice.length,
        outcomesNotWritten: unwritten,
        crashes: workers.filter((w) => w.child.exitCode !== null || w.child.signalCode !== null).length,
        storeLogLines: logs.map(
          (o) => o.split('\n').filter((l) => /PostgreSQL store|lease\(s\)|outcome/.test(l)).length,
        ),
      };
      console.log(`      postgres-restart run: ${JSON.stringify(report)}`);
      if (process.env.DUMP_LOGS) for (const o of logs) console.log(o);
      assert.ok(
        runningAtStop.every((n) => n > 0),
        'processes were running at each stop',
      );
      const crashed = workers.filter((w) => w.child.exitCode !== null || w.child.signalCode !== null);
      assert.equal(
        report.crashes,
        0,
        `no worker crashed; crashed: ${crashed.map((w) => `exit ${w.child.exitCode} ${w.child.signalCode}:\n${w.output().slice(-3000)}`).join('\n---\n')}`,
      );
      for (const [i, o] of logs.entries()) {
        assert.ok(!/Unhandled|uncaught|^\s+at /im.test(o), `worker ${i} logged no unhandled error:\n${o}`);
      }
      assert.ok(
        repeats.commandsTwice.length + repeats.stepsTwice.length + repeats.quickTwice.length <= unwritten,
        `runs twice (${[...repeats.commandsTwice, ...repeats.stepsTwice, ...repeats.quickTwice].join(', ')}) ` +
          `only where an outcome ` +
          `could not be written (${unwritten})`,
      );
    });
  });
});
