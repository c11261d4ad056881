/**
 * The client's error contract at the edges (issue 12): a status request racing a daemon that
 * stops is "not running" (or a timeout), never the bare DaemonException; a runtime directory that
 * cannot exist gives the daemon's own reason for not starting, and "not running" for status.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { cleanupTempDirs, portOpen, requireService, runCliAsync } from '../helpers/env.js';
import { makeProfile, type TestProfile } from '../helpers/profile.js';
import { clientFor, stopAndCheckLeaks } from '../daemon/helpers.js';
import { DaemonException, DaemonNotRunningException, DaemonTimeoutException } from '../../src/errors/index.js';

describe('client: error contract', function () {
  this.timeout(180_000);
  let tp: TestProfile;

  before(async function () {
    requireService(this, await portOpen(5672), 'RabbitMQ on 127.0.0.1:5672');
    tp = await makeProfile({ name: 'errors', options: { 'daemon.default_workers': 1, 'daemon.shutdown_grace': 1 } });
  });
  after(async () => {
    if (tp) await stopAndCheckLeaks(clientFor(tp), tp.home);
    await tp?.cleanup();
    cleanupTempDirs();
  });

  it('getStatus() polled while stopDaemon() runs, 20 times: every failure is "not running" or a timeout', async () => {
    const client = clientFor(tp);
    const failures = new Map<string, number>();
    let answers = 0;
    for (let round = 0; round < 20; round++) {
      await client.startDaemon();
      let stopping = true;
      const poll = (async () => {
        while (stopping) {
          try {
            await client.getStatus({ timeout: 2 });
            answers++;
          } catch (err) {
            assert.ok(err instanceof DaemonException, `not a DaemonException: ${String(err)}`);
            const kind = err.constructor.name;
            failures.set(kind, (failures.get(kind) ?? 0) + 1);
            if (!(err instanceof DaemonNotRunningException || err instanceof DaemonTimeoutException)) {
              assert.fail(`round ${round}: the bare ${kind}: ${err.message}`);
            }
          }
        }
      })();
      await client.stopDaemon();
      stopping = false;
      await poll;
    }
    console.log(`      ${answers} answers, failures: ${JSON.stringify(Object.fromEntries(failures))}`);
    assert.ok((failures.get('DaemonNotRunningException') ?? 0) >= 20, 'every round ended "not running"');
  });

  it('a runtime directory that cannot be created: start gives the daemon\'s reason, status says "not running"', async () => {
    // DROVER_HOME/run is where the runtime directories go; a file there blocks them all.
    const run = path.join(tp.home, 'run');
    fs.rmSync(run, { recursive: true, force: true });
    fs.writeFileSync(run, 'not a directory\n');
    try {
      const status = await runCliAsync(['daemon', 'status'], tp.env);
      assert.equal(status.status, 3, status.stdout + status.stderr);
      assert.match(status.stdout, /The daemon of profile 'errors' is not running\./);
      const start = await runCliAsync(['daemon', 'start'], tp.env);
      assert.equal(start.status, 1, start.stdout + start.stderr);
      assert.match(start.stderr, /Error: the daemon of profile 'errors' exited with code 1/);
      assert.match(start.stderr, /the daemon failed to start: ENOTDIR: not a directory, mkdir '[^']*\/run\/errors'/);
      assert.doesNotMatch(start.stderr, /connect ENOTDIR/);
    } finally {
      fs.rmSync(run, { force: true });
    }
  });
});
