/**
 * The control protocol (src/protocol/control.ts): what the daemon accepts, what it answers, and
 * how a line that is too long is caught while reading. No services needed.
 */
import assert from 'node:assert/strict';
import {
  CONTROL_METHODS,
  LineSplitter,
  MAX_CONTROL_LINE_BYTES,
  ControlError,
  handleControlLine,
  parseControlRequest,
  parseControlResponse,
  parseControlResult,
  parseDaemonPidFile,
  parseWorkerRecords,
  encodeControlRequest,
  type ControlHandler,
  type DaemonStatus,
} from '../../src/protocol/index.js';
import { ProtocolError } from '../../src/errors/index.js';

const status: DaemonStatus = {
  profile: 'p',
  pid: 42,
  startedAt: 1,
  state: 'running',
  supervisor: 'self',
  numberOfWorkers: 1,
  runningProcesses: 0,
  workers: [
    {
      id: 'w1',
      workerId: 'abc-w1-0001',
      pid: 43,
      state: 'ready',
      startedAt: 2,
      restarts: 0,
      memoryRss: 1000,
      cpuPercent: 0.5,
      running: 0,
      slots: 200,
      lastExit: null,
      lastError: null,
      lastLines: [],
    },
  ],
};

function fakeHandler(calls: string[] = []): ControlHandler {
  return {
    status: async () => (calls.push('status'), status),
    daemonInfo: async () => {
      throw new Error('not in this test');
    },
    workerInfo: async () => ({ workers: status.workers }),
    increaseWorkers: async ({ n }) => (calls.push(`incr ${n}`), { numberOfWorkers: 1 + n }),
    decreaseWorkers: async ({ n }) => {
      throw new ControlError('PARAMS_INVALID', `cannot remove ${n} workers: the daemon has 1`);
    },
    restartWorkers: async () => ({ numberOfWorkers: 1, restarted: 1 }),
    stop: async () => ({ stopping: true }),
  };
}

describe('control protocol', () => {
  it('accepts well-formed requests of every method', () => {
    for (const method of CONTROL_METHODS) {
      const params = method === 'increaseWorkers' || method === 'decreaseWorkers' ? { n: 2 } : {};
      const req = parseControlRequest(JSON.parse(encodeControlRequest(7, method, params as never)));
      assert.equal(req.method, method);
      assert.equal(req.id, 7);
      assert.deepEqual(req.params, params);
    }
  });

  it('rejects bad requests with a stable code that says what is wrong', () => {
    const cases: Array<[unknown, string, RegExp]> = [
      [[1, 2], 'PROTOCOL_INVALID', /JSON object/],
      [{ v: 1, method: 'status' }, 'PROTOCOL_INVALID', /'id'/],
      [{ v: 1, id: { x: 1 }, method: 'status' }, 'PROTOCOL_INVALID', /'id'/],
      [{ v: 2, id: 1, method: 'status' }, 'VERSION_UNSUPPORTED', /version 2/],
      [{ v: 1, id: 1, method: 'rm -rf' }, 'METHOD_UNKNOWN', /known methods: status/],
      [{ v: 1, id: 1, method: 'status', params: { x: 1 } }, 'PARAMS_INVALID', /takes no params/],
      [{ v: 1, id: 1, method: 'status', params: 'x' }, 'PARAMS_INVALID', /must be an object/],
      [
        { v: 1, id: 1, method: 'increaseWorkers', params: {} },
        'PARAMS_INVALID',
        /'n' must be an integer from 1 to 256/,
      ],
      [{ v: 1, id: 1, method: 'increaseWorkers', params: { n: 0 } }, 'PARAMS_INVALID', /got 0/],
      [{ v: 1, id: 1, method: 'decreaseWorkers', params: { n: 1.5 } }, 'PARAMS_INVALID', /got 1.5/],
      [{ v: 1, id: 1, method: 'increaseWorkers', params: { n: 1e9 } }, 'PARAMS_INVALID', /from 1 to 256/],
      [
        { v: 1, id: 1, method: 'increaseWorkers', params: { n: 1, force: true } },
        'PARAMS_INVALID',
        /unknown param 'force'/,
      ],
      [{ v: 1, id: 1, method: 'status', extra: 1 }, 'PROTOCOL_INVALID', /unknown request field 'extra'/],
    ];
    for (const [raw, code, re] of cases) {
      assert.throws(
        () => parseControlRequest(raw),
        (err: ControlError) => err.code === code && re.test(err.message),
        JSON.stringify(raw),
      );
    }
  });

  it('answers every line with a response: results, error replies, never a rejection', async () => {
    const calls: string[] = [];
    const h = fakeHandler(calls);
    const ok = await handleControlLine(h, '{"v":1,"id":"a","method":"status"}');
    assert.deepEqual(ok, { v: 1, id: 'a', ok: true, result: status });
    const incr = await handleControlLine(h, '{"v":1,"id":2,"method":"increaseWorkers","params":{"n":3}}');
    assert.deepEqual(incr, { v: 1, id: 2, ok: true, result: { numberOfWorkers: 4 } });
    const notJson = await handleControlLine(h, '{"v":1,');
    assert.ok(notJson !== null && !notJson.ok);
    assert.equal(notJson.id, null);
    assert.equal(notJson.error.code, 'PROTOCOL_INVALID');
    const refused = await handleControlLine(h, '{"v":1,"id":3,"method":"decreaseWorkers","params":{"n":5}}');
    assert.deepEqual(refused, {
      v: 1,
      id: 3,
      ok: false,
      error: { code: 'PARAMS_INVALID', message: 'cannot remove 5 workers: the daemon has 1' },
    });
    const crashed = await handleControlLine(h, '{"v":1,"id":4,"method":"daemonInfo"}');
    assert.deepEqual(crashed, {
      v: 1,
      id: 4,
      ok: false,
      error: { code: 'INTERNAL_ERROR', message: 'not in this test' },
    });
    // The id of an otherwise invalid request is echoed so the client can match the reply.
    const bad = await handleControlLine(h, '{"v":1,"id":5,"method":"nope"}');
    assert.equal(bad?.id, 5);
    // Only the bus method has notifications: any other request without an id is refused.
    const noId = await handleControlLine(h, '{"v":1,"method":"status"}', () => ({}));
    assert.ok(noId !== null && !noId.ok && noId.id === null, JSON.stringify(noId));
    assert.deepEqual(calls, ['status', 'incr 3']);
  });

  it('answers a bus notification (no id) with nothing, and reports one the hub refused', async () => {
    const seen: unknown[] = [];
    const refused: Array<{ code: string; message: string }> = [];
    const bus = (params: unknown): unknown => {
      if ((params as { kind?: unknown }).kind !== 'ack') throw new ProtocolError('unknown bus message kind');
      seen.push(params);
      return {};
    };
    const h = fakeHandler([]);
    const line = (params: unknown): string => JSON.stringify({ v: 1, method: 'bus', params });
    assert.equal(await handleControlLine(h, line({ kind: 'ack', ids: [1] }), bus, (e) => refused.push(e)), null);
    assert.equal(await handleControlLine(h, line({ kind: 'nonsense' }), bus, (e) => refused.push(e)), null);
    assert.deepEqual(seen, [{ kind: 'ack', ids: [1] }]);
    assert.deepEqual(refused, [{ code: 'PARAMS_INVALID', message: 'unknown bus message kind' }]);
    // With an id it is a request, answered as before.
    const answered = await handleControlLine(h, JSON.stringify({ v: 1, id: 9, method: 'bus', params: {} }), bus);
    assert.ok(answered !== null && !answered.ok && answered.id === 9 && answered.error.code === 'PARAMS_INVALID');
  });

  it('validates replies on the client side', () => {
    const r = parseControlResponse(JSON.stringify({ v: 1, id: 'x', ok: true, result: status }));
    assert.equal(r.ok, true);
    assert.deepEqual(parseControlResult('status', r.ok ? r.result : null), status);
    assert.throws(() => parseControlResponse('nope'), /not valid JSON/);
    assert.throws(() => parseControlResponse('{"v":9,"id":1,"ok":true}'), /protocol version 9/);
    assert.throws(() => parseControlResponse('{"v":1,"id":1,"ok":false}'), /neither a result nor a valid error/);
    assert.throws(() => parseControlResult('status', { ...status, pid: 'x' }), /status.pid must be a number/);
    assert.throws(
      () => parseControlResult('status', { ...status, workers: [{ ...status.workers[0], state: 'zombie' }] }),
      /status.workers\[0\].state must be starting\|ready/,
    );
  });

  it('splits lines and catches an oversized line before it is buffered whole', () => {
    const s = new LineSplitter(10);
    assert.deepEqual(s.push(Buffer.from('ab\ncd')), ['ab']);
    assert.deepEqual(s.push(Buffer.from('e\r\n\n')), ['cde', '']);
    assert.equal(s.overflow, false);
    assert.deepEqual(s.push(Buffer.from('0123456789')), []);
    assert.equal(s.overflow, false);
    assert.deepEqual(s.push(Buffer.from('x')), []);
    assert.equal(s.overflow, true);
    assert.equal(s.pendingBytes, 10, 'nothing more is buffered after the overflow');
    const big = new LineSplitter();
    for (let i = 0; i < 10 && !big.overflow; i++) big.push(Buffer.alloc(MAX_CONTROL_LINE_BYTES / 4, 0x61));
    assert.equal(big.overflow, true);
  });

  it('reads PID and worker files defensively', () => {
    assert.deepEqual(parseDaemonPidFile('{"v":1,"pid":12,"start":"99","profile":"p","startedAt":5}'), {
      v: 1,
      pid: 12,
      start: '99',
      profile: 'p',
      startedAt: 5,
    });
    for (const bad of ['', '{', '{"v":1,"pid":-1,"start":"1","profile":"p","startedAt":1}', '{"v":2}', '12345']) {
      assert.equal(parseDaemonPidFile(bad), null, bad);
    }
    assert.deepEqual(parseWorkerRecords('{"v":1,"workers":[{"workerId":"a","pid":3,"start":"7"},{"x":1}]}'), [
      { workerId: 'a', pid: 3, start: '7' },
    ]);
    assert.deepEqual(parseWorkerRecords('garbage'), []);
  });
});
