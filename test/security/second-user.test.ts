/**
 * Only the owner gets in (issue 9, must-show 7), attacked by a real second local user (made with
 * `useradd`, removed afterwards): a package it plants in the owner's working directory is never
 * imported; `data:`, `http:`, `file:` and relative modules are refused at `config set` and at load
 * and never run; a fallback runtime directory it pre-creates, links or tries to swap under a shared
 * `$TMPDIR` is never used, by `daemon start` or by any client call.
 *
 * Needs root (to create the user and act as it): skipped with a reason otherwise, failing under CI.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Config, configFilePath } from '../../src/config/index.js';
import { ProcessRegistry } from '../../src/engine/index.js';
import { InputError } from '../../src/errors/index.js';
import {
  CLI,
  RABBIT_URL,
  REPO_ROOT,
  cleanupTempDirs,
  portOpen,
  requireService,
  tempDir,
  waitUntil,
  type CliResult,
} from '../helpers/env.js';
import { makeProfile, type TestProfile } from '../helpers/profile.js';
import { IS_ROOT, createLocalUser, type LocalUser } from './local-user.js';

/** Runs the owner's `drover ARGS` in `cwd` with exactly `env` on top of a clean environment. */
function ownerCli(args: string[], env: NodeJS.ProcessEnv, cwd: string, timeoutMs = 60_000): Promise<CliResult> {
  const base = { ...process.env };
  for (const k of ['DROVER_HOME', 'DROVER_PROFILE', 'XDG_RUNTIME_DIR', 'TMPDIR']) delete base[k];
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd, env: { ...base, ...env } });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ status: code ?? -1, stdout, stderr });
    });
  });
}

/** A world-writable directory (mode `mode`) for the two users to share. */
function sharedDir(prefix: string, mode: number): string {
  const d = tempDir(prefix);
  fs.chmodSync(d, mode);
  return d;
}

/** A package directory with a package.json and an index.js. */
function packageFiles(name: string, indexJs: string): Record<string, string> {
  return {
    [`node_modules/${name}/package.json`]: JSON.stringify({ name, version: '1.0.0', main: 'index.js' }),
    [`node_modules/${name}/index.js`]: indexJs,
  };
}

/** Code of a planted package: proves it ran by writing `marker`, and offers a process type. */
function evilIndex(marker: string, type: string): string {
  return (
    `require('fs').writeFileSync(${JSON.stringify(marker)}, 'ran as uid ' + process.getuid());\n` +
    `exports.p = { name: ${JSON.stringify(type)}, run() { return null; } };\n`
  );
}

describe('only the owner gets in: attacks by a second local user (issue 9, point 7)', function () {
  this.timeout(120_000);
  let user: LocalUser | null = null;
  const started: Array<{ kill(signal: NodeJS.Signals): boolean; exitCode: number | null }> = [];

  before(function () {
    requireService(this, IS_ROOT, 'root, to create a second local user (useradd) and act as it');
    user = createLocalUser();
  });

  after(() => {
    for (const c of started) if (c.exitCode === null) c.kill('SIGKILL');
    user?.remove();
    cleanupTempDirs();
  });

  /** Runs `cmd` as the other user and fails the test when it fails. */
  const asOther = (cmd: string, args: string[], cwd = '/'): string => {
    const r = user!.run(cmd, args, cwd);
    assert.equal(r.status, 0, `as ${user!.name}: ${cmd} ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  /** Writes files (relative path → content) into `dir` as the other user. */
  const plantAsOther = (dir: string, files: Record<string, string>): void => {
    for (const [rel, content] of Object.entries(files)) {
      const file = path.join(dir, rel);
      asOther('mkdir', ['-p', path.dirname(file)]);
      asOther('sh', ['-c', 'printf "%s" "$1" > "$2"', 'sh', content, file]);
      assert.equal(fs.statSync(file).uid, user!.uid, `${file} is the other user's`);
    }
  };

  describe('process modules', () => {
    let tp: TestProfile;
    let work: string; // the owner's working directory: world-writable, like /tmp
    let project: string; // the owner's project, the declared processes.modules_root
    let marker: string;

    before(async () => {
      tp = await makeProfile({ name: 'sec-modules' });
      work = sharedDir('drover-sec-work-', 0o777);
      project = tempDir('drover-sec-project-');
      fs.chmodSync(project, 0o755);
      marker = path.join(work, `PWNED-${crypto.randomBytes(3).toString('hex')}`);
      const good = `export const echo = { name: 'good.echo', run: (_ctx, inputs) => inputs };\n`;
      fs.mkdirSync(path.join(project, 'node_modules', 'good-procs'), { recursive: true });
      fs.writeFileSync(
        path.join(project, 'node_modules', 'good-procs', 'package.json'),
        JSON.stringify({ name: 'good-procs', type: 'module', exports: { '.': { import: './index.js' } } }),
      );
      fs.writeFileSync(path.join(project, 'node_modules', 'good-procs', 'index.js'), good);
      // The other user plants a package under a name the owner lists, and one shadowing the owner's.
      plantAsOther(work, {
        ...packageFiles('evil-procs', evilIndex(marker, 'evil.run')),
        ...packageFiles('good-procs', evilIndex(marker, 'good.echo')),
      });
    });

    after(async () => {
      await tp?.cleanup();
    });

    it('a package planted in the working directory is never imported: not by the CLI, a worker or the library', async () => {
      tp.setOption('processes.modules', [tp.profile.options['processes.modules'][0]!, 'evil-procs']);
      const submit = await ownerCli(['process', 'submit', 'evil.run'], tp.env, work);
      assert.equal(submit.status, 1, submit.stdout + submit.stderr);
      assert.match(
        submit.stderr,
        /processes\.modules entry 'evil-procs' is a package name, but processes\.modules_root/,
      );
      const worker = await ownerCli(['daemon', 'worker'], tp.env, work);
      assert.notEqual(worker.status, 0, worker.stdout + worker.stderr);
      assert.match(worker.stdout + worker.stderr, /evil-procs/);
      assert.equal(fs.existsSync(marker), false, 'the planted package never ran');

      // With the owner's project declared as the modules root, only its node_modules counts, from
      // whatever directory the owner runs in: the shadowing package in the working directory loses,
      // the planted one is "not installed", and a world-writable root is refused.
      const script = `
        import { ProcessRegistry } from ${JSON.stringify(path.join(REPO_ROOT, 'dist/src/engine/index.js'))};
        const out = {};
        const r = await ProcessRegistry.load(['good-procs'], { modulesRoot: ${JSON.stringify(project)} });
        out.good = r.has('good.echo');
        for (const [k, mods, root] of [['evil', ['evil-procs'], ${JSON.stringify(project)}], ['unsafeRoot', ['good-procs'], ${JSON.stringify(work)}]]) {
          try { await ProcessRegistry.load(mods, { modulesRoot: root }); out[k] = 'loaded'; }
          catch (err) { out[k] = err.code + ': ' + err.message; }
        }
        console.log(JSON.stringify(out));`;
      const lib = await new Promise<string>((resolve, reject) => {
        const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: work });
        let out = '';
        let errOut = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (errOut += d.toString()));
        child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(errOut))));
      });
      const res = JSON.parse(lib) as { good: boolean; evil: string; unsafeRoot: string };
      assert.equal(res.good, true);
      assert.match(
        res.evil,
        /^INPUT_INVALID: .*package 'evil-procs' is not installed in .*drover-sec-project-.*node_modules/,
      );
      assert.match(
        res.unsafeRoot,
        new RegExp(
          `^PATH_UNSAFE: refusing to load packages from processes\\.modules_root .*drover-sec-work-\\w+: ` +
            `.*node_modules belongs to another user \\(uid ${user!.uid}\\)`,
        ),
      );
      assert.equal(fs.existsSync(marker), false, 'no planted package ever ran');
      // And the other user cannot add a package to the declared root.
      assert.notEqual(user!.run('mkdir', [path.join(project, 'node_modules', 'x')]).status, 0);
    });

    it('data:, http:, file: and relative modules are refused at config set and at load, and never run', async () => {
      const dataMarker = path.join(work, `DATA-RAN-${crypto.randomBytes(3).toString('hex')}`);
      const data = `data:text/javascript,import fs from 'node:fs'; fs.writeFileSync(${JSON.stringify(dataMarker)}, 'x');`;
      const before = fs.readFileSync(tp.profile.configFile);
      const refused: Array<[string, RegExp]> = [
        [data, /entry 'data:text\/javascript,.*' is a URL \(data:\); URLs are not accepted/],
        ['http://127.0.0.1:1/procs.js', /is a URL \(http:\)/],
        ['https://example.com/procs.mjs', /is a URL \(https:\)/],
        ['file:///srv/procs.js', /is a URL \(file:\); URLs are not accepted, write the absolute file path instead/],
        ['./procs.js', /is a relative path/],
        ['../procs.js', /is a relative path/],
        ['~/procs.js', /starts with ~/],
        ['procs/../../etc/x.js', /is neither an absolute file path nor a package name/],
      ];
      for (const [spec, re] of refused) {
        const r = await ownerCli(['config', 'set', 'processes.modules', JSON.stringify([spec])], tp.env, work);
        assert.equal(r.status, 1, `${spec}: ${r.stdout}${r.stderr}`);
        assert.match(r.stderr, re, spec);
        assert.deepEqual(fs.readFileSync(tp.profile.configFile), before, `${spec}: the file is unchanged`);
      }
      // Written into the file by hand: refused when the configuration is loaded.
      const json = JSON.parse(before.toString()) as { profiles: Record<string, { options: Record<string, unknown> }> };
      json.profiles[tp.name]!.options['processes.modules'] = [data];
      fs.writeFileSync(tp.profile.configFile, JSON.stringify(json, null, 2));
      try {
        const r = await ownerCli(['process', 'submit', 'core.arithmetic.add', '-i', 'x=1', '-i', 'y=2'], tp.env, work);
        assert.equal(r.status, 1, r.stdout + r.stderr);
        assert.match(r.stderr, /option 'processes\.modules': entry 'data:text\/javascript,.*' is a URL \(data:\)/);
      } finally {
        fs.writeFileSync(tp.profile.configFile, before);
      }
      // And the registry refuses it on its own, whoever calls it.
      await assert.rejects(
        ProcessRegistry.load([data]),
        (err: Error) => err instanceof InputError && /is a URL \(data:\)/.test(err.message),
      );
      assert.equal(fs.existsSync(dataMarker), false, 'the data: module never ran');
    });
  });

  describe('the fallback runtime directory under a shared $TMPDIR', () => {
    const profile = 'sec-run';
    let shared: string; // like /tmp: world-writable and sticky
    let env: NodeJS.ProcessEnv;
    let runDir: string; // where the owner's fallback runtime directory goes
    let attackerLog: string;

    before(() => {
      shared = sharedDir('drover-sec-tmp-', 0o1777);
      const home = tempDir('drover-sec-home-');
      env = {
        HOME: home,
        XDG_CONFIG_HOME: path.join(home, 'config'),
        XDG_DATA_HOME: path.join(home, 'data'),
        XDG_STATE_HOME: path.join(home, 'state'),
        TMPDIR: shared,
        DROVER_PROFILE: profile,
        DROVER_TEST_SECURITY: crypto.randomBytes(6).toString('hex'),
      };
      const config = Config.load(configFilePath(env));
      config.setupProfile(profile, { brokerUrl: RABBIT_URL, setDefault: true }, env);
      config.save();
      runDir = path.join(shared, `drover-${process.getuid!()}`);
      attackerLog = path.join(sharedDir('drover-sec-log-', 0o777), 'connections.log');
    });

    afterEach(() => {
      // Whatever the other user left (root may remove it).
      fs.rmSync(runDir, { recursive: true, force: true });
    });

    after(async () => {
      // A daemon this suite started and could not stop (found by its unique environment marker).
      for (const entry of fs.readdirSync('/proc')) {
        if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
        try {
          const e = fs.readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0');
          if (e.includes(`DROVER_TEST_SECURITY=${env.DROVER_TEST_SECURITY}`)) process.kill(Number(entry), 'SIGKILL');
        } catch {
          // gone, or not ours
        }
      }
    });

    /** The other user listens on a socket where the owner's daemon socket would be, logging every connection. */
    const fakeDaemon = async (socketPath: string): Promise<void> => {
      const code =
        `const net = require('net'), fs = require('fs');` +
        `net.createServer((s) => { fs.appendFileSync(${JSON.stringify(attackerLog)}, 'connection\\n'); ` +
        `s.on('data', (d) => fs.appendFileSync(${JSON.stringify(attackerLog)}, d)); }).listen(${JSON.stringify(socketPath)}, () => console.log('listening'));`;
      const child = user!.spawn(process.execPath, ['-e', code]);
      started.push(child);
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      await waitUntil(() => out.includes('listening') || child.exitCode !== null, 10_000, 'the fake daemon');
      assert.equal(child.exitCode, null, 'the fake daemon listens');
    };

    const noConnectionReachedTheOtherUser = (): void => {
      assert.equal(fs.existsSync(attackerLog) ? fs.readFileSync(attackerLog, 'utf8') : '', '');
    };

    it('a runtime directory pre-created by another user is refused by status and start, and nothing is written in it', async () => {
      const dir = path.join(runDir, profile);
      asOther('mkdir', ['-m', '0777', runDir]);
      asOther('mkdir', ['-m', '0777', dir]);
      await fakeDaemon(path.join(dir, 'daemon.sock'));
      const refusal = new RegExp(
        `unsafe runtime directory ${runDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: it belongs to uid ${user!.uid}, not to you \\(uid 0\\)`,
      );
      for (const args of [
        ['daemon', 'status'],
        ['daemon', 'start'],
        ['daemon', 'stop'],
      ]) {
        const r = await ownerCli(args, env, os.tmpdir());
        assert.equal(r.status, 1, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
        assert.match(r.stderr, refusal, args.join(' '));
        assert.match(r.stderr, /set XDG_RUNTIME_DIR \(or TMPDIR\) to a directory only you can write to/);
      }
      // The overview reports it instead of the daemon's state.
      const overview = await ownerCli(['status'], env, os.tmpdir());
      assert.match(
        overview.stdout,
        /Daemon: +unknown \(unsafe runtime directory .*: it belongs to uid \d+, not to you/,
      );
      noConnectionReachedTheOtherUser();
      assert.deepEqual(fs.readdirSync(dir), ['daemon.sock'], 'no PID, lock or log file was made in it');
    });

    it('a symbolic link planted as the runtime directory is refused', async () => {
      const theirs = path.join(sharedDir('drover-sec-theirs-', 0o755), 'run');
      fs.chownSync(path.dirname(theirs), user!.uid, user!.gid);
      asOther('mkdir', ['-m', '0700', theirs]);
      asOther('ln', ['-s', theirs, runDir]);
      const r = await ownerCli(['daemon', 'status'], env, os.tmpdir());
      assert.equal(r.status, 1, r.stdout + r.stderr);
      assert.match(r.stderr, /unsafe runtime directory .*: it is a symbolic link, which another user may have planted/);
      assert.deepEqual(fs.readdirSync(theirs), []);
    });

    it('the owner creates it 0700; the other user can neither swap it nor get in; a non-sticky $TMPDIR is refused', async () => {
      const first = await ownerCli(['daemon', 'status'], env, os.tmpdir());
      assert.equal(first.status, 3, first.stdout + first.stderr); // not running: the plain answer
      const st = fs.lstatSync(runDir);
      assert.ok(st.isDirectory());
      assert.equal(st.uid, 0);
      assert.equal(st.mode & 0o7777, 0o700);
      // Sticky $TMPDIR: the other user cannot move it away, replace it or put anything in it.
      assert.notEqual(user!.run('mv', [runDir, path.join(shared, 'stolen')]).status, 0, 'mv refused');
      assert.notEqual(user!.run('rm', ['-rf', runDir]).status, 0, 'rm refused');
      assert.notEqual(user!.run('mkdir', [path.join(runDir, profile)]).status, 0, 'mkdir inside refused');
      assert.equal((await ownerCli(['daemon', 'status'], env, os.tmpdir())).status, 3);

      // A $TMPDIR without the sticky bit would let them rename it and put theirs in its place:
      // such a $TMPDIR is refused outright, before any use.
      fs.chmodSync(shared, 0o777);
      try {
        const r = await ownerCli(['daemon', 'status'], env, os.tmpdir());
        assert.equal(r.status, 1, r.stdout + r.stderr);
        assert.match(
          r.stderr,
          /other users could replace it \(.*drover-sec-tmp-\w+ is writable by every user \(mode 0777\)\)/,
        );
        // They do swap it now, and plant their own; the owner still refuses.
        asOther('mv', [runDir, path.join(shared, 'stolen')]);
        asOther('mkdir', ['-m', '0700', runDir]);
        const again = await ownerCli(['daemon', 'start'], env, os.tmpdir());
        assert.equal(again.status, 1, again.stdout + again.stderr);
        assert.match(again.stderr, /unsafe runtime directory/);
      } finally {
        fs.chmodSync(shared, 0o1777);
        fs.rmSync(path.join(shared, 'stolen'), { recursive: true, force: true });
      }
      // Theirs sits at the name now: refused (owner) even with the sticky bit back.
      const last = await ownerCli(['daemon', 'status'], env, os.tmpdir());
      assert.match(last.stderr, /it belongs to uid \d+, not to you/);
    });

    it('a daemon runs in the fallback it created; a runtime dir made unsafe meanwhile is refused by every client call', async function () {
      requireService(this, await portOpen(5672), 'RabbitMQ on 127.0.0.1:5672');
      const start = await ownerCli(['daemon', 'start', '1'], env, os.tmpdir());
      assert.equal(start.status, 0, start.stdout + start.stderr);
      try {
        const dir = path.join(runDir, profile);
        assert.equal(fs.statSync(path.join(dir, 'daemon.sock')).mode & 0o777, 0o600);
        assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
        assert.notEqual(user!.run('ls', [runDir]).status, 0, 'the other user cannot even look');
        assert.equal((await ownerCli(['daemon', 'status'], env, os.tmpdir())).status, 0);
        // Someone loosened it (or a bug did): every client call refuses until it is private again.
        fs.chmodSync(runDir, 0o755);
        const r = await ownerCli(['daemon', 'status'], env, os.tmpdir());
        assert.equal(r.status, 1, r.stdout + r.stderr);
        assert.match(r.stderr, /unsafe runtime directory .*: its mode is 0755, not 0700, so it is not private/);
        fs.chmodSync(runDir, 0o700);
      } finally {
        const stop = await ownerCli(['daemon', 'stop'], env, os.tmpdir());
        assert.equal(stop.status, 0, stop.stdout + stop.stderr);
      }
    });
  });
});
