import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { CLI, cleanupTempDirs, tempDir } from '../helpers/env.js';
import {
  checkInstalledUnit,
  installSystemdService,
  installedSupervisor,
  installedUnitPaths,
  isUnitInstalled,
  systemdUnitFiles,
  uninstallSystemdService,
  type CommandResult,
  type CommandRunner,
} from '../../src/service/index.js';
import { InputError, ServiceError } from '../../src/errors/index.js';

/** A runner that records argv and answers from `answers` (keyed by the args after the program). */
function fakeRunner(answers: Record<string, Partial<CommandResult>> = {}): { run: CommandRunner; calls: string[][] } {
  const calls: string[][] = [];
  const run: CommandRunner = async (file, args) => {
    calls.push([path.basename(file), ...args]);
    const key = Object.keys(answers).find((k) => args.join(' ').startsWith(k));
    return { status: 0, stdout: '', stderr: '', ...(key !== undefined ? answers[key] : {}) };
  };
  return { run, calls };
}

const up = { '--user is-system-running': { stdout: 'running\n' } };

describe('systemd installer (commands recorded)', () => {
  after(cleanupTempDirs);

  function setup(): {
    env: NodeJS.ProcessEnv;
    home: string;
    unit: (grace?: number) => Parameters<typeof installSystemdService>[0]['unit'];
  } {
    const home = tempDir();
    const env = {
      ...process.env,
      HOME: home,
      XDG_CONFIG_HOME: path.join(home, 'cfg'),
      XDG_RUNTIME_DIR: '',
      DROVER_HOME: path.join(home, 'dh'),
    };
    return {
      env,
      home,
      unit: (grace = 30) => ({
        nodePath: process.execPath,
        cliPath: CLI,
        droverHome: env.DROVER_HOME,
        shutdownGraceSeconds: grace,
      }),
    };
  }

  it('install --enable --now --linger: writes 0644 files, then daemon-reload, enable, start, enable-linger', async () => {
    const { env, unit } = setup();
    const { run, calls } = fakeRunner(up);
    const r = await installSystemdService({
      profile: 'my-profile.v2',
      unit: unit(100),
      enable: true,
      now: true,
      linger: true,
      env,
      run,
      user: 'alice',
    });
    const inst = 'drover@my\\x2dprofile.v2.service';
    assert.deepEqual(calls, [
      ['systemctl', '--user', 'is-system-running'],
      ['systemctl', '--user', 'daemon-reload'],
      ['systemctl', '--user', 'enable', inst],
      ['systemctl', '--user', 'start', inst],
      ['loginctl', 'enable-linger', 'alice'],
    ]);
    const f = systemdUnitFiles('my-profile.v2', env);
    assert.equal(f.template, path.join(env.XDG_CONFIG_HOME!, 'systemd', 'user', 'drover@.service'));
    assert.equal(fs.statSync(f.template).mode & 0o777, 0o644);
    assert.match(fs.readFileSync(f.dropIn, 'utf8'), /^TimeoutStopSec=115$/m);
    assert.deepEqual(r.manualCommands, [
      'systemctl --user daemon-reload',
      `systemctl --user enable 'drover@my\\x2dprofile.v2.service'`,
      `systemctl --user start 'drover@my\\x2dprofile.v2.service'`,
      'loginctl enable-linger alice',
    ]);
    assert.equal(isUnitInstalled('my-profile.v2', env, 'linux'), true);
    assert.equal(isUnitInstalled('other', env, 'linux'), false, 'the template alone does not install a profile');
  });

  it('without a user manager: a ServiceError that says what it looked for, and nothing written', async () => {
    const { env, unit } = setup();
    const { run } = fakeRunner({ '--user is-system-running': { status: 1, stdout: 'offline\n' } });
    await assert.rejects(
      installSystemdService({ profile: 'p', unit: unit(), env, run }),
      (e: unknown) => e instanceof ServiceError && /no systemd user manager.*offline/.test(e.message),
    );
    assert.equal(fs.existsSync(env.XDG_CONFIG_HOME!), false);
  });

  it('bad input fails before anything is run or written', async () => {
    const { env, unit } = setup();
    const { run, calls } = fakeRunner(up);
    await assert.rejects(
      installSystemdService({ profile: 'p', unit: { ...unit(), cliPath: 'bin/drover.js' }, env, run }),
      InputError,
    );
    await assert.rejects(installSystemdService({ profile: '-bad', unit: unit(), env, run }), /invalid profile name/);
    assert.deepEqual(calls, []);
    assert.equal(fs.existsSync(env.XDG_CONFIG_HOME!), false);
  });

  it('a failing start is a ServiceError that points at systemctl status and the journal', async () => {
    const { env, unit } = setup();
    const { run } = fakeRunner({ ...up, '--user start': { status: 1, stderr: 'Job for drover@p.service failed.' } });
    await assert.rejects(
      installSystemdService({ profile: 'p', unit: unit(), now: true, env, run }),
      (e: unknown) =>
        e instanceof ServiceError &&
        /Job for drover@p.service failed/.test(e.message) &&
        /journalctl --user -u drover@p.service/.test(e.message),
    );
  });

  it('uninstall keeps the shared template while another profile uses it, and removes it with the last', async () => {
    const { env, unit } = setup();
    const { run, calls } = fakeRunner(up);
    await installSystemdService({ profile: 'a', unit: unit(), env, run });
    await installSystemdService({ profile: 'b', unit: unit(), env, run });
    const fa = systemdUnitFiles('a', env);
    calls.length = 0;
    const ra = await uninstallSystemdService({ profile: 'a', env, run });
    assert.ok(fs.existsSync(fa.template));
    assert.equal(fs.existsSync(fa.dropInDir), false);
    assert.deepEqual(
      ra.files.map((f) => [path.basename(f.path), f.action]),
      [
        ['drover@a.service.d', 'remove'],
        ['drover@.service', 'keep'],
      ],
    );
    assert.match(ra.files[1]!.reason!, /'b'/);
    assert.deepEqual(
      calls.map((c) => c.slice(1).join(' ')),
      [
        '--user is-system-running',
        '--user list-units --all --plain --no-legend --full drover@*.service',
        '--user stop drover@a.service',
        '--user disable drover@a.service',
        '--user daemon-reload',
        '--user reset-failed drover@a.service',
      ],
    );
    await uninstallSystemdService({ profile: 'b', env, run });
    assert.equal(fs.existsSync(fa.template), false);
  });

  it('a running instance of another profile also keeps the template', async () => {
    const { env, unit } = setup();
    const { run } = fakeRunner({
      ...up,
      '--user list-units': {
        stdout: 'drover@busy\\x2done.service loaded active running Drover daemon of profile busy-one\n',
      },
    });
    await installSystemdService({ profile: 'a', unit: unit(), env, run });
    const r = await uninstallSystemdService({ profile: 'a', env, run });
    assert.deepEqual(
      r.files.map((f) => f.action),
      ['remove', 'keep'],
    );
    assert.match(r.files[1]!.reason!, /'busy-one'/);
  });

  it('uninstall without a user manager removes the files (links included) and warns', async () => {
    const { env, unit } = setup();
    await installSystemdService({ profile: 'a', unit: unit(), env, run: fakeRunner(up).run });
    const f = systemdUnitFiles('a', env);
    const wants = path.join(f.dir, 'default.target.wants');
    fs.mkdirSync(wants);
    fs.symlinkSync(f.template, path.join(wants, f.unit));
    const { run, calls } = fakeRunner({ '--user is-system-running': { status: 1, stdout: 'offline\n' } });
    const r = await uninstallSystemdService({ profile: 'a', env, run });
    assert.deepEqual(calls.length, 1);
    assert.match(r.warnings.join('\n'), /no systemd user manager/);
    assert.deepEqual(fs.readdirSync(f.dir), ['default.target.wants']);
    assert.deepEqual(fs.readdirSync(wants), []);
    const again = await uninstallSystemdService({ profile: 'a', env, run });
    assert.match(again.notes.join('\n'), /nothing was installed/);
  });

  it('re-installing with another node warns that the shared template changes for the other profiles', async () => {
    const { env, unit } = setup();
    const { run } = fakeRunner(up);
    await installSystemdService({ profile: 'a', unit: unit(), env, run });
    const other = tempDir();
    fs.symlinkSync(process.execPath, path.join(other, 'node'));
    const r = await installSystemdService({
      profile: 'b',
      unit: { ...unit(), nodePath: path.join(other, 'node') },
      env,
      run,
    });
    assert.match(r.warnings.join('\n'), /shared by all profiles; profiles 'a' will also run/);
  });

  it('status: reports a vanished node or CLI and another DROVER_HOME; the client delegates only when it matches', async () => {
    const { env, unit } = setup();
    const gone = tempDir();
    fs.symlinkSync(process.execPath, path.join(gone, 'node'));
    fs.writeFileSync(path.join(gone, 'drover.js'), '');
    const { run } = fakeRunner({
      ...up,
      '--user is-enabled': { stdout: 'enabled\n' },
      '--user is-active': { stdout: 'inactive\n', status: 3 },
    });
    await installSystemdService({
      profile: 'p',
      unit: { ...unit(), nodePath: path.join(gone, 'node'), cliPath: path.join(gone, 'drover.js') },
      env,
      run,
    });
    let c = await checkInstalledUnit('p', { env, run, platform: 'linux' });
    assert.deepEqual([c.installed, c.enabled, c.active, c.problems], [true, true, false, []]);
    const sup = installedSupervisor('p', env, { platform: 'linux' });
    assert.deepEqual(sup?.start, ['systemctl', '--user', 'start', 'drover@p.service']);
    assert.deepEqual(sup?.restart, ['systemctl', '--user', 'restart', 'drover@p.service']);

    fs.rmSync(gone, { recursive: true });
    c = await checkInstalledUnit('p', { env, platform: 'linux', probe: false });
    assert.equal(c.enabled, undefined);
    assert.equal(c.problems.length, 2);
    assert.match(c.problems[0]!, /runs node .*node, which no longer exists; run `drover daemon install` again/);
    assert.match(c.problems[1]!, /runs the CLI .*drover\.js, which no longer exists/);

    const otherHome = { ...env, DROVER_HOME: path.join(env.HOME!, 'elsewhere') };
    c = await checkInstalledUnit('p', { env: otherHome, platform: 'linux', probe: false });
    assert.match(c.problems.join('\n'), /DROVER_HOME=.*dh, but this shell has DROVER_HOME=.*elsewhere/);
    assert.equal(
      installedSupervisor('p', otherHome, { platform: 'linux' }),
      null,
      'must not drive a unit of another DROVER_HOME',
    );
    assert.equal(installedUnitPaths('p', otherHome, 'linux')?.droverHome, env.DROVER_HOME);
  });
});
