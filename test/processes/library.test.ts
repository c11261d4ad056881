/**
 * The library's top-level functions as a user's script calls them: they share one connection per
 * profile (its speed is measured by `npm run bench`), and a script ends by itself once its work is
 * done, on either bus, without calling `close()`; `close()` ends it at once.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { REPO_ROOT, cleanupTempDirs, portOpen, requireService } from '../helpers/env.js';
import { makeProfile, type TestProfile } from '../helpers/profile.js';
import { BUSES } from '../helpers/pool.js';

const INDEX = path.join(REPO_ROOT, 'dist', 'src', 'index.js');

for (const bus of BUSES) {
  describe(`library: top-level functions (${bus} bus)`, function () {
    this.timeout(60_000);
    let tp: TestProfile;

    before(async function () {
      if (bus === 'rabbitmq') requireService(this, await portOpen(5672), 'RabbitMQ on 127.0.0.1:5672');
      tp = await makeProfile({ bus });
    });
    after(async () => {
      await tp?.cleanup();
      cleanupTempDirs();
    });

    for (const explicit of [false, true]) {
      it(`a script submitting in a loop ends by itself when done${explicit ? ' (and with close())' : ''}`, () => {
        const script = `
          const { submit, getProcess, close } = await import(${JSON.stringify(INDEX)});
          const ids = [];
          for (let i = 0; i < 50; i++) ids.push(await submit('core.arithmetic.add', { x: i, y: 1 }));
          const p = await getProcess(ids[49]);
          ${explicit ? 'await close();' : ''}
          console.log(JSON.stringify({ ids: new Set(ids).size, state: p.state }));
        `;
        const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
          encoding: 'utf8',
          timeout: 30_000,
          env: { ...process.env, ...tp.env },
        });
        assert.equal(r.status, 0, `${r.stderr} (signal ${r.signal}: a script that does not end is killed after 30 s)`);
        const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { ids: number; state: string };
        assert.equal(out.ids, 50, '50 distinct processes');
        assert.equal(out.state, 'created', 'stored (no daemon runs here)');
      });
    }
  });
}
