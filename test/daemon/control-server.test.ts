/**
 * The control server's transport rules, against a stand-in handler (no daemon, no services):
 * ordering, half-close, the line limit, the pending-request limit, deep values, the admission and
 * idle rules (which connection makes room for a new one, first-request deadline, subscriptions),
 * and the client transport's error mapping.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { ControlServer, FRESH_GRACE_MS, type ControlConnection } from '../../src/daemon/control-server.js';
import { SocketTransport } from '../../src/client/socket-transport.js';
import { DaemonException, DaemonNotRunningException, DaemonTimeoutException } from '../../src/errors/index.js';
import { silentLogger } from '../../src/logging/index.js';
import {
  ControlError,
  parseControlResponse,
  type ControlHandler,
  type ControlResponse,
  type DaemonStatus,
} from '../../src/protocol/index.js';
import { cleanupTempDirs, tempDir, waitUntil } from '../helpers/env.js';

const status: DaemonStatus = {
  profile: 'p',
  pid: 1,
  startedAt: 1,
  state: 'running',
  supervisor: 'self',
  numberOfWorkers: 2,
  runningProcesses: 0,
  workers: [],
};

function handler(opts: { gate?: Promise<void> } = {}): ControlHandler {
  let workers = 2;
  return {
    status: async () => {
      await opts.gate;
      return { ...status, numberOfWorkers: workers };
    },
    daemonInfo: async () => {
      throw new Error('unused');
    },
    workerInfo: async () => ({ workers: [] }),
    increaseWorkers: async ({ n }) => ({ numberOfWorkers: (workers += n) }),
    decreaseWorkers: async ({ n }) => {
      if (n > workers)
        throw new ControlError('PARAMS_INVALID', `cannot remove ${n} workers: the daemon has ${workers}`);
      return { numberOfWorkers: (workers -= n) };
    },
    restartWorkers: async () => ({ numberOfWorkers: workers, restarted: workers }),
    stop: async () => ({ stopping: true }),
  };
}

/** A client connection that stays open, records what it receives and whether the server closed it. */
interface Peer {
  socket: net.Socket;
  name: string;
  lines: string[];
  closed: boolean;
  /** Sends one request line and resolves with the next reply. */
  request(method: string): Promise<ControlResponse>;
}

async function openPeer(sock: string, name: string): Promise<Peer> {
  const socket = net.createConnection(sock);
  const peer: Peer = {
    socket,
    name,
    lines: [],
    closed: false,
    async request(method) {
      const before = peer.lines.length;
      socket.write(`{"v":1,"id":"${name}","method":"${method}"}\n`);
      await waitUntil(() => peer.lines.length > before || peer.closed, 5000, `${name}'s reply`);
      return parseControlResponse(peer.lines[before]!);
    },
  };
  let buf = '';
  socket.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      peer.lines.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  });
  socket.on('error', () => undefined);
  socket.on('close', () => (peer.closed = true));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return peer;
}

/** Sends `payload`, half-closes, and collects the replies until the server closes. */
function exchange(sock: string, payload: string | Buffer): Promise<ControlResponse[]> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(sock);
    let data = '';
    s.on('connect', () => {
      s.write(payload);
      s.end();
    });
    s.on('data', (d: Buffer) => (data += d.toString()));
    s.on('error', () => undefined);
    s.on('close', () => {
      try {
        resolve(
          data
            .split('\n')
            .filter((l) => l !== '')
            .map(parseControlResponse),
        );
      } catch (err) {
        reject(err as Error);
      }
    });
  });
}

describe('control server and socket transport', () => {
  let dir: string;
  let sock: string;
  let server: ControlServer | null = null;

  beforeEach(() => {
    dir = tempDir();
    fs.chmodSync(dir, 0o700);
    sock = path.join(dir, 'daemon.sock');
  });

  afterEach(async () => {
    await server?.close();
    server = null;
  });

  after(() => cleanupTempDirs());

  it('listens on a 0600 socket and answers pipelined requests in order, also after a half-close', async () => {
    server = new ControlServer(sock, handler(), silentLogger);
    await server.listen();
    assert.equal(fs.statSync(sock).mode & 0o777, 0o600);
    const replies = await exchange(
      sock,
      [
        '{"v":1,"id":1,"method":"increaseWorkers","params":{"n":2}}',
        '',
        'garbage',
        '{"v":1,"id":2,"method":"decreaseWorkers","params":{"n":9}}',
        '{"v":1,"id":3,"method":"status"}\r',
      ].join('\n') + '\n',
    );
    assert.deepEqual(
      replies.map((r) => [r.id, r.ok ? 'ok' : r.error.code]),
      [
        [1, 'ok'],
        [null, 'PROTOCOL_INVALID'],
        [2, 'PARAMS_INVALID'],
        [3, 'ok'],
      ],
    );
    assert.equal(replies[3]!.ok && (replies[3]!.result as DaemonStatus).numberOfWorkers, 4);
  });

  it('replies REQUEST_TOO_LARGE and closes on a line over the limit, without waiting for its end', async () => {
    server = new ControlServer(sock, handler(), silentLogger, { maxLineBytes: 1000 });
    await server.listen();
    const replies = await new Promise<ControlResponse[]>((resolve) => {
      const s = net.createConnection(sock);
      let data = '';
      // Never sends a newline and never ends: only the server can end this.
      s.on('connect', () => s.write('{"v":1,"id":1,"method":"status"}\n' + 'x'.repeat(5000)));
      s.on('data', (d: Buffer) => (data += d.toString()));
      s.on('error', () => undefined);
      s.on('close', () => resolve(data.split('\n').filter(Boolean).map(parseControlResponse)));
    });
    assert.deepEqual(
      replies.map((r) => (r.ok ? 'ok' : r.error.code)),
      ['ok', 'REQUEST_TOO_LARGE'],
    );
  });

  it('closes a connection that queues too many requests with BUSY', async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    server = new ControlServer(sock, handler({ gate }), silentLogger, { maxPendingPerConnection: 5 });
    await server.listen();
    const pending = exchange(sock, '{"v":1,"id":1,"method":"status"}\n'.repeat(20));
    setTimeout(open, 200);
    const replies = await pending;
    assert.deepEqual(
      replies.map((r) => (r.ok ? 'ok' : r.error.code)),
      ['ok', 'ok', 'ok', 'ok', 'ok', 'BUSY'],
    );
  });

  it('answers a 32k-deep array and deeply nested params with a clear error, not INTERNAL_ERROR', async () => {
    server = new ControlServer(sock, handler(), silentLogger);
    await server.listen();
    const depth = 32_000;
    const deepArray = '['.repeat(depth) + ']'.repeat(depth);
    const deepParam = `{"v":1,"id":9,"method":"increaseWorkers","params":{"n":${'['.repeat(depth - 10)}${']'.repeat(depth - 10)}}}`;
    const replies = await exchange(sock, `${deepArray}\n${deepParam}\n{"v":1,"id":10,"method":"status"}\n`);
    assert.deepEqual(
      replies.map((r) => [r.id, r.ok ? 'ok' : r.error.code]),
      [
        [null, 'PROTOCOL_INVALID'],
        [9, 'PARAMS_INVALID'],
        [10, 'ok'],
      ],
    );
    const [a, b] = replies as [ControlResponse & { ok: false }, ControlResponse & { ok: false }];
    assert.match(a.error.message, /^a request must be a JSON object, got \[{50,}\.\.\.$/);
    assert.match(b.error.message, /param 'n' must be an integer from 1 to 256, got \[+\.\.\.$/);
  });

  it('at the connection limit admits the new connection and closes the one that matters least', async () => {
    // `workerInfo` stands in for a subscribe request: it holds its connection.
    const held: ControlConnection[] = [];
    const factory = (conn: ControlConnection): ControlHandler => ({
      ...handler(),
      workerInfo: async () => {
        conn.hold();
        held.push(conn);
        return { workers: [] };
      },
    });
    server = new ControlServer(sock, factory, silentLogger, { maxConnections: 5, firstRequestTimeoutMs: 60_000 });
    await server.listen();
    const subscriber = await openPeer(sock, 'subscriber');
    assert.equal((await subscriber.request('workerInfo')).ok, true);
    const talker = await openPeer(sock, 'talker');
    assert.equal((await talker.request('status')).ok, true);
    const silent = [
      await openPeer(sock, 'silent-1'),
      await openPeer(sock, 'silent-2'),
      await openPeer(sock, 'silent-3'),
    ];
    // Past the grace a client gets to send its first request, the silent ones are the first to go.
    await new Promise((r) => setTimeout(r, FRESH_GRACE_MS + 100));
    const newcomers: Peer[] = [];
    const closedOrder: string[] = [];
    const all = (): Peer[] => [subscriber, talker, ...silent, ...newcomers];
    const noteClosures = (): void => {
      for (const p of all()) if (p.closed && !closedOrder.includes(p.name)) closedOrder.push(p.name);
    };
    for (let i = 1; i <= 6; i++) {
      const before = all().filter((p) => p.closed).length;
      newcomers.push(await openPeer(sock, `new-${i}`));
      await waitUntil(() => all().filter((p) => p.closed).length > before, 5000, `room made for new-${i}`);
      noteClosures();
      assert.equal(server.connectionCount, 5, 'the limit holds');
    }
    // Silent ones first (oldest first), then the one idle after its request, then newcomers that
    // have not spoken yet (oldest first); the subscriber last of all.
    assert.deepEqual(closedOrder, ['silent-1', 'silent-2', 'silent-3', 'talker', 'new-1', 'new-2']);
    assert.equal(subscriber.closed, false, 'the subscriber is still connected');
    for (const p of [...silent, talker]) {
      assert.match(p.lines.at(-1) ?? '', /"code":"BUSY".*closing this idle one to make room/, `${p.name} was told`);
    }
    assert.equal(held[0]!.push('{"event":1}'), true);
    await waitUntil(() => subscriber.lines.includes('{"event":1}'), 5000, 'the pushed event');
    // A status request on a new connection is answered while everything else stays full.
    assert.equal((await (await openPeer(sock, 'owner')).request('status')).ok, true);
    assert.equal(subscriber.closed, false);
    for (const p of all()) p.socket.destroy();
  });

  it('closes a connection without a complete request by its deadline, even when it trickles bytes', async () => {
    server = new ControlServer(sock, handler(), silentLogger, { firstRequestTimeoutMs: 300, idleTimeoutMs: 60_000 });
    await server.listen();
    const trickler = await openPeer(sock, 'trickler');
    const timer = setInterval(() => trickler.socket.write('{'), 50);
    const talker = await openPeer(sock, 'talker');
    assert.equal((await talker.request('status')).ok, true);
    try {
      await waitUntil(() => trickler.closed, 10_000, 'the trickler to be closed');
    } finally {
      clearInterval(timer);
    }
    assert.equal(talker.closed, false, 'a connection that sent a request is not cut by the first-request deadline');
    talker.socket.destroy();
  });

  it('a held subscription keeps its connection past the idle timeout; released, the timeout applies', async () => {
    let release: (() => void) | null = null;
    const factory = (conn: ControlConnection): ControlHandler => ({
      ...handler(),
      workerInfo: async () => {
        release = conn.hold();
        return { workers: [] };
      },
      restartWorkers: async () => {
        release?.();
        return { numberOfWorkers: 1, restarted: 0 };
      },
    });
    server = new ControlServer(sock, factory, silentLogger, { idleTimeoutMs: 200 });
    await server.listen();
    const idle = await openPeer(sock, 'idle');
    const subscriber = await openPeer(sock, 'subscriber');
    assert.equal((await idle.request('status')).ok, true);
    assert.equal((await subscriber.request('workerInfo')).ok, true);
    await waitUntil(() => idle.closed, 10_000, 'the idle connection to be closed');
    await new Promise((r) => setTimeout(r, 600)); // three idle timeouts
    assert.equal(subscriber.closed, false, 'the subscriber was not cut while it held a subscription');
    assert.equal((await subscriber.request('restartWorkers')).ok, true);
    await waitUntil(() => subscriber.closed, 10_000, 'the released connection to be closed by the idle timeout');
  });

  it('maps transport failures to the client errors', async () => {
    const t = new SocketTransport(sock, 'p');
    await assert.rejects(t.request('status', {}, 5000), DaemonNotRunningException, 'no socket file');
    // A file where the socket should be, nobody listening (a daemon killed by SIGKILL leaves one too).
    fs.writeFileSync(path.join(dir, 'x'), '');
    await assert.rejects(
      new SocketTransport(path.join(dir, 'x'), 'p').request('status', {}, 5000),
      DaemonNotRunningException,
    );

    // A listener that accepts and never answers.
    const mute = net.createServer(() => undefined).listen(sock);
    await new Promise((r) => mute.once('listening', r));
    try {
      await assert.rejects(t.request('status', {}, 300), DaemonTimeoutException);
    } finally {
      mute.close();
    }

    // A real server: results are validated, refusals become DaemonException with the daemon's code.
    server = new ControlServer(sock, handler(), silentLogger);
    await server.listen();
    assert.equal((await t.request('increaseWorkers', { n: 1 }, 5000)).numberOfWorkers, 3);
    await assert.rejects(
      t.request('decreaseWorkers', { n: 10 }, 5000),
      (err: Error) =>
        err instanceof DaemonException &&
        /refused 'decreaseWorkers': cannot remove 10 workers: the daemon has 3 \(PARAMS_INVALID\)/.test(err.message),
    );
  });
});
