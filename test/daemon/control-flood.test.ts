/**
 * The control socket stays available to its owner (issue 9, must-show 6): with 1,000 idle
 * connections held open against a real daemon — and reopened as fast as the daemon closes them —
 * `drover daemon status` (the real CLI) still answers.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import type { DaemonClient } from '../../src/client/index.js';
import { DEFAULT_CONTROL_LIMITS } from '../../src/daemon/control-server.js';
import { cleanupTempDirs, portOpen, requireService, runCliAsync, waitUntil } from '../helpers/env.js';
import { makeProfile, type TestProfile } from '../helpers/profile.js';
import { clientFor, stopAndCheckLeaks } from './helpers.js';

/** A set of idle connections kept at `size`: each one the daemon closes is reopened. */
class Flood {
  private readonly sockets = new Set<net.Socket>();
  private stopped = false;
  /** Connections the daemon closed. */
  closedByDaemon = 0;
  /** Connections that reached the daemon (the connect completed). */
  connected = 0;

  constructor(
    private readonly socketPath: string,
    private readonly size: number,
  ) {}

  /** Opens `size` connections, at most 100 connecting at once; resolves when all have connected once. */
  async start(): Promise<void> {
    for (let i = 0; i < this.size; i += 100) {
      await Promise.all(Array.from({ length: Math.min(100, this.size - i) }, () => this.open()));
    }
  }

  private open(): Promise<void> {
    return new Promise((resolve) => {
      const s = net.createConnection(this.socketPath);
      this.sockets.add(s);
      s.on('connect', () => {
        this.connected++;
        resolve();
      });
      s.on('data', () => undefined); // the daemon's BUSY line
      s.on('error', () => undefined);
      s.on('close', () => {
        this.sockets.delete(s);
        resolve();
        if (this.stopped) return;
        this.closedByDaemon++;
        // Keep 1,000 open: reopen what the daemon closed, after a moment (a tight reconnect loop
        // is another attack, a connect flood, which only the kernel's accept queue bounds).
        setTimeout(() => void this.open(), 100);
      });
    });
  }

  stop(): void {
    this.stopped = true;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }
}

describe('the control socket under 1,000 idle connections (issue 9, point 6)', function () {
  this.timeout(120_000);
  let tp: TestProfile;
  let client: DaemonClient | null = null;
  let flood: Flood | null = null;

  before(async function () {
    requireService(this, await portOpen(5672), 'RabbitMQ on 127.0.0.1:5672');
    tp = await makeProfile({ name: 'flood' });
  });

  afterEach(async () => {
    flood?.stop();
    flood = null;
    await stopAndCheckLeaks(client, tp.home);
    client = null;
  });

  after(async () => {
    await tp?.cleanup();
    cleanupTempDirs();
  });

  it('drover daemon status answers while 1,000 idle connections are held open', async () => {
    client = clientFor(tp);
    await client.startDaemon({ numberWorkers: 1 });
    const before = await client.getStatus();
    flood = new Flood(client.paths.socket, 1000);
    await flood.start();
    assert.ok(flood.connected >= 1000);
    // The daemon keeps at most maxConnections of them: it made room rather than refusing.
    await waitUntil(
      () => flood!.closedByDaemon >= 1000 - DEFAULT_CONTROL_LIMITS.maxConnections,
      30_000,
      'the daemon to close the connections past its limit',
    );
    for (let round = 0; round < 2; round++) {
      const closedBefore = flood.closedByDaemon;
      const r = await runCliAsync(['daemon', 'status'], tp.env);
      assert.equal(r.status, 0, `status failed under the flood:\n${r.stdout}${r.stderr}`);
      assert.match(r.stdout, new RegExp(`Daemon of profile 'flood' is (running|starting) \\(pid ${before.pid},`));
      assert.ok(flood.closedByDaemon > closedBefore, 'the flood was still being held off while status ran');
    }
    const json = await runCliAsync(['daemon', 'status', '--json'], tp.env);
    assert.equal(json.status, 0, json.stdout + json.stderr);
    flood.stop();
    const after = await client.getStatus();
    assert.equal(after.pid, before.pid, 'the daemon did not restart');
    assert.equal(after.numberOfWorkers, 1);
  });
});
