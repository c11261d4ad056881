/**
 * A full disk under a SQLite store (issue 9, must-show 4). The store lives on a small tmpfs of the
 * test's own; real workers run a mix of shell commands, workflows and stepped processes; the disk
 * is filled to the last block mid-run, then freed. Submits during the full phase fail with a clear
 * error naming the store and "disk full" and store nothing; running processes keep their leases
 * and retry their outcome writes; once space is back every committed process finishes, none runs
 * twice, the WAL gives the space back, and the workers' logs hold a few lines about it, not one a
 * second.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ProcessClient } from '../../src/api/processes.js';
import { StoreFullError, isTerminal } from '../../src/index.js';
import { cleanupTempDirs, portOpen, requireService, runCliAsync, tempDir } from '../helpers/env.js';
import {
  FIXTURE_MODULE,
  makeProfile,
  startWorker,
  stopWorkers,
  waitUntil,
  type TestProfile,
  type WorkerProc,
} from '../helpers/profile.js';
import { mountTmpfs, tmpfsUnavailable, type Tmpfs } from '../helpers/tmpfs.js';
import { JOURNAL_SIZE_LIMIT } from '../../src/store/sqlite/sqlite-store.js';
import { SHELL_PIPELINE_MODULE, allProcesses, countRepeats, submitWorkload } from '../helpers/fault-workload.js';

const TMPFS_BYTES = 8 << 20;
/** How long the disk stays full: several outcome-retry rounds, well within the lease. */
const FULL_MS = 8_000;

describe('a full disk under a SQLite store', function () {
  this.timeout(240_000);
  let disk: Tmpfs | null = null;
  let tp: TestProfile | null = null;
  let client: ProcessClient | null = null;
  let workers: WorkerProc[] = [];
  let dir: string;

  before(async function () {
    const why = tmpfsUnavailable();
    requireService(this, why === null, `a tmpfs of its own (${why})`);
    requireService(this, await portOpen(5672), 'RabbitMQ on 127.0.0.1:5672');
    disk = mountTmpfs(TMPFS_BYTES);
    dir = tempDir('drover-diskfull-');
    tp = await makeProfile({
      sqlitePath: path.join(disk.dir, 'store.db'),
      options: {
        'processes.modules': [FIXTURE_MODULE, SHELL_PIPELINE_MODULE],
        'daemon.worker_process_slots': 4,
        'daemon.lease_seconds': 60,
      },
    });
    client = await ProcessClient.open(tp.profile);
    workers = [await startWorker(tp), await startWorker(tp)];
  });

  after(async () => {
    await stopWorkers(workers);
    await client?.close();
    await tp?.cleanup();
    disk?.unmount();
    cleanupTempDirs();
  });

  it('fails submits clearly while full, and finishes every committed process once after', async () => {
    const c = client!;
    const fsys = disk!;
    const file = path.join(fsys.dir, 'store.db');
    const ids = await submitWorkload(c, dir, { shells: 40, workflows: 6, stepped: 10, seconds: 1 });
    await waitUntil(
      async () => (await c.listProcesses({ states: ['running'] })).length >= 6,
      30_000,
      'processes to be running',
    );

    fsys.fill();
    const fullAt = Date.now();
    assert.equal(fsys.freeBytes(), 0, 'the disk is full');
    const runningWhenFull = (await c.listProcesses({ states: ['running'] })).map((p) => p.id);
    assert.ok(runningWhenFull.length > 0, 'processes were running when the disk filled');

    // Submits fail with an error naming the store and the cause, and store nothing.
    const cli = await runCliAsync(
      ['process', 'submit', 'core.shell', '--inputs', '{"command": ["true"]}', '--label', 'during-full-cli'],
      tp!.env,
    );
    assert.notEqual(cli.status, 0, `the CLI submit failed: ${cli.stdout}`);
    assert.ok(cli.stderr.includes(file) && /disk full/.test(cli.stderr), `clear CLI error: ${cli.stderr}`);
    await assert.rejects(
      c.submit('core.shell', { command: ['true'] }, { label: 'during-full-lib' }),
      (err: unknown) =>
        err instanceof StoreFullError &&
        err.code === 'STORE_DISK_FULL' &&
        err.message.includes(file) &&
        /disk full/.test(err.message),
    );

    // Running processes keep their leases while their outcome writes fail and are retried.
    await new Promise((r) => setTimeout(r, Math.max(0, FULL_MS - (Date.now() - fullAt))));
    const held = await c.listProcesses({ states: ['running'] });
    for (const id of runningWhenFull) {
      const p = held.find((x) => x.id === id);
      if (p === undefined) continue; // it ended before the disk filled up completely
      assert.ok(p.leaseOwner !== null && p.leaseExpiresAt! > Date.now(), `process ${id} kept its lease`);
    }
    fsys.unfill();

    await waitUntil(
      async () => (await allProcesses(c)).every((p) => isTerminal(p.state)),
      150_000,
      'every process to end after the disk was freed',
    );
    const all = await allProcesses(c);
    const top = all.filter((p) => ids.includes(p.id));
    assert.equal(top.length, ids.length, 'every submitted process is there');
    const notFinished = all.filter((p) => p.state !== 'finished' || p.exitStatus !== 0);
    assert.deepEqual(
      notFinished.map((p) => `${p.id} ${p.type} ${p.state} ${p.exception ?? p.exitMessage ?? ''}`),
      [],
      'every committed process finished',
    );
    assert.deepEqual(
      all.filter((p) => p.label?.startsWith('during-full') ?? false).map((p) => p.id),
      [],
      'the failed submits stored nothing',
    );
    const repeats = countRepeats(dir);
    // A workflow is claimed again after each wait: count the others.
    const claimedTwice = all.filter((p) => p.runs > 1 && p.type !== 'examples.shell_pipeline').map((p) => p.id);
    const logs = workers.map((w) => w.output());
    const fullLines = logs.map((o) => o.split('\n').filter((l) => /disk full|disk is full/.test(l)).length);
    const report = {
      processes: all.length,
      runningWhenFull: runningWhenFull.length,
      commandStarts: repeats.commandStarts,
      commandsTwice: repeats.commandsTwice.length,
      stepsTwice: repeats.stepsTwice.length,
      claimedTwice: claimedTwice.length,
      crashes: workers.filter((w) => w.child.exitCode !== null || w.child.signalCode !== null).length,
      diskFullLogLines: fullLines,
      walBytes: fs.existsSync(`${file}-wal`) ? fs.statSync(`${file}-wal`).size : 0,
      usedBytes: fsys.usedBytes(),
    };
    console.log(`      disk-full run: ${JSON.stringify(report)}`);
    assert.deepEqual(repeats.commandsTwice, [], 'no command ran twice');
    assert.deepEqual(repeats.stepsTwice, [], 'no journaled step ran twice');
    assert.deepEqual(claimedTwice, [], 'no process was claimed twice');
    assert.equal(report.crashes, 0, 'no worker crashed');
    for (const [i, o] of logs.entries()) {
      assert.ok(!/Unhandled|uncaught|^\s+at /im.test(o), `worker ${i} logged no unhandled error:\n${o}`);
      assert.ok(fullLines[i]! <= 12, `worker ${i} logged the full disk ${fullLines[i]} times, not once a second`);
    }
    // The WAL does not keep the freed space: it is back to at most its limit, and the whole store
    // (database, WAL, index) takes a small part of the disk.
    assert.ok(report.walBytes <= JOURNAL_SIZE_LIMIT + 64 * 1024, `the WAL keeps ${report.walBytes} bytes`);
    assert.ok(report.usedBytes < TMPFS_BYTES / 4, `the store uses ${report.usedBytes} bytes after the run`);

    // And the profile is not wedged: a new submission runs at once.
    const next = await c.submit('core.shell', { command: ['true'] });
    await waitUntil(async () => (await c.getProcess(next)).state === 'finished', 30_000, 'a new process to finish');
  });
});
