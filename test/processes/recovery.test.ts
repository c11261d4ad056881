/**
 * The broker drops a worker's connection while it runs processes (as a RabbitMQ restart or a
 * network cut would): the worker reconnects, rebuilds its consumers, the running processes finish
 * once, and new work is taken after the reconnect.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import type { ProcessClient } from '../../src/api/processes.js';
import { waitForProcesses } from '../../src/api/control.js';
import { portOpen, requireService } from '../helpers/env.js';
import {
  makeProfile,
  startWorker,
  stopWorkers,
  waitUntil,
  type TestProfile,
  type WorkerProc,
} from '../helpers/profile.js';

/** Closes every broker connection whose client-given name contains `needle`; returns how many. */
function closeConnections(needle: string): number {
  const out = execFileSync('rabbitmqctl', ['list_connections', '-q', 'pid', 'client_properties'], {
    encoding: 'utf8',
  });
  let n = 0;
  for (const line of out.split('\n')) {
    if (!line.includes(needle)) continue;
    const pid = line.split('\t')[0]!;
    execFileSync('rabbitmqctl', ['close_connection', pid, 'drover test: simulated broker failure']);
    n++;
  }
  return n;
}

describe('worker survives losing its broker connection', function () {
  this.timeout(120_000);
  let tp: TestProfile;
  let client: ProcessClient;
  let workers: WorkerProc[] = [];

  before(async function () {
    requireService(this, await portOpen(5672), 'RabbitMQ on 127.0.0.1:5672');
    let ctl = true;
    try {
      execFileSync('rabbitmqctl', ['-q', 'status'], { stdio: 'ignore' });
    } catch {
      ctl = false;
    }
    requireService(this, ctl, 'rabbitmqctl (to close connections)');
    tp = await makeProfile();
    client = await tp.openClient();
  });

  after(async () => {
    await stopWorkers(workers);
    await client?.close();
    await tp?.cleanup();
  });

  it('reconnects, finishes running processes once, and takes new work', async () => {
    workers = [await startWorker(tp)];
    const workerId = /worker (\S+) consuming/.exec(workers[0]!.output())![1]!;
    const sleepers = await client.submitMany(
      'core.sleep',
      Array.from({ length: 20 }, () => ({ seconds: 2 })),
    );
    await waitUntil(
      async () => (await client.listProcesses({ states: ['running'] })).length === 20,
      20_000,
      'all 20 to run',
    );
    assert.equal(closeConnections(`drover worker ${workerId}`), 1);
    await waitUntil(() => /broker connection lost/.test(workers[0]!.output()), 10_000, 'the worker to notice');
    const later = await client.submitMany(
      'core.arithmetic.add',
      Array.from({ length: 20 }, (_, i) => ({ x: i, y: 1 })),
    );
    const done = await waitForProcesses(client, [...sleepers, ...later], { timeoutSeconds: 60 });
    for (const p of done) {
      assert.equal(p.state, 'finished', `process ${p.id}: ${p.exception ?? ''}`);
      assert.equal(p.runs, 1, `process ${p.id} claimed ${p.runs} times`);
    }
    assert.equal(workers[0]!.child.exitCode, null, 'the worker stayed up');
  });
});
