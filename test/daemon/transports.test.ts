/**
 * The seam for control transports besides the socket (D-Bus): a transport gets the same handler
 * and is told when the status changes; one that fails to start does not keep the daemon down. The
 * daemon runs in this process here (as `drover daemon start --foreground` runs it).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Daemon, type ControlTransportContext } from '../../src/daemon/index.js';
import type { DaemonStatus } from '../../src/protocol/index.js';
import { cleanupTempDirs, portOpen, requireService } from '../helpers/env.js';
import { makeProfile, waitUntil, type TestProfile } from '../helpers/profile.js';
import { clientFor, stopAndCheckLeaks } from './helpers.js';

describe('daemon control transports', function () {
  this.timeout(60_000);
  let tp: TestProfile;
  let daemon: Daemon | null = null;

  before(async function () {
    requireService(this, await portOpen(5672), 'RabbitMQ on 127.0.0.1:5672');
    tp = await makeProfile({ name: 'transports' });
  });

  afterEach(async () => {
    await daemon?.stop('test end');
    daemon = null;
    await stopAndCheckLeaks(null, tp.home);
  });

  after(async () => {
    await tp?.cleanup();
    cleanupTempDirs();
  });

  it('gives extra transports the handler and status changes, survives one that fails, closes them on stop', async () => {
    let ctx: ControlTransportContext | null = null;
    const seen: DaemonStatus[] = [];
    let closed = 0;
    const started = await Daemon.start(tp.profile, {
      numberWorkers: 1,
      env: { ...process.env, ...tp.env },
      handleSignals: false,
      transports: [
        async () => {
          throw new Error('no session bus');
        },
        async (c) => {
          ctx = c;
          c.onStatusChange((s) => seen.push(s));
          return {
            close: async () => {
              closed++;
            },
          };
        },
      ],
    });
    assert.ok(started instanceof Daemon);
    daemon = started;
    assert.ok(ctx, 'the second transport started');
    const c = ctx as ControlTransportContext;
    await waitUntil(() => seen.some((s) => s.state === 'running'), 30_000, 'a status change to running');
    const firstRunning = seen.find((s) => s.state === 'running')!;
    assert.ok(
      firstRunning.workers.every((w) => w.state === 'ready'),
      'running only once the worker is ready',
    );

    // The transport's handler is the socket's: a change through it shows through the socket.
    assert.deepEqual(await c.handler.increaseWorkers({ n: 1 }), { numberOfWorkers: 2 });
    assert.equal(await clientFor(tp).getNumberOfWorkers(), 2);
    await waitUntil(() => seen.some((s) => s.numberOfWorkers === 2), 5000, 'a status change after incr');
    assert.equal(c.status().numberOfWorkers, 2);

    await daemon.stop('test');
    daemon = null;
    assert.equal(closed, 1);
    assert.equal(seen[seen.length - 1]!.state, 'stopping');
    const log = fs.readFileSync(clientFor(tp).logFile, 'utf8');
    assert.match(log, /a control transport failed to start \(no session bus\); the socket still answers/);
  });
});
