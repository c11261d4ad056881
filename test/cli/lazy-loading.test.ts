/**
 * What a command loads: on a profile with the local bus and a SQLite store, no command and no
 * `import 'drover'` loads `pg` or `amqplib` (together a quarter of a second of start-up); a
 * RabbitMQ profile's `process submit` does load amqplib. Recorded with a `--require` hook that lists
 * the CommonJS modules Node loaded (pg, amqplib and better-sqlite3 are CommonJS packages, also when
 * imported from ES modules) when the process exits.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { CLI, REPO_ROOT, RABBIT_URL, cleanupTempDirs, portOpen, requireService, tempDir } from '../helpers/env.js';

let probe: string;
let home: string;

/** Runs node with the probe; returns the packages of interest it loaded and the exit code. */
function loaded(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): { packages: string[]; status: number | null; out: string } {
  const report = path.join(tempDir('drover-probe-'), 'loaded.json');
  const r = spawnSync(process.execPath, ['--require', probe, ...args], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, DROVER_HOME: home, DROVER_PROFILE: '', PROBE_OUT: report, ...env },
  });
  const packages = fs.existsSync(report) ? (JSON.parse(fs.readFileSync(report, 'utf8')) as string[]) : [];
  return { packages, status: r.status, out: r.stdout + r.stderr };
}

describe('cli: what commands load', function () {
  this.timeout(60_000);

  before(() => {
    home = tempDir('drover-lazy-home-');
    probe = path.join(tempDir('drover-probe-'), 'probe.cjs');
    // Records which of the heavy drivers were loaded, when the process exits.
    fs.writeFileSync(
      probe,
      `process.on('exit', () => {
  const seen = new Set();
  for (const file of Object.keys(require('module')._cache)) {
    const m = /node_modules\\/(pg|amqplib|better-sqlite3)\\//.exec(file);
    if (m) seen.add(m[1]);
  }
  require('fs').writeFileSync(process.env.PROBE_OUT, JSON.stringify([...seen].sort()));
});
`,
    );
    const r = spawnSync(process.execPath, [CLI, 'profile', 'setup', 'loc'], {
      encoding: 'utf8',
      env: { ...process.env, DROVER_HOME: home },
    });
    assert.equal(r.status, 0, r.stderr);
  });
  after(() => cleanupTempDirs());

  for (const args of [['--version'], ['daemon', 'status'], ['process', 'list'], ['status'], ['profile', 'show']]) {
    it(`drover ${args.join(' ')} on a local SQLite profile loads neither pg nor amqplib`, () => {
      const r = loaded([CLI, ...args]);
      assert.ok(r.status === 0 || r.status === 3, r.out);
      assert.deepEqual(
        r.packages.filter((p) => p !== 'better-sqlite3'),
        [],
        `loaded ${r.packages.join(', ')}`,
      );
    });
  }

  it("drover process submit on a local SQLite profile loads better-sqlite3 only; import 'drover' loads none", () => {
    const s = loaded([CLI, 'process', 'submit', 'core.arithmetic.add', '-i', 'x=1', '-i', 'y=2']);
    assert.equal(s.status, 0, s.out);
    assert.deepEqual(s.packages, ['better-sqlite3']);
    const lib = loaded([
      '--input-type=module',
      '-e',
      `await import(${JSON.stringify(path.join(REPO_ROOT, 'dist', 'src', 'index.js'))});`,
    ]);
    assert.equal(lib.status, 0, lib.out);
    assert.deepEqual(lib.packages, []);
  });

  it('a RabbitMQ profile does load amqplib to submit (the probe sees what it should)', async function () {
    requireService(this, await portOpen(5672), 'RabbitMQ on 127.0.0.1:5672');
    const setup = spawnSync(process.execPath, [CLI, 'profile', 'setup', 'rmq', '--broker-url', RABBIT_URL], {
      encoding: 'utf8',
      env: { ...process.env, DROVER_HOME: home },
    });
    assert.equal(setup.status, 0, setup.stderr);
    const r = loaded([CLI, 'process', 'submit', 'core.arithmetic.add', '-i', 'x=1', '-i', 'y=2', '-p', 'rmq']);
    assert.equal(r.status, 0, r.out);
    assert.ok(r.packages.includes('amqplib'), `loaded ${r.packages.join(', ')}`);
  });
});
