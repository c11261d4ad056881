/**
 * Limits of values (issue 9, must-show 8, first half): inputs have a maximum depth and size that
 * every submission path checks, naming the limit, also for values far past any stack (100,000
 * levels); a step result or outputs past the limits fail that process clearly, not the worker.
 * Real RabbitMQ, real SQLite, real `drover daemon worker` processes and the real CLI.
 */
import assert from 'node:assert/strict';
import { ProcessClient } from '../../src/api/processes.js';
import { waitForProcesses } from '../../src/api/control.js';
import { JsonLimitError } from '../../src/errors/index.js';
import { INPUT_LIMITS, MAX_JSON_DEPTH, RESULT_LIMITS, type JsonValue } from '../../src/protocol/index.js';
import { cleanupTempDirs, portOpen, requireService, runCliAsync, tempDir } from '../helpers/env.js';
import {
  countRuns,
  makeProfile,
  startWorker,
  stopWorkers,
  type TestProfile,
  type WorkerProc,
} from '../helpers/profile.js';
import path from 'node:path';

/** An array nested `depth` levels deep, built without recursion. */
function nested(depth: number): JsonValue {
  let v: JsonValue = [];
  for (let i = 1; i < depth; i++) v = [v];
  return v;
}

const MiB = 1024 * 1024;

describe('limits of inputs, outputs and step results (issue 9, point 8)', function () {
  this.timeout(120_000);
  let tp: TestProfile;
  let client: ProcessClient;
  let workers: WorkerProc[] = [];
  let runs: string;

  before(async function () {
    requireService(this, await portOpen(5672), 'RabbitMQ on 127.0.0.1:5672');
    tp = await makeProfile({ name: 'limits' });
    client = await ProcessClient.open(tp.profile);
    runs = path.join(tempDir(), 'runs');
  });

  afterEach(async () => {
    await stopWorkers(workers);
    workers = [];
  });

  after(async () => {
    await client?.close();
    await tp?.cleanup();
    cleanupTempDirs();
  });

  const depthRefusal = (type: string): RegExp =>
    new RegExp(`inputs of '${type.replace(/\./g, '\\.')}' nest deeper than the limit of ${MAX_JSON_DEPTH} levels`);

  it('refuses 100,000-deep inputs at submit, naming the depth limit, and stores nothing', async () => {
    const deep = nested(100_000);
    // A built-in type whose own input check would recurse, and a type without one.
    for (const type of ['core.arithmetic.add', 'test.record_add']) {
      await assert.rejects(client.submit(type, deep), (err: Error) => {
        assert.ok(err instanceof JsonLimitError, `${type}: ${err.name}: ${err.message}`);
        assert.equal(err.code, 'JSON_LIMIT_EXCEEDED');
        assert.match(err.message, depthRefusal(type));
        return true;
      });
    }
    // One bad item refuses the whole batch.
    await assert.rejects(
      client.submitMany('test.record_add', [
        { x: 1, y: 2, file: runs },
        { x: 1, y: 2, file: runs, deep },
      ]),
      depthRefusal('test.record_add'),
    );
    assert.deepEqual(await client.listProcesses({}), []);

    // The CLI says the same (an argument holds at most 128 KiB, so 60,000 levels).
    const r = await runCliAsync(
      ['process', 'submit', 'core.arithmetic.add', '--inputs', '['.repeat(60_000) + ']'.repeat(60_000), '--json'],
      tp.env,
    );
    assert.equal(r.status, 1, r.stdout + r.stderr);
    const out = JSON.parse(r.stdout) as { error: { code: string; message: string } };
    assert.equal(out.error.code, 'JSON_LIMIT_EXCEEDED');
    assert.match(out.error.message, depthRefusal('core.arithmetic.add'));
    assert.deepEqual(await client.listProcesses({}), []);
  });

  it('accepts inputs exactly at the depth limit and refuses one level more', async () => {
    // An object holding 63 nested arrays: 64 levels.
    const atLimit = { x: 1, y: 2, file: runs, pad: nested(MAX_JSON_DEPTH - 1) };
    const [id] = await client.submitMany('test.record_add', [atLimit]);
    const stored = await client.getProcess(id!);
    assert.deepEqual(stored.inputs, atLimit);
    await assert.rejects(
      client.submit('test.record_add', { ...atLimit, pad: nested(MAX_JSON_DEPTH) }),
      depthRefusal('test.record_add'),
    );
    workers = [await startWorker(tp)];
    await waitForProcesses(client, [id!], { timeoutSeconds: 60 });
    assert.equal((await client.getProcess(id!)).state, 'finished');
    assert.equal(countRuns(runs).get(id!), 1);
  });

  it('refuses inputs over 16 MiB of JSON text, naming the size limit', async () => {
    const before = (await client.listProcesses({})).length;
    assert.equal(INPUT_LIMITS.maxBytes, 16 * MiB);
    const sizeRefusal = /inputs of 'test\.record_add' are larger than the limit of 16 MiB of JSON text/;
    // Plainly too long, and too long only once escaped (each \u0001 takes 6 bytes in JSON).
    for (const pad of ['x'.repeat(16 * MiB), '\u0001'.repeat(3 * MiB)]) {
      await assert.rejects(client.submit('test.record_add', { x: 1, y: 2, file: runs, pad }), (err: Error) => {
        assert.ok(err instanceof JsonLimitError, err.message);
        assert.match(err.message, sizeRefusal);
        return true;
      });
    }
    assert.equal((await client.listProcesses({})).length, before, 'nothing stored');
  });

  it('a step result or outputs past the limits fail that process clearly; the worker runs on', async () => {
    workers = [await startWorker(tp)];
    const cases: Array<[JsonValue, RegExp]> = [
      [
        { depth: 100_000, where: 'step' },
        /the result of step 'produce' nests deeper than the limit of 64 levels of arrays and objects/,
      ],
      [
        { depth: MAX_JSON_DEPTH + 1, where: 'outputs' },
        /the outputs of process 'test\.big_value' nest deeper than the limit of 64 levels/,
      ],
      [
        { bytes: RESULT_LIMITS.maxBytes + 1, where: 'outputs' },
        /the outputs of process 'test\.big_value' are larger than the limit of 64 MiB of JSON text/,
      ],
      [
        { bytes: RESULT_LIMITS.maxBytes + 1, where: 'step' },
        /the result of step 'produce' is larger than the limit of 64 MiB of JSON text/,
      ],
    ];
    const ids: number[] = [];
    for (const [inputs] of cases) ids.push(await client.submit('test.big_value', inputs));
    const after = await client.submit('test.record_add', { x: 2, y: 3, file: runs });
    await waitForProcesses(client, [...ids, after], { timeoutSeconds: 90 });
    for (let i = 0; i < cases.length; i++) {
      const p = await client.getProcess(ids[i]!);
      assert.equal(p.state, 'excepted', `case ${i}: ${p.state}`);
      assert.match(p.exception ?? '', cases[i]![1], `case ${i}`);
    }
    const ok = await client.getProcess(after);
    assert.equal(ok.state, 'finished');
    assert.deepEqual(ok.outputs, { sum: 5 });
    assert.equal(workers[0]!.child.exitCode, null, 'the worker is still running');
    assert.doesNotMatch(workers[0]!.output(), /outcome\(s\) failed|RangeError|Maximum call stack/);
  });
});
