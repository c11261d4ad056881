/**
 * The daemon's environment record (issue 12, point 4): `daemon status` warns when a process module
 * of the running daemon changed on disk, or an option that needs a restart changed in the
 * configuration, and the warning is gone after the restart that picks the change up.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT, cleanupTempDirs, portOpen, requireService, runCliAsync, tempDir } from '../helpers/env.js';
import { FIXTURE_MODULE, makeProfile, type TestProfile } from '../helpers/profile.js';
import { clientFor, stopAndCheckLeaks } from '../daemon/helpers.js';
import type { DaemonStatusResult } from '../../src/cli/daemon-status.js';

describe('cli: daemon status and what the running daemon loaded', function () {
  this.timeout(120_000);
  let tp: TestProfile;
  let moduleFile: string;
  const status = async (): Promise<{ warnings: string[]; result: DaemonStatusResult }> => {
    const text = await runCliAsync(['daemon', 'status'], tp.env);
    assert.equal(text.status, 0, text.stderr);
    const json = await runCliAsync(['daemon', 'status', '--json'], tp.env);
    assert.equal(json.status, 0, json.stderr);
    return {
      warnings: text.stderr.split('\n').filter((l) => l.startsWith('Warning: ')),
      result: JSON.parse(json.stdout) as DaemonStatusResult,
    };
  };

  before(async function () {
    requireService(this, await portOpen(5672), 'RabbitMQ on 127.0.0.1:5672');
    // A module of our own, in a directory of our own, so the test can change it.
    const dir = tempDir('drover-modules-');
    moduleFile = path.join(dir, 'processes.js');
    const api = pathToFileURL(path.join(REPO_ROOT, 'dist', 'src', 'index.js')).href;
    fs.writeFileSync(moduleFile, fs.readFileSync(FIXTURE_MODULE, 'utf8').replace("'../../src/index.js'", `'${api}'`));
    tp = await makeProfile({
      name: 'env-record',
      options: { 'processes.modules': [moduleFile], 'daemon.default_workers': 1, 'daemon.shutdown_grace': 2 },
    });
    await clientFor(tp).startDaemon();
  });
  after(async () => {
    if (tp) await stopAndCheckLeaks(clientFor(tp), tp.home);
    await tp?.cleanup();
    cleanupTempDirs();
  });

  it('records version, node, options and the module files it loaded', async () => {
    const { warnings, result } = await status();
    assert.deepEqual(warnings, []);
    const env = result.profiles[0]!.status!.environment!;
    assert.equal(env.node, process.version);
    assert.equal(env.options['daemon.shutdown_grace'], 2);
    const st = fs.statSync(moduleFile);
    assert.deepEqual(env.modules, [{ spec: moduleFile, path: moduleFile, mtimeMs: st.mtimeMs, size: st.size }]);
    assert.deepEqual(result.profiles[0]!.drift, []);
  });

  it('a module changed on disk: warns; after daemon restart the warning is gone', async () => {
    fs.appendFileSync(moduleFile, '\n// changed by the test\n');
    const { warnings, result } = await status();
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(
      warnings[0]!,
      new RegExp(
        `^Warning: process module ${moduleFile.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} changed since the workers imported it ` +
          '\\(then: modified .*, \\d+ bytes; now: modified .*, \\d+ bytes\\); restart to pick it up: drover daemon restart$',
      ),
    );
    assert.deepEqual(
      result.profiles[0]!.drift.map((d) => [d.kind, d.name, d.restart]),
      [['module', moduleFile, 'restart']],
    );
    const r = await runCliAsync(['daemon', 'restart'], tp.env);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual((await status()).warnings, []);
  });

  it('an option that needs a restart changed: warns until the daemon itself restarts (--reset)', async () => {
    tp.setOption('daemon.shutdown_grace', 3);
    const { warnings } = await status();
    assert.deepEqual(warnings, [
      'Warning: daemon.shutdown_grace is 3 in the configuration, but the daemon started with 2; restart to pick it ' +
        'up: drover daemon restart --reset',
    ]);
    // Restarting the workers does not change what the daemon itself runs with.
    assert.equal((await runCliAsync(['daemon', 'restart'], tp.env)).status, 0);
    assert.equal((await status()).warnings.length, 1);
    const reset = await runCliAsync(['daemon', 'restart', '--reset'], tp.env);
    assert.equal(reset.status, 0, reset.stderr);
    assert.deepEqual((await status()).warnings, []);
  });
});
