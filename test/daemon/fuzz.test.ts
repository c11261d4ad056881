/**
 * Issue 4, point 7: 10,000 random and malformed messages to the control socket, over a few
 * hundred connections. The daemon answers or closes each connection, every answer is a valid
 * reply, and afterwards it still answers status with the same pid and workers.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import type { DaemonClient } from '../../src/client/index.js';
import {
  MAX_CONTROL_LINE_BYTES,
  parseControlRequest,
  parseControlResponse,
  type ControlResponse,
} from '../../src/protocol/index.js';
import { cleanupTempDirs, portOpen, requireService } from '../helpers/env.js';
import { makeProfile, type TestProfile } from '../helpers/profile.js';
import { clientFor, stopAndCheckLeaks } from './helpers.js';

/** A small seeded PRNG (mulberry32), so a failure can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const READ_ONLY = new Set(['status', 'daemonInfo', 'workerInfo']);

/** One message (without the newline). Never a valid request that would change the daemon. */
function message(rand: () => number): Buffer {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const int = (n: number): number => Math.floor(rand() * n);
  const kind = int(14);
  let text: string;
  switch (kind) {
    case 0: {
      const b = Buffer.alloc(1 + int(300));
      for (let i = 0; i < b.length; i++) b[i] = int(256);
      return b;
    }
    case 1:
      text = Array.from({ length: 1 + int(100) }, () => String.fromCharCode(32 + int(95))).join('');
      break;
    case 2:
      text = JSON.stringify({ v: 1, id: int(1e6), method: 'status' }).slice(0, 1 + int(30));
      break;
    case 3:
      text = JSON.stringify(pick<unknown>([null, 0, -1, 'status', [], [1, 2], true, 1e308, {}, { v: 1 }]));
      break;
    case 4:
      text = JSON.stringify({ v: pick([0, 2, '1', null, 1.5]), id: int(100), method: 'status' });
      break;
    case 5:
      text = JSON.stringify({ v: 1, id: pick([null, {}, [], true, 'x'.repeat(300), 1.5]), method: 'status' });
      break;
    case 6:
      text = JSON.stringify({
        v: 1,
        id: int(100),
        method: pick(['', 'Status', 'stop ', '__proto__', 'constructor', 'toString']),
      });
      break;
    case 7:
      text = JSON.stringify({
        v: 1,
        id: int(100),
        method: pick(['increaseWorkers', 'decreaseWorkers']),
        params: pick<unknown>([
          {},
          { n: 0 },
          { n: -3 },
          { n: 1e9 },
          { n: '2' },
          { n: 1.5 },
          { n: null },
          [],
          'n=1',
          { n: 1, x: 1 },
        ]),
      });
      break;
    case 8:
      text = JSON.stringify({
        v: 1,
        id: int(100),
        method: pick(['stop', 'restartWorkers', 'status']),
        params: { force: true },
      });
      break;
    case 9:
      text = '['.repeat(1 + int(20_000));
      break;
    case 10:
      text = '{"v":1,"id":1,"method":"status","params":' + '{"a":'.repeat(int(5000)) + '1' + '}'.repeat(int(5000));
      break;
    case 11:
      text = JSON.stringify({ v: 1, id: `ok-\u0000\ud800${int(9)}`, method: 'status', __proto__: { method: 'stop' } });
      break;
    case 12:
      // A valid read-only request now and then: it must be answered with a result.
      text = JSON.stringify({ v: 1, id: `ok-${int(1e6)}`, method: pick([...READ_ONLY]) });
      break;
    default:
      text = JSON.stringify({ v: 1, id: int(100), method: 'status', params: { pad: 'x'.repeat(int(2000)) } });
  }
  // Never send a valid request that changes something (it would be obeyed, rightly).
  try {
    const req = parseControlRequest(JSON.parse(text));
    if (!READ_ONLY.has(req.method)) text = `{"not":"${req.method}"`;
  } catch {
    // Invalid: exactly what we want to send.
  }
  return Buffer.from(text, 'utf8');
}

interface ConnectionResult {
  replies: ControlResponse[];
  invalidReplies: string[];
  closedByDaemon: boolean;
}

function converse(socketPath: string, payload: Buffer, timeoutMs: number): Promise<ConnectionResult> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(socketPath);
    let data = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`the daemon neither answered nor closed within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.on('connect', () => {
      sock.write(payload);
      sock.end();
    });
    sock.on('data', (d: Buffer) => (data += d.toString('utf8')));
    sock.on('error', () => undefined); // EPIPE/ECONNRESET after an oversized line: the daemon closed
    sock.on('close', () => {
      clearTimeout(timer);
      const replies: ControlResponse[] = [];
      const invalidReplies: string[] = [];
      for (const line of data.split('\n')) {
        if (line === '') continue;
        try {
          replies.push(parseControlResponse(line));
        } catch {
          invalidReplies.push(line.slice(0, 200));
        }
      }
      resolve({ replies, invalidReplies, closedByDaemon: true });
    });
  });
}

describe('the control socket under garbage (issue 4, point 7)', function () {
  this.timeout(120_000);
  let tp: TestProfile;
  let client: DaemonClient | null = null;

  before(async function () {
    requireService(this, await portOpen(5672), 'RabbitMQ on 127.0.0.1:5672');
    tp = await makeProfile({ name: 'fuzz' });
  });

  afterEach(async () => {
    await stopAndCheckLeaks(client, tp.home);
    client = null;
  });

  after(async () => {
    await tp?.cleanup();
    cleanupTempDirs();
  });

  it('answers or closes each of 300 connections carrying 10,000 messages, then still answers status', async () => {
    client = clientFor(tp);
    await client.startDaemon({ numberWorkers: 1 });
    const before = await client.getStatus();
    const socket = client.paths.socket;
    const rand = prng(0xd120e4);
    const connections = 300;
    const total = 10_000;
    const payloads: Buffer[] = [];
    let sent = 0;
    let oversized = 0;
    for (let c = 0; c < connections; c++) {
      const n = c === connections - 1 ? total - sent : Math.floor(total / connections);
      const parts: Buffer[] = [];
      for (let i = 0; i < n; i++) parts.push(message(rand), Buffer.from('\n'));
      // Every 25th connection ends with a line longer than the limit.
      if (c % 25 === 0) {
        parts.push(Buffer.alloc(MAX_CONTROL_LINE_BYTES + 100, 0x7b));
        oversized++;
      }
      sent += n;
      payloads.push(Buffer.concat(parts));
    }
    assert.equal(sent, total);

    const results: ConnectionResult[] = [];
    const concurrency = 30;
    for (let i = 0; i < payloads.length; i += concurrency) {
      results.push(...(await Promise.all(payloads.slice(i, i + concurrency).map((p) => converse(socket, p, 20_000)))));
    }
    assert.equal(results.length, connections);
    const replies = results.flatMap((r) => r.replies);
    assert.deepEqual(
      results.flatMap((r) => r.invalidReplies),
      [],
      'every reply is a valid protocol response',
    );
    const errors = replies.filter((r) => !r.ok);
    const oks = replies.filter((r) => r.ok);
    assert.ok(replies.length > total * 0.9, `got ${replies.length} replies to ${total} messages`);
    assert.ok(oks.length > 0, 'valid read-only requests were answered');
    for (const r of oks) assert.match(String(r.id), /^ok-/, 'only the valid read-only requests succeed');
    const codes = new Set(errors.map((r) => (r.ok ? '' : r.error.code)));
    for (const c of codes) {
      assert.ok(
        ['PROTOCOL_INVALID', 'VERSION_UNSUPPORTED', 'METHOD_UNKNOWN', 'PARAMS_INVALID', 'REQUEST_TOO_LARGE'].includes(
          c,
        ),
        c,
      );
    }
    assert.equal(errors.filter((r) => !r.ok && r.error.code === 'REQUEST_TOO_LARGE').length, oversized);

    const after = await client.getStatus();
    assert.equal(after.pid, before.pid, 'the same daemon');
    assert.equal(after.numberOfWorkers, 1);
    assert.equal(after.workers[0]!.restarts, 0);
    await client.stopDaemon();
    assert.doesNotMatch(fs.readFileSync(client.logFile, 'utf8'), /unhandled|INTERNAL_ERROR/i);
  });
});
