/**
 * `drover daemon start|status|incr|decr|restart|logs|stop` as a user runs them (verdi daemon).
 */
import assert from 'node:assert/strict';
import { Config } from '../../src/config/index.js';
import type { DaemonStatus } from '../../src/protocol/index.js';
import { cleanupTempDirs, portOpen, requireService, runCli } from '../helpers/env.js';
import { makeProfile, type TestProfile } from '../helpers/profile.js';
import { clientFor, processesOfHome, stopAndCheckLeaks } from './helpers.js';

interface StatusJson {
  profiles: Array<{
    profile: string;
    running: boolean;
    answer: string;
    message: string | null;
    status: DaemonStatus | null;
    store: { reachable: boolean };
    broker: { reachable: boolean };
    drift: unknown[];
  }>;
}

describe('drover daemon commands', function () {
  this.timeout(120_000);
  let tp: TestProfile;
  const cli = (...args: string[]) => runCli(['daemon', ...args], tp.env);
  const statusJson = (): DaemonStatus => {
    const r = cli('status', '--json');
    assert.equal(r.status, 0, r.stdout + r.stderr);
    return (JSON.parse(r.stdout) as StatusJson).profiles[0]!.status!;
  };

  before(async function () {
    requireService(this, await portOpen(5672), 'RabbitMQ on 127.0.0.1:5672');
    tp = await makeProfile({ name: 'cli-test' });
    // A second profile in the same configuration, never started, for --all.
    const config = Config.load(tp.profile.configFile);
    config.setupProfile('other', {}, { DROVER_HOME: tp.home });
    config.save();
  });

  after(async () => {
    if (tp) await stopAndCheckLeaks(clientFor(tp), tp.home);
    await tp?.cleanup();
    cleanupTempDirs();
  });

  it('status says "not running" with exit code 3 (text and JSON)', () => {
    const r = cli('status');
    assert.equal(r.status, 3);
    assert.match(r.stdout, /The daemon of profile 'cli-test' is not running\./);
    const j = cli('status', '--json');
    assert.equal(j.status, 3);
    const parsed = JSON.parse(j.stdout) as StatusJson;
    const entry = parsed.profiles[0]!;
    assert.deepEqual(
      { ...entry, store: undefined, broker: undefined },
      {
        profile: 'cli-test',
        running: false,
        answer: 'not-running',
        message: "The daemon of profile 'cli-test' is not running.",
        status: null,
        drift: [],
        store: undefined,
        broker: undefined,
      },
    );
    // The store and the broker are probed even when the daemon is down.
    assert.deepEqual([entry.store.reachable, entry.broker.reachable], [true, true]);
    assert.match(r.stdout, /^Store: {2}sqlite:\S+processes\.sqlite \(reachable\)$/m);
    assert.match(r.stdout, /^Broker: amqp:\/\/guest:\*\*\*@127\.0\.0\.1:5672 \(reachable\)$/m);
    for (const verb of ['incr', 'decr', 'restart']) {
      const x = cli(verb);
      assert.equal(x.status, 3, verb);
      assert.match(x.stderr, /not running/);
    }
    assert.equal(cli('stop').status, 0, 'stopping a stopped daemon is fine');
  });

  it('start, status table, incr/decr, restart, logs, stop', () => {
    const start = cli('start', '2');
    assert.equal(start.status, 0, start.stderr);
    assert.match(
      start.stdout,
      /Starting the daemon of profile 'cli-test' with 2 workers\.\.\.\nDaemon started \(pid \d+\)/,
    );
    const again = cli('start');
    assert.equal(again.status, 4, 'already running: exit 4');
    assert.match(again.stderr, /Error: the daemon of profile 'cli-test' is already running \(pid \d+\)/);

    const text = cli('status');
    assert.equal(text.status, 0, text.stderr);
    assert.match(
      text.stdout,
      /Daemon of profile 'cli-test' is (starting|running) \(pid \d+, started [\d:]+, up \d+s, supervisor self\): 2 workers/,
    );
    assert.match(text.stdout, /ID {2}PID +STATE +MEMORY +CPU +STARTED +RESTARTS +RUNNING/);
    assert.match(text.stdout, /\nw1 {2}\d+ /);
    assert.match(text.stdout, /\nw2 {2}\d+ /);

    assert.match(cli('incr').stdout, /now has 3 workers/);
    assert.match(cli('decr', '2').stdout, /now has 1 worker\./);
    const tooMany = cli('decr', '5');
    assert.equal(tooMany.status, 1);
    assert.match(tooMany.stderr, /cannot remove 5 workers: the daemon has 1/);
    for (const bad of ['0', 'x', '257']) {
      const r = cli('incr', bad);
      assert.notEqual(r.status, 0, `incr ${bad}`);
      assert.match(r.stderr, /Error: /);
    }
    assert.equal(statusJson().numberOfWorkers, 1, 'bad input changed nothing');

    const before = statusJson();
    assert.equal(before.numberOfWorkers, 1);
    const restart = cli('restart');
    assert.equal(restart.status, 0, restart.stderr);
    assert.match(restart.stdout, /Restarted the 1 worker of the daemon of profile 'cli-test'/);
    const after = statusJson();
    assert.equal(after.pid, before.pid, 'the daemon itself was not restarted');
    const w1 = after.workers.find((w) => w.id === 'w1' && w.state !== 'draining')!;
    assert.notEqual(w1.pid, before.workers[0]!.pid, 'w1 is a new process');

    const logs = cli('logs', '-n', '3');
    assert.equal(logs.status, 0);
    assert.equal(logs.stdout.trimEnd().split('\n').length, 3);
    const logsJson = JSON.parse(cli('logs', '-n', '5', '--json').stdout) as { file: string; lines: string[] };
    assert.equal(logsJson.lines.length, 5);
    assert.match(logsJson.file, /log\/cli-test\/daemon\.log$/);

    const all = cli('status', '--all');
    assert.equal(all.status, 3, 'one of the two profiles is not running');
    assert.match(all.stdout, /Daemon of profile 'cli-test' is/);
    assert.match(all.stdout, /The daemon of profile 'other' is not running\./);

    const reset = cli('restart', '--reset');
    assert.equal(reset.status, 0, reset.stderr);
    assert.match(reset.stdout, /Daemon of profile 'cli-test' restarted \(pid \d+, 1 worker\)/);
    assert.notEqual(statusJson().pid, before.pid);

    const stop = cli('stop', '--all');
    assert.equal(stop.status, 0, stop.stderr);
    assert.match(stop.stdout, /Daemon of profile 'cli-test' stopped\./);
    assert.match(stop.stdout, /The daemon of profile 'other' is not running\./);
    assert.deepEqual(processesOfHome(tp.home), []);
    assert.equal(cli('status').status, 3);
  });
});
