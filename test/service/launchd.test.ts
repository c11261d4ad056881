import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as plist from 'plist';
import { CLI, cleanupTempDirs, runCli, tempDir } from '../helpers/env.js';
import {
  checkInstalledUnit,
  execRunner,
  formatUnitCheck,
  installLaunchdAgent,
  installedSupervisor,
  isUnitInstalled,
  launchdLabel,
  launchdPlistPath,
  parsePlistPaths,
  renderLaunchdPlist,
  runSupervisorAction,
  uninstallLaunchdAgent,
  type ServiceActionResult,
} from '../../src/service/index.js';
import { InputError, ServiceError } from '../../src/errors/index.js';

/**
 * A launchctl stand-in: appends its argv (tab-separated) to $STUB_LOG and exits with
 * $STUB_EXIT_<verb> (default 0), so tests see which verbs ran in which order.
 */
function launchctlStub(dir: string): { bin: string; log: string; calls: () => string[][] } {
  const bin = path.join(dir, 'launchctl');
  const log = path.join(dir, 'launchctl.log');
  fs.writeFileSync(
    bin,
    [
      '#!/bin/sh',
      `(IFS="$(printf '\\t')"; printf '%s\\n' "$*") >> "$STUB_LOG"`,
      'eval "code=\\${STUB_EXIT_$1:-0}"',
      'exit "$code"',
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  const calls = (): string[][] =>
    fs.existsSync(log)
      ? fs
          .readFileSync(log, 'utf8')
          .split('\n')
          .filter((l) => l !== '')
          .map((l) => l.split('\t'))
      : [];
  return { bin, log, calls };
}

const uid = process.getuid!();

describe('launchd agent', () => {
  after(cleanupTempDirs);

  const odd = (dir: string): { node: string; cli: string; home: string; logs: string } => ({
    node: path.join(dir, 'Node & <Co>', 'bin', 'node'),
    cli: path.join(dir, `it's "quoted" -- x`, 'drover.js'),
    home: path.join(dir, 'home > & <'),
    logs: path.join(dir, 'logs &amp;'),
  });

  it('renders a plist that parses back with the expected keys, XML-escaping odd paths', () => {
    const p = odd(tempDir());
    const xml = renderLaunchdPlist({
      profile: 'my-profile.v2',
      nodePath: p.node,
      cliPath: p.cli,
      droverHome: p.home,
      logDir: p.logs,
      exitTimeOut: 45,
      throttleInterval: 7,
      droverVersion: '9.9.9',
    });
    assert.ok(!xml.includes('Node & <Co>'), 'raw & and < must not appear in the XML');
    const doc = plist.parse(xml) as Record<string, unknown>;
    assert.deepEqual(Object.keys(doc).sort(), [
      'EnvironmentVariables',
      'ExitTimeOut',
      'KeepAlive',
      'Label',
      'ProcessType',
      'ProgramArguments',
      'RunAtLoad',
      'StandardErrorPath',
      'StandardOutPath',
      'ThrottleInterval',
    ]);
    assert.equal(doc.Label, 'org.drover.daemon.my-profile.v2');
    assert.deepEqual(doc.ProgramArguments, [
      p.node,
      p.cli,
      'daemon',
      'start',
      '--foreground',
      '--profile',
      'my-profile.v2',
    ]);
    assert.equal(doc.RunAtLoad, true);
    assert.deepEqual(doc.KeepAlive, { SuccessfulExit: false });
    assert.equal(doc.ExitTimeOut, 45);
    assert.equal(doc.ThrottleInterval, 7);
    assert.equal(doc.ProcessType, 'Background');
    for (const k of ['StandardOutPath', 'StandardErrorPath']) {
      const v = doc[k] as string;
      assert.ok(path.isAbsolute(v) && v.startsWith(p.logs + '/'), `${k} = ${v}`);
    }
    assert.notEqual(doc.StandardOutPath, doc.StandardErrorPath);
    const env = doc.EnvironmentVariables as Record<string, string>;
    assert.equal(env.DROVER_HOME, p.home);
    assert.ok(env.PATH!.startsWith(path.dirname(p.node) + ':'));
    assert.deepEqual(parsePlistPaths(xml), {
      label: 'org.drover.daemon.my-profile.v2',
      nodePath: p.node,
      cliPath: p.cli,
      droverHome: p.home,
    });
  });

  it('leaves DROVER_HOME out when not set, and refuses bad input with an InputError', () => {
    const base = {
      profile: 'p',
      nodePath: '/usr/bin/node',
      cliPath: '/x/drover.js',
      logDir: '/tmp/l',
      exitTimeOut: 45,
    };
    const doc = plist.parse(renderLaunchdPlist(base)) as Record<string, Record<string, string>>;
    assert.deepEqual(Object.keys(doc.EnvironmentVariables!), ['PATH']);
    assert.throws(
      () => renderLaunchdPlist({ ...base, logDir: 'logs' }),
      (e: unknown) => e instanceof InputError && /log directory/.test(e.message),
    );
    assert.throws(() => renderLaunchdPlist({ ...base, cliPath: '/x/\u0001' }), InputError);
    assert.throws(() => renderLaunchdPlist({ ...base, exitTimeOut: 0 }), /ExitTimeOut/);
    assert.throws(() => renderLaunchdPlist({ ...base, profile: '../evil' }), /invalid profile name/);
  });

  it('install --enable --now: bootout (not loaded is fine), enable, bootstrap, in that order', async () => {
    const dir = tempDir();
    const stub = launchctlStub(dir);
    const env = {
      ...process.env,
      HOME: path.join(dir, 'home'),
      STUB_LOG: stub.log,
      STUB_EXIT_bootout: '3',
      STUB_EXIT_print: '113',
    };
    const logDir = path.join(dir, 'drover', 'log', 'p1');
    const r = await installLaunchdAgent({
      profile: 'p1',
      plist: { nodePath: process.execPath, cliPath: CLI, logDir, exitTimeOut: 45 },
      enable: true,
      now: true,
      env,
      launchctl: stub.bin,
    });
    const target = `gui/${uid}/org.drover.daemon.p1`;
    const plistPath = launchdPlistPath('p1', env);
    assert.equal(plistPath, path.join(dir, 'home', 'Library', 'LaunchAgents', 'org.drover.daemon.p1.plist'));
    assert.deepEqual(stub.calls(), [
      ['bootout', target],
      ['print', target],
      ['enable', target],
      ['bootstrap', `gui/${uid}`, plistPath],
    ]);
    assert.equal(fs.statSync(plistPath).mode & 0o777, 0o644);
    assert.equal(fs.statSync(logDir).mode & 0o777, 0o700);
    assert.deepEqual(
      r.commands.map((c) => [c.argv[1], c.status, c.ignored ?? null]),
      [
        ['bootout', 3, 'not loaded'],
        ['print', 113, 'probe: not loaded'],
        ['enable', 0, null],
        ['bootstrap', 0, null],
      ],
    );
    assert.equal((plist.parse(fs.readFileSync(plistPath, 'utf8')) as { Label: string }).Label, launchdLabel('p1'));
  });

  it('install without flags only writes the plist; a failing bootstrap is a ServiceError quoting launchctl', async () => {
    const dir = tempDir();
    const stub = launchctlStub(dir);
    const env = { ...process.env, HOME: dir, STUB_LOG: stub.log, STUB_EXIT_bootstrap: '5' };
    const opts = {
      profile: 'p2',
      plist: { nodePath: process.execPath, cliPath: CLI, logDir: path.join(dir, 'l'), exitTimeOut: 45 },
      env,
      launchctl: stub.bin,
    };
    const r = await installLaunchdAgent(opts);
    assert.deepEqual(stub.calls(), []);
    assert.ok(fs.existsSync(launchdPlistPath('p2', env)));
    assert.match(r.notes.join('\n'), /next login/);
    await assert.rejects(
      installLaunchdAgent({ ...opts, now: true }),
      (e: unknown) =>
        e instanceof ServiceError && /launchctl bootstrap gui\/\d+ .* failed with exit code 5/.test(e.message),
    );
  });

  it('uninstall: bootout then remove; succeeds again when already gone; refuses when bootout fails on a loaded agent', async () => {
    const dir = tempDir();
    const stub = launchctlStub(dir);
    const env = { ...process.env, HOME: dir, STUB_LOG: stub.log };
    await installLaunchdAgent({
      profile: 'p3',
      plist: { nodePath: process.execPath, cliPath: CLI, logDir: path.join(dir, 'l'), exitTimeOut: 45 },
      env,
      launchctl: stub.bin,
    });
    const plistPath = launchdPlistPath('p3', env);
    const target = `gui/${uid}/org.drover.daemon.p3`;
    await uninstallLaunchdAgent({ profile: 'p3', env, launchctl: stub.bin });
    assert.equal(fs.existsSync(plistPath), false);
    assert.deepEqual(stub.calls(), [['bootout', target]]);
    const again = await uninstallLaunchdAgent({
      profile: 'p3',
      env: { ...env, STUB_EXIT_bootout: '113', STUB_EXIT_print: '113' },
      launchctl: stub.bin,
    });
    assert.match(again.notes.join('\n'), /nothing was installed/);
    assert.deepEqual(stub.calls().slice(1), [
      ['bootout', target],
      ['print', target],
    ]);
    // bootout failed but print says it is loaded: a real failure.
    await assert.rejects(
      uninstallLaunchdAgent({ profile: 'p3', env: { ...env, STUB_EXIT_bootout: '1' }, launchctl: stub.bin }),
      ServiceError,
    );
  });

  it('drover daemon install/uninstall --init launchd drive launchctl (DROVER_LAUNCHCTL) and report it', async () => {
    const dir = tempDir();
    const stub = launchctlStub(dir);
    const env = {
      HOME: path.join(dir, 'home'),
      DROVER_HOME: path.join(dir, 'drover'),
      DROVER_LAUNCHCTL: stub.bin,
      STUB_LOG: stub.log,
    };
    const r = runCli(
      ['daemon', 'install', '--init', 'launchd', '--enable', '--now', '-p', 'my-profile.v2', '--json'],
      env,
    );
    assert.equal(r.status, 0, r.stderr);
    const res = JSON.parse(r.stdout) as ServiceActionResult;
    const plistPath = path.join(dir, 'home', 'Library', 'LaunchAgents', 'org.drover.daemon.my-profile.v2.plist');
    assert.equal(res.init, 'launchd');
    assert.equal(res.files[0]!.path, plistPath);
    assert.deepEqual(
      stub.calls().map((c) => c[0]),
      ['bootout', 'enable', 'bootstrap'],
    );
    const doc = plist.parse(fs.readFileSync(plistPath, 'utf8')) as {
      ProgramArguments: string[];
      EnvironmentVariables: Record<string, string>;
      StandardOutPath: string;
    };
    assert.deepEqual(doc.ProgramArguments.slice(0, 2), [process.execPath, CLI]);
    assert.equal(doc.EnvironmentVariables.DROVER_HOME, env.DROVER_HOME);
    assert.ok(doc.StandardOutPath.startsWith(path.join(env.DROVER_HOME, 'log', 'my-profile.v2') + '/'));

    // What the client and status see on macOS.
    const fullEnv = { ...process.env, ...env };
    assert.equal(isUnitInstalled('my-profile.v2', fullEnv, 'darwin'), true);
    const sup = installedSupervisor('my-profile.v2', fullEnv, { platform: 'darwin' });
    assert.deepEqual(sup?.restart, [stub.bin, 'kickstart', '-k', `gui/${uid}/org.drover.daemon.my-profile.v2`]);
    const check = await checkInstalledUnit('my-profile.v2', { env: fullEnv, platform: 'darwin', probe: false });
    assert.deepEqual(
      [check.installed, check.nodePath, check.cliPath, check.problems],
      [true, process.execPath, CLI, []],
    );

    const text = runCli(['daemon', 'uninstall', '--init', 'launchd', '-p', 'my-profile.v2'], env);
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /Uninstalled org\.drover\.daemon\.my-profile\.v2 \(launchd agent\)/);
    assert.match(text.stdout, /launchctl bootout gui\/\d+\/org\.drover\.daemon\.my-profile\.v2/);
    assert.equal(fs.existsSync(plistPath), false);
    assert.equal(isUnitInstalled('my-profile.v2', fullEnv, 'darwin'), false);
  });

  it('the client path on macOS: kickstart to start (bootstrap when not loaded), bootout to stop, kickstart -k to restart', async () => {
    const dir = tempDir();
    const stub = launchctlStub(dir);
    const env = { ...process.env, HOME: dir, STUB_LOG: stub.log };
    const logDir = path.join(dir, 'l');
    await installLaunchdAgent({
      profile: 'p4',
      plist: { nodePath: process.execPath, cliPath: CLI, logDir, exitTimeOut: 45 },
      env,
      launchctl: stub.bin,
    });
    const plistPath = launchdPlistPath('p4', env);
    const target = `gui/${uid}/org.drover.daemon.p4`;
    const sup = installedSupervisor('p4', env, { platform: 'darwin', launchctl: stub.bin });
    assert.ok(sup);
    const act = async (
      action: 'start' | 'stop' | 'restart',
      exits: Record<string, string> = {},
    ): Promise<string[][]> => {
      const before = stub.calls().length;
      await runSupervisorAction(sup, action, execRunner({ ...env, ...exits }));
      return stub.calls().slice(before);
    };
    assert.deepEqual(await act('start'), [['kickstart', target]]);
    // After a bootout the agent is not loaded, so kickstart fails: load it (RunAtLoad starts it).
    assert.deepEqual(await act('start', { STUB_EXIT_kickstart: '113' }), [
      ['kickstart', target],
      ['bootstrap', `gui/${uid}`, plistPath],
    ]);
    assert.deepEqual(await act('restart'), [['kickstart', '-k', target]]);
    assert.deepEqual(await act('stop'), [['bootout', target]]);
    // Stopping an agent that is not loaded is fine; a failing bootout of a loaded one is not.
    assert.deepEqual(await act('stop', { STUB_EXIT_bootout: '3', STUB_EXIT_print: '113' }), [
      ['bootout', target],
      ['print', target],
    ]);
    await assert.rejects(act('stop', { STUB_EXIT_bootout: '1' }), (e: unknown) => e instanceof ServiceError);

    // What `drover daemon status` shows for it, and its warning once node is gone.
    const check = await checkInstalledUnit('p4', { env, platform: 'darwin', launchctl: stub.bin });
    assert.equal(check.state, 'loaded');
    assert.equal(
      formatUnitCheck(check),
      `Service: org.drover.daemon.p4 (launchd agent; loaded) runs ${process.execPath} ${CLI}`,
    );
    const gone = path.join(dir, 'node-gone');
    await installLaunchdAgent({
      profile: 'p4',
      plist: { nodePath: gone, cliPath: CLI, logDir, exitTimeOut: 45 },
      env,
      launchctl: stub.bin,
    });
    const bad = await checkInstalledUnit('p4', { env, platform: 'darwin', probe: false });
    assert.deepEqual(bad.problems, [
      `${plistPath} runs node ${gone}, which no longer exists; run \`drover daemon install\` again`,
    ]);
  });

  it('--dry-run prints the plist and the commands and touches nothing; --linger is refused for launchd', () => {
    const dir = tempDir();
    const stub = launchctlStub(dir);
    const env = {
      HOME: path.join(dir, 'home'),
      DROVER_HOME: path.join(dir, 'drover'),
      DROVER_LAUNCHCTL: stub.bin,
      STUB_LOG: stub.log,
    };
    const r = runCli(['daemon', 'install', '--init', 'launchd', '--now', '--dry-run', '-p', 'dry'], env);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /<key>Label<\/key>\s*<string>org\.drover\.daemon\.dry<\/string>/);
    assert.match(r.stdout, /Would run:\n.*bootout.*\n.*enable.*\n.*bootstrap/);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['launchctl'], 'dry run created files');
    const bad = runCli(['daemon', 'install', '--init', 'launchd', '--linger', '-p', 'dry'], env);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /--linger applies to systemd only/);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['launchctl']);
  });
});
