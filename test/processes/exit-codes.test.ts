/**
 * What a script sees of a process's end (issue 13, must-show 1): `submit --wait` and `process wait`
 * exit 0 only on success and with distinct codes otherwise, control commands of unknown ids fail,
 * the library's waitFor, and the warning when no daemon is there to run a submission.
 */
import assert from 'node:assert/strict';
import type { ProcessClient } from '../../src/api/processes.js';
import { waitFor, verdictOf } from '../../src/api/wait.js';
import { close } from '../../src/api/processes.js';
import { EXIT } from '../../src/cli/exit-codes.js';
import { RABBIT_URL, portOpen, requireService, runCliAsync, cleanupTempDirs } from '../helpers/env.js';
import { makeProfile, type TestProfile } from '../helpers/profile.js';
import { BUSES, startPool, type Pool } from '../helpers/pool.js';

for (const bus of BUSES) {
  describe(`exit codes of waits and control commands (issue 13; ${bus} bus)`, function () {
    this.timeout(60_000);
    let tp: TestProfile;
    let client: ProcessClient;
    let pool: Pool | null = null;

    before(async function () {
      if (bus === 'rabbitmq') requireService(this, await portOpen(5672), `RabbitMQ is not reachable at ${RABBIT_URL}`);
      tp = await makeProfile({ bus });
      client = await tp.openClient();
    });
    afterEach(async () => {
      await pool?.stop();
      pool = null;
    });
    after(async () => {
      await client?.close();
      await close();
      await tp?.cleanup();
      cleanupTempDirs();
    });

    it('submit --wait: 0 when it succeeded, 6 for a non-zero exit status, 7 when it excepted; process wait the worst', async () => {
      pool = await startPool(tp, 1);
      const ok = await runCliAsync(
        ['process', 'submit', 'core.arithmetic.add', '-i', 'x=1', '-i', 'y=2', '--wait'],
        tp.env,
      );
      assert.equal(ok.status, EXIT.OK, ok.stderr);
      assert.match(ok.stdout, /finished \[0\]/);
      assert.doesNotMatch(ok.stderr, /Warning/, 'a daemon or worker is there to run it');
      const failed = await runCliAsync(
        ['process', 'submit', 'test.fail_with', '-i', 'status=3', '--wait', '--json'],
        tp.env,
      );
      assert.equal(failed.status, EXIT.PROCESS_FAILED, failed.stderr);
      const f = JSON.parse(failed.stdout) as { id: number; state: string; exitStatus: number; verdict: string };
      assert.deepEqual([f.state, f.exitStatus, f.verdict], ['finished', 3, 'failed']);
      const threw = await runCliAsync(['process', 'submit', 'test.throws', '--wait'], tp.env);
      assert.equal(threw.status, EXIT.PROCESS_EXCEPTED, threw.stderr);
      assert.match(threw.stdout, /excepted/);
      assert.match(threw.stdout, /boom from test\.throws/);
      const okId = Number(/process (\d+)/.exec(ok.stdout)![1]);
      const threwId = Number(/process (\d+)/.exec(threw.stdout)![1]);
      const w1 = await runCliAsync(['process', 'wait', String(okId)], tp.env);
      assert.equal(w1.status, EXIT.OK, w1.stderr);
      const w2 = await runCliAsync(['process', 'wait', String(okId), String(f.id)], tp.env);
      assert.equal(w2.status, EXIT.PROCESS_FAILED, w2.stderr);
      const w3 = await runCliAsync(['process', 'wait', String(okId), String(threwId), String(f.id), '--json'], tp.env);
      assert.equal(w3.status, EXIT.PROCESS_EXCEPTED, w3.stderr);
      const rows = (JSON.parse(w3.stdout) as { processes: Array<{ id: number; verdict: string }> }).processes;
      assert.deepEqual(
        rows.map((r) => [r.id, r.verdict]),
        [
          [okId, 'succeeded'],
          [threwId, 'excepted'],
          [f.id, 'failed'],
        ],
      );
      const killedId = await client.submit('core.sleep', { seconds: 60 });
      const k = await runCliAsync(['process', 'kill', String(killedId)], tp.env);
      assert.equal(k.status, EXIT.OK, k.stderr);
      const w4 = await runCliAsync(['process', 'wait', String(killedId)], tp.env);
      assert.equal(w4.status, EXIT.PROCESS_EXCEPTED, 'killed counts as not succeeded');
      assert.match(w4.stdout, /killed/);
    });

    it('process wait --timeout exits 5 and leaves the process running; unknown ids exit 1', async () => {
      pool = await startPool(tp, 1);
      const id = await client.submit('core.sleep', { seconds: 30 });
      const w = await runCliAsync(['process', 'wait', String(id), '--timeout', '1'], tp.env);
      assert.equal(w.status, EXIT.TIMED_OUT, w.stderr);
      assert.match(w.stderr, new RegExp(`process\\(es\\) ${id}`));
      assert.notEqual((await client.getProcess(id)).state, 'killed');
      const missing = await runCliAsync(['process', 'wait', '99999'], tp.env);
      assert.equal(missing.status, EXIT.FAILED);
      assert.match(missing.stderr, /no process with id 99999/);
      for (const action of ['kill', 'pause', 'play']) {
        const r = await runCliAsync(['process', action, '99999'], tp.env);
        assert.equal(r.status, EXIT.FAILED, `process ${action} 99999`);
        assert.match(r.stdout, /99999\s+not found/);
      }
      await client.submit('core.arithmetic.add', { x: 0, y: 0 }); // the queue is not left to the next test
      await runCliAsync(['process', 'kill', String(id)], tp.env);
    });

    it('the library: waitFor(id | ids, { profile, timeout }) returns the records; verdictOf tells how they ended', async () => {
      pool = await startPool(tp, 1);
      const a = await client.submit('core.arithmetic.add', { x: 2, y: 3 });
      const b = await client.submit('test.fail_with', { status: 4 });
      const one = await waitFor(a, { profile: tp.profile, timeout: 30 });
      assert.deepEqual([one.id, one.state, one.outputs], [a, 'finished', { sum: 5 }]);
      const both = await waitFor([a, b], { profile: tp.profile });
      assert.deepEqual(
        both.map((p) => [p.id, verdictOf(p)]),
        [
          [a, 'succeeded'],
          [b, 'failed'],
        ],
      );
      const slow = await client.submit('core.sleep', { seconds: 30 });
      await assert.rejects(waitFor(slow, { profile: tp.profile, timeout: 0.5 }), {
        name: 'WaitTimeoutError',
        message: new RegExp(`process\\(es\\) ${slow}`),
      });
      await client.submit('core.arithmetic.add', { x: 0, y: 0 });
      await runCliAsync(['process', 'kill', String(slow)], tp.env);
      // Many at once (more than one store read's worth), some done before the wait began.
      const many = await client.submitMany(
        'core.arithmetic.add',
        Array.from({ length: 2500 }, (_, i) => ({ x: i, y: 1 })),
      );
      await waitFor(many.slice(0, 10), { profile: tp.profile });
      const all = await waitFor([...many].reverse(), { profile: tp.profile, timeout: 60 });
      assert.deepEqual(
        all.map((p) => [p.id, p.state, (p.outputs as { sum: number }).sum]),
        [...many].reverse().map((id, i) => [id, 'finished', 2500 - i]),
      );
      await assert.rejects(waitFor([a, 999_999], { profile: tp.profile }), { name: 'ProcessNotFoundError' });
    });

    it('with nothing to run it: submit warns once on stderr, stores the process, and --wait --timeout exits 5', async () => {
      const r = await runCliAsync(['process', 'submit', 'core.arithmetic.add', '-i', 'x=1', '-i', 'y=1'], tp.env);
      assert.equal(r.status, EXIT.OK, r.stderr);
      const warnings = r.stderr.match(/Warning: .*/g) ?? [];
      assert.equal(warnings.length, 1, r.stderr);
      assert.match(
        warnings[0]!,
        bus === 'local'
          ? /no daemon of profile 'test' is running: the process is stored and runs when one starts \(drover daemon start --profile test\)/
          : /no worker of profile 'test' is consuming its tasks/,
      );
      const id = Number(/process (\d+)/.exec(r.stdout)![1]);
      assert.equal((await client.getProcess(id)).state, 'created');
      const w = await runCliAsync(
        ['process', 'submit', 'core.arithmetic.add', '-i', 'x=1', '-i', 'y=1', '--wait', '--timeout', '1'],
        tp.env,
      );
      assert.equal(w.status, EXIT.TIMED_OUT);
      assert.equal((w.stderr.match(/Warning: /g) ?? []).length, 1, w.stderr);
      // Once a daemon or worker runs, the stored processes run.
      pool = await startPool(tp, 1);
      const done = await runCliAsync(['process', 'wait', String(id), String(id + 1), '--timeout', '30'], tp.env);
      assert.equal(done.status, EXIT.OK, done.stderr + done.stdout);
    });
  });
}
