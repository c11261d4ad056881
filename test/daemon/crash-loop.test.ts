/**
 * Issue 4, point 3: a worker that throws at start is reported as crash-looping, with its error,
 * while the daemon stays up and answers.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { DaemonClient } from '../../src/client/index.js';
import type { WorkerInfo } from '../../src/protocol/index.js';
import { cleanupTempDirs, portOpen, requireService, runCli, tempDir } from '../helpers/env.js';
import { FIXTURE_MODULE, makeProfile, waitUntil, type TestProfile } from '../helpers/profile.js';
import { clientFor, stopAndCheckLeaks } from './helpers.js';

describe('a crash-looping worker (issue 4, point 3)', function () {
  this.timeout(90_000);
  let tp: TestProfile;
  let client: DaemonClient | null = null;
  let bad: string;

  before(async function () {
    requireService(this, await portOpen(5672), 'RabbitMQ on 127.0.0.1:5672');
    bad = path.join(tempDir(), 'bad-processes.mjs');
    fs.writeFileSync(bad, "throw new Error('boom while loading bad-processes.mjs');\n");
    tp = await makeProfile({
      name: 'crash-loop',
      options: {
        'processes.modules': [FIXTURE_MODULE, bad],
        'daemon.worker_restart_backoff': { initial: 0.1, max: 1, factor: 2 },
      },
    });
  });

  afterEach(async () => {
    await stopAndCheckLeaks(client, tp.home);
    client = null;
  });

  after(async () => {
    await tp?.cleanup();
    cleanupTempDirs();
  });

  it('shows the crash loop with its exit and error in status; the daemon stays responsive', async () => {
    client = clientFor(tp);
    await client.startDaemon({ numberWorkers: 1 });
    const looping = (await waitUntil(
      async () => {
        const s = await client!.getStatus();
        return s.workers[0]?.state === 'crash-looping' ? s.workers[0] : null;
      },
      45_000,
      'the worker to be reported as crash-looping',
      100,
    )) as WorkerInfo;
    assert.ok(looping.restarts >= 4, `revived ${looping.restarts} times`);
    assert.ok(looping.lastExit !== null && looping.lastExit.code !== 0, JSON.stringify(looping.lastExit));
    assert.ok(looping.lastExit.uptimeMs < 10_000);
    assert.match(looping.lastError ?? '', /boom while loading bad-processes\.mjs/);
    assert.ok(
      looping.lastLines.some((l) => /boom while loading/.test(l)),
      looping.lastLines.join('\n'),
    );

    const status = await client.getStatus();
    assert.equal(status.state, 'degraded');
    assert.equal(status.numberOfWorkers, 1);
    // It keeps trying (at the maximum back-off, 1 s here) and keeps answering meanwhile.
    await waitUntil(
      async () => (await client!.getWorkerInfo())[0]!.restarts > looping.restarts,
      10_000,
      'another revival attempt',
      100,
    );

    const cli = runCli(['daemon', 'status'], tp.env);
    assert.equal(cli.status, 0, cli.stderr);
    assert.match(cli.stdout, /is degraded/);
    assert.match(cli.stdout, /w1 .*crash-looping/);
    assert.match(cli.stdout, /Worker w1 is crash-looping; last exit: code \d+ .*error: .*boom while loading/);

    await client.stopDaemon();
    const log = fs.readFileSync(client.logFile, 'utf8');
    assert.match(log, /worker w1 is crash-looping: it died within 10s of its start 5 times in a row/);
    assert.match(log, /\[w1 \d+\] .*boom while loading/, 'worker output is prefixed with its id and pid');
  });
});
