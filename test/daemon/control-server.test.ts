/**
 * The control server's transport rules, against a stand-in handler (no daemon, no services):
 * ordering, half-close, the line limit, the pending-request limit, and the client transport's
 * error mapping.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { ControlServer } from '../../src/daemon/control-server.js';
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
import { cleanupTempDirs, tempDir } from '../helpers/env.js';

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
