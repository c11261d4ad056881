/**
 * The same worker, engine and workflows against a PostgreSQL profile (the store for profiles shared
 * by several machines): a fresh database for this file, real workers, real RabbitMQ.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import type { ProcessClient } from '../../src/api/processes.js';
import { waitForProcesses } from '../../src/api/control.js';
import { REPO_ROOT, portOpen, requireService, tempDir, cleanupTempDirs } from '../helpers/env.js';
import {
  FIXTURE_MODULE,
  countRuns,
  makeProfile,
  startWorker,
  stopWorkers,
  type TestProfile,
  type WorkerProc,
} from '../helpers/profile.js';
import { checkEndRecords } from '../helpers/end-record.js';

describe('processes on a PostgreSQL profile', function () {
  this.timeout(120_000);
  let tp: TestProfile;
  let client: ProcessClient;
  let workers: WorkerProc[] = [];

  before(async function () {
    requireService(this, await portOpen(5672), 'RabbitMQ on 127.0.0.1:5672');
    requireService(this, await portOpen(5432), 'PostgreSQL on 127.0.0.1:5432');
    tp = await makeProfile({
      storage: 'postgres',
      options: {
        'processes.modules': [FIXTURE_MODULE, path.join(REPO_ROOT, 'dist', 'examples', 'fan-out.js')],
        'daemon.worker_process_slots': 20,
      },
    });
    client = await tp.openClient();
    workers = await Promise.all([startWorker(tp), startWorker(tp)]);
  });

  after(async () => {
    await stopWorkers(workers);
    await client?.close();
    await tp?.cleanup();
    cleanupTempDirs();
  });

  it('runs 500 processes on 2 workers, each exactly once', async () => {
    const runs = path.join(tempDir(), 'runs');
    const ids = await client.submitMany(
      'test.record_add',
      Array.from({ length: 500 }, (_, i) => ({ x: i, y: i, file: runs })),
    );
    const done = await waitForProcesses(client, ids, { timeoutSeconds: 60 });
    done.forEach((p, i) => {
      assert.equal(p.state, 'finished');
      assert.deepEqual(p.outputs, { sum: 2 * i });
      assert.equal(p.runs, 1);
    });
    const counts = countRuns(runs);
    assert.ok(ids.every((id) => counts.get(id) === 1));
  });

  it('a wait for one process returns the record as stored (jsonb key order), carried by its end event', async () => {
    await checkEndRecords(client);
  });

  it('fans out 100 children with 2 × 20 slots and sums them', async () => {
    const id = await client.submit('examples.sum_of_squares', { n: 100 });
    const [p] = await waitForProcesses(client, [id], { timeoutSeconds: 60 });
    assert.equal(p!.state, 'finished', p!.exception ?? '');
    assert.deepEqual(p!.outputs, { sum: (100 * 101 * 201) / 6, children: 100 });
  });
});
