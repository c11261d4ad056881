/**
 * Against a REAL systemd user manager (test/helpers/systemd.ts): `drover daemon install` and
 * `uninstall` as a user runs them, and the rendered unit's semantics (Type=notify readiness,
 * quoting of odd paths, DROVER_HOME, restart on a crash, start at login) with a stand-in daemon
 * until the real one exists.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { CLI, REPO_ROOT, cleanupTempDirs, tempDir, waitUntil } from '../helpers/env.js';
import { sdNotifyAddonProblem } from '../../src/daemon/notify.js';
import { requireUserManager, type UserManager } from '../helpers/systemd.js';
import { Config, configFilePath } from '../../src/config/index.js';
import type { ServiceManagerLookup } from '../../src/client/service-manager.js';
import {
  checkInstalledUnit,
  findInstalledServiceManager,
  installSystemdService,
  installedSupervisor,
  runSupervisorAction,
  uninstallSystemdService,
  type CommandRunner,
  type ServiceActionResult,
} from '../../src/service/index.js';

/** Recursive listing with contents: what "touches nothing" compares. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    if (!fs.existsSync(d)) return;
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isSymbolicLink()) out[p] = `-> ${fs.readlinkSync(p)}`;
      else if (e.isDirectory()) walk(p);
      else out[p] = fs.readFileSync(p, 'utf8');
    }
  };
  walk(dir);
  return out;
}

describe('systemd user service (real user manager)', function () {
  this.timeout(60_000);
  let um: UserManager;
  let droverHome: string;
  let nsRun: CommandRunner;
  let env: NodeJS.ProcessEnv;

  before(async function () {
    um = await requireUserManager(this);
    droverHome = tempDir('drover-home-');
    env = { ...process.env, ...um.env, DROVER_HOME: droverHome };
    const config = Config.load(configFilePath({ DROVER_HOME: droverHome }));
    for (const name of ['alpha', 'my-profile.v2', 'dry-run'])
      config.setupProfile(name, {}, { DROVER_HOME: droverHome });
    config.save();
    nsRun = (file, args) => um.run(file, args);
  });
  after(async () => {
    await um?.stop();
    cleanupTempDirs();
  });

  const drover = (...args: string[]): ReturnType<UserManager['drover']> => um.drover(args, { DROVER_HOME: droverHome });

  it('daemon install --enable: the unit is written, enabled and shown by systemctl cat', async () => {
    const r = await drover('daemon', 'install', '--enable', '-p', 'alpha');
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /Installed drover@alpha\.service \(systemd user unit\) for profile 'alpha'/);
    assert.match(
      r.stdout,
      /Equivalent manual commands[^\n]*\n {2}systemctl --user daemon-reload\n {2}systemctl --user enable drover@alpha\.service/,
    );
    assert.ok(fs.existsSync(path.join(um.unitDir, 'drover@.service')));
    const en = await um.systemctl('is-enabled', 'drover@alpha.service');
    assert.equal(en.stdout.trim(), 'enabled', en.stderr);
    const cat = await um.systemctl('cat', 'drover@alpha.service');
    assert.equal(cat.status, 0, cat.stderr);
    assert.ok(cat.stdout.includes(`# ${path.join(um.unitDir, 'drover@.service')}`), cat.stdout);
    assert.ok(cat.stdout.includes(`# ${path.join(um.unitDir, 'drover@alpha.service.d', 'drover.conf')}`), cat.stdout);
    assert.match(cat.stdout, /Type=notify/);
    // What the manager made of it: the real node and CLI, the profile unescaped, our DROVER_HOME.
    const show = await um.systemctl(
      'show',
      'drover@alpha.service',
      '-p',
      'ExecStart',
      '-p',
      'Environment',
      '-p',
      'TimeoutStopUSec',
      '-p',
      'NotifyAccess',
      '-p',
      'KillMode',
    );
    assert.ok(
      show.stdout.includes(`argv[]=${process.execPath} ${CLI} daemon start --foreground --profile alpha ;`),
      show.stdout,
    );
    assert.match(show.stdout, new RegExp(`^Environment=DROVER_HOME=${droverHome}$`, 'm'));
    assert.match(show.stdout, /^TimeoutStopUSec=45s$/m);
    // main with the sd-notify module; all when the daemon has to notify through systemd-notify.
    assert.match(show.stdout, new RegExp(`^NotifyAccess=${sdNotifyAddonProblem() === null ? 'main' : 'all'}$`, 'm'));
    assert.match(show.stdout, /^KillMode=mixed$/m);

    const check = await checkInstalledUnit('alpha', { env, run: nsRun });
    assert.deepEqual(
      [check.installed, check.enabled, check.active, check.nodePath, check.cliPath, check.droverHome, check.problems],
      [true, true, false, process.execPath, CLI, droverHome, []],
    );
  });

  it('a profile named my-profile.v2 installs as the escaped instance drover@my\\x2dprofile.v2', async () => {
    const r = await drover('daemon', 'install', '--enable', '-p', 'my-profile.v2', '--json');
    assert.equal(r.status, 0, r.stderr);
    const res = JSON.parse(r.stdout) as ServiceActionResult;
    assert.equal(res.unit, 'drover@my\\x2dprofile.v2.service');
    assert.deepEqual(
      res.commands.map((c) => [c.argv.slice(1).join(' '), c.status]),
      [
        ['--user daemon-reload', 0],
        ['--user enable drover@my\\x2dprofile.v2.service', 0],
      ],
    );
    const en = await um.systemctl('is-enabled', 'drover@my\\x2dprofile.v2.service');
    assert.equal(en.stdout.trim(), 'enabled');
    const show = await um.systemctl('show', 'drover@my\\x2dprofile.v2.service', '-p', 'ExecStart');
    assert.match(show.stdout, /--profile my-profile\.v2 ;/);
    assert.ok(
      fs.lstatSync(path.join(um.unitDir, 'default.target.wants', 'drover@my\\x2dprofile.v2.service')).isSymbolicLink(),
    );
  });

  it('--dry-run prints the unit and the commands and touches nothing', async () => {
    const before = { units: snapshot(um.unitDir), home: snapshot(droverHome) };
    const listBefore = await um.systemctl('list-unit-files', '--no-legend', 'drover@*');
    const r = await drover('daemon', 'install', '--enable', '--now', '--dry-run', '-p', 'dry-run');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^Dry run: would install drover@dry\\x2drun\.service/);
    assert.match(r.stdout, /ExecStart=".*" ".*drover\.js" daemon start --foreground --profile %I/);
    assert.match(
      r.stdout,
      /Would run:\n {2}systemctl --user daemon-reload\n {2}systemctl --user enable 'drover@dry\\x2drun\.service'\n {2}systemctl --user start/,
    );
    const u = await drover('daemon', 'uninstall', '--dry-run', '-p', 'alpha');
    assert.equal(u.status, 0, u.stderr);
    assert.match(u.stdout, /would remove .*drover@alpha\.service\.d/);
    assert.deepEqual({ units: snapshot(um.unitDir), home: snapshot(droverHome) }, before);
    assert.equal((await um.systemctl('list-unit-files', '--no-legend', 'drover@*')).stdout, listBefore.stdout);
    assert.equal((await um.systemctl('is-enabled', 'drover@alpha.service')).stdout.trim(), 'enabled');
  });

  it('uninstall keeps the template for the other profile, removes it with the last, and succeeds twice', async () => {
    const a = await drover('daemon', 'uninstall', '-p', 'alpha');
    assert.equal(a.status, 0, a.stderr);
    assert.match(a.stdout, /kept {4}.*drover@\.service \(still used by profile 'my-profile\.v2'\)/);
    assert.notEqual((await um.systemctl('is-enabled', 'drover@alpha.service')).stdout.trim(), 'enabled');
    assert.equal((await um.systemctl('is-enabled', 'drover@my\\x2dprofile.v2.service')).stdout.trim(), 'enabled');

    for (let i = 0; i < 2; i++) {
      const r = await drover('daemon', 'uninstall', '-p', 'my-profile.v2');
      assert.equal(r.status, 0, `uninstall #${i + 1}: ${r.stderr}`);
    }
    assert.equal(fs.existsSync(path.join(um.unitDir, 'drover@.service')), false);
    const wants = path.join(um.unitDir, 'default.target.wants');
    assert.deepEqual(fs.existsSync(wants) ? fs.readdirSync(wants) : [], [], 'enablement links left behind');
    const en = await um.systemctl('is-enabled', 'drover@my\\x2dprofile.v2.service');
    assert.notEqual(en.status, 0);
    // systemd 252 says "No such file or directory" on stderr, newer ones "not-found" on stdout.
    assert.match(en.stdout + en.stderr, /not-found|No such file/);
    const again = await drover('daemon', 'uninstall', '-p', 'alpha');
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stdout, /nothing was installed for profile 'alpha'/);
  });

  describe('the unit runs a notify daemon (stand-in for drover daemon start --foreground)', () => {
    let dir: string;
    let fakeCli: string;
    let home: string;
    let runEnv: NodeJS.ProcessEnv;
    const profile = 'fake-d.1';
    const unit = 'drover@fake\\x2dd.1.service';

    before(() => {
      dir = tempDir('drover-fake-');
      // Paths that need every kind of quoting in a unit file.
      fakeCli = path.join(dir, `cli "q" \\b $HOME %i & x`, 'drover.js');
      home = path.join(dir, 'home $USER %h');
      fs.mkdirSync(path.dirname(fakeCli), { recursive: true });
      fs.mkdirSync(home);
      // drover's own notifier: the sd-notify module when it is built, else systemd-notify (the unit
      // gets NotifyAccess=all then), so the stand-in works on a machine without libsystemd-dev.
      const notifyModule = pathToFileURL(path.join(REPO_ROOT, 'dist', 'src', 'daemon', 'notify.js')).href;
      fs.writeFileSync(
        fakeCli,
        `const fs = require('fs');
const log = (o) => fs.appendFileSync(process.env.DROVER_HOME + '/fake.jsonl', JSON.stringify(o) + '\\n');
log({ pid: process.pid, script: process.argv[1], args: process.argv.slice(2), droverHome: process.env.DROVER_HOME, watchdogUsec: process.env.WATCHDOG_USEC });
const quiet = { debug() {}, info() {}, warn() {}, error() {}, child() { return quiet; } };
import(${JSON.stringify(notifyModule)}).then(({ createNotifier }) => {
  const notify = createNotifier(quiet);
  setTimeout(() => notify.ready('fake daemon: 0 workers'), 300);
  const t = setInterval(() => notify.watchdog(), 500);
  process.on('SIGTERM', () => { clearInterval(t); log({ stopped: process.pid }); process.exit(0); });
});
`,
      );
      runEnv = { ...env, DROVER_HOME: home };
    });

    const records = (): Array<Record<string, unknown>> =>
      fs.existsSync(path.join(home, 'fake.jsonl'))
        ? fs
            .readFileSync(path.join(home, 'fake.jsonl'), 'utf8')
            .trim()
            .split('\n')
            .map((l) => JSON.parse(l) as Record<string, unknown>)
        : [];
    const prop = async (p: string): Promise<string> =>
      (await um.systemctl('show', unit, '-p', p, '--value')).stdout.trim();

    it('--now starts it: active only after READY=1, with the odd paths, %I and DROVER_HOME intact', async () => {
      await installSystemdService({
        profile,
        unit: {
          nodePath: process.execPath,
          cliPath: fakeCli,
          droverHome: home,
          notifyAccess: sdNotifyAddonProblem() === null ? 'main' : 'all',
          shutdownGraceSeconds: 5,
          watchdogSeconds: 5,
          restartSeconds: 0.2,
        },
        enable: true,
        now: true,
        env: runEnv,
        run: nsRun,
      });
      // `systemctl start` returned, so READY=1 arrived (Type=notify), not merely the fork.
      assert.equal(await prop('ActiveState'), 'active');
      assert.equal(await prop('StatusText'), 'fake daemon: 0 workers');
      const [first] = records();
      assert.deepEqual(first, {
        pid: Number(await prop('MainPID')),
        script: fakeCli,
        args: ['daemon', 'start', '--foreground', '--profile', profile],
        droverHome: home,
        watchdogUsec: '5000000',
      });
      const check = await checkInstalledUnit(profile, { env: runEnv, run: nsRun });
      assert.deepEqual(
        [check.installed, check.enabled, check.active, check.cliPath, check.problems],
        [true, true, true, fakeCli, []],
      );
    });

    it('SIGKILL of the main process: Restart=on-failure brings it back', async () => {
      const pid = Number(await prop('MainPID'));
      // MainPID=0 (no main process) would make process.kill signal this test's own process group.
      assert.ok(pid > 1 && pid !== process.pid, `no main process to kill (MainPID=${pid})`);
      process.kill(pid, 'SIGKILL');
      const newPid = await waitUntil(
        async () => {
          const p = Number(await prop('MainPID'));
          return p !== pid && p !== 0 && (await prop('ActiveState')) === 'active' ? p : 0;
        },
        15_000,
        'systemd to restart the killed daemon',
        100,
      );
      assert.notEqual(newPid, pid);
    });

    it('restarting the user manager (a new login) starts the enabled unit by itself', async () => {
      const startsBefore = records().filter((r) => 'pid' in r).length;
      await um.restart();
      await waitUntil(
        async () => (await prop('ActiveState')) === 'active',
        15_000,
        'the enabled unit to start at login',
        100,
      );
      assert.equal(records().filter((r) => 'pid' in r).length, startsBefore + 1);
    });

    it('the client path: installedSupervisor / findInstalledServiceManager restart and stop it; stop ends inactive, not failed', async () => {
      const sup = installedSupervisor(profile, runEnv);
      assert.ok(sup, 'the unit counts as installed for this DROVER_HOME');
      const pid = Number(await prop('MainPID'));
      await runSupervisorAction(sup, 'restart', nsRun);
      assert.notEqual(Number(await prop('MainPID')), pid);
      assert.equal(await prop('ActiveState'), 'active');
      // The client's delegation seam, run from outside the namespace as a client would.
      const lookup: ServiceManagerLookup = findInstalledServiceManager;
      const handle = lookup({ name: profile } as Parameters<ServiceManagerLookup>[0], runEnv);
      assert.equal(handle?.kind, 'systemd');
      const pid2 = Number(await prop('MainPID'));
      await handle!.restart({ timeout: 10 });
      assert.notEqual(Number(await prop('MainPID')), pid2);
      assert.equal(lookup({ name: 'not-installed' } as Parameters<ServiceManagerLookup>[0], runEnv), null);
      await runSupervisorAction(sup, 'stop', nsRun);
      assert.equal(await prop('ActiveState'), 'inactive');
      assert.equal(await prop('Result'), 'success');
      assert.ok(
        records().some((r) => r.stopped !== undefined),
        'the daemon got SIGTERM',
      );
      const r = await uninstallSystemdService({ profile, env: runEnv, run: nsRun });
      assert.deepEqual(
        r.files.map((f) => f.action),
        ['remove', 'remove'],
      );
      assert.equal(fs.existsSync(path.join(um.unitDir, 'drover@.service')), false);
    });
  });
});
