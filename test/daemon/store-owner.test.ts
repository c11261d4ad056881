/**
 * Issue 11: a daemon whose store belongs to another profile (the file was copied from it) consumes
 * nothing: its workers refuse to start, saying why, the daemon logs the refusal at ERROR once and
 * stays up, and a process in that store is not run; the profile's clients refuse the store too.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { DaemonClient } from '../../src/client/index.js';
import { logDir } from '../../src/config/index.js';
import { DAEMON_LOG_FILE, type WorkerInfo } from '../../src/protocol/index.js';
import { openStore } from '../../src/store/index.js';
import { cleanupTempDirs, tempDir } from '../helpers/env.js';
import { makeProfile, waitUntil, type TestProfile } from '../helpers/profile.js';
import { clientFor, stopAndCheckLeaks } from './helpers.js';

describe('a daemon on a store of another profile (issue 11)', function () {
  this.timeout(90_000);
  let tp: TestProfile;
  let client: DaemonClient | null = null;
  const owner = { name: 'the-real-one', uuid: crypto.randomUUID() };

  before(async () => {
    const file = path.join(tempDir(), 'copied.sqlite');
    const s = await openStore({ backend: 'sqlite', path: file }, { profile: owner });
    await s.close();
    tp = await makeProfile({
      name: 'copycat',
      bus: 'local',
      sqlitePath: file,
      options: { 'daemon.worker_restart_backoff': { initial: 0.2, max: 1, factor: 2 } },
    });
  });

  after(async () => {
    await stopAndCheckLeaks(client, tp.home);
    await tp?.cleanup();
    cleanupTempDirs();
  });

  it('its workers refuse to consume, the daemon says why at ERROR and runs nothing', async () => {
    client = clientFor(tp);
    await client.startDaemon({ numberWorkers: 1 });
    const failed = (await waitUntil(
      async () => {
        const w = (await client!.getWorkerInfo())[0];
        return w && w.lastError !== null ? w : null;
      },
      30_000,
      'the worker to report its refusal',
      100,
    )) as WorkerInfo;
    assert.match(
      failed.lastError ?? '',
      new RegExp(
        `belongs to profile '${owner.name}' \\(uuid ${owner.uuid}\\), not to profile 'copycat' ` +
          `\\(uuid ${tp.profile.uuid}\\); refusing to consume`,
      ),
    );
    // The profile's clients refuse the store too (nothing is written through them) ...
    await assert.rejects(tp.openClient(), /belongs to profile 'the-real-one'.*refusing to use it/s);
    // ... and a process already in it (the owner's) is not run by this daemon.
    const raw = await openStore(tp.profile.storage);
    let id: number;
    try {
      [id] = (await raw.createProcesses([
        { type: 'core.arithmetic.add', inputs: { x: 1, y: 2 }, label: null, parentId: null },
      ])) as [number];
      await new Promise((r) => setTimeout(r, 3000));
      assert.equal((await raw.getProcess(id))!.state, 'created', 'nothing ran it');
    } finally {
      await raw.close();
    }
    const log = fs.readFileSync(path.join(logDir(tp.name, tp.env), DAEMON_LOG_FILE), 'utf8');
    const daemonLines = log.split('\n').filter((l) => / ERROR /.test(l) && l.includes('refusing to consume'));
    assert.ok(daemonLines.length >= 1, log);
    // The daemon's own refusal (its hub polls the store every second) is logged once, not per poll.
    const hubLines = daemonLines.filter((l) => !/ \[(w\d+ \d+|supervisor)\] /.test(l));
    assert.equal(hubLines.length, 1, hubLines.join('\n'));
    assert.match(hubLines[0]!, /^\S+ ERROR \[[^\]]*\] store sqlite:.* belongs to profile 'the-real-one'/);
    // The store still belongs to its profile.
    const s = await openStore(tp.profile.storage);
    try {
      assert.equal((await s.storeProfile())!.uuid, owner.uuid);
    } finally {
      await s.close();
    }
  });
});
