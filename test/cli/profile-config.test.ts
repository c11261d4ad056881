/**
 * `drover profile ...` and `drover config ...` as a user runs them: real CLI processes against a
 * temporary DROVER_HOME. Every failed command must leave the config file byte-identical.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { CLI, cleanupTempDirs, requireService, runCli, tempDir, type CliResult } from '../helpers/env.js';

/** Runs the CLI on a pseudo-terminal (util-linux script(1)) and answers its question with `answer`. */
function runOnTerminal(
  args: string[],
  env: NodeJS.ProcessEnv,
  answer: string,
): Promise<{ status: number; output: string }> {
  const command = [process.execPath, CLI, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const child = spawn('script', ['-qec', command, '/dev/null'], { env: { ...process.env, ...env } });
  let output = '';
  let answered = false;
  child.stdout.on('data', (d: Buffer) => {
    output += d.toString();
    if (!answered && output.includes('[y/N]')) {
      answered = true;
      child.stdin.write(answer + '\n');
    }
  });
  return new Promise((resolve) => child.on('close', (code) => resolve({ status: code ?? -1, output })));
}

function haveScript(): boolean {
  try {
    execFileSync('script', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('cli: profile and config commands', function () {
  this.timeout(60_000);
  let home: string;
  let file: string;
  let env: NodeJS.ProcessEnv;
  const drover = (...args: string[]): CliResult => runCli(args, env);
  const json = <T>(r: CliResult): T => {
    assert.equal(r.status, 0, `exit 0 expected; stderr: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  /** Runs a command that must fail with exit `status`, and checks the config file did not change. */
  const fails = (args: string[], status = 1): CliResult => {
    const before = fs.existsSync(file) ? fs.readFileSync(file) : null;
    const r = drover(...args);
    assert.equal(r.status, status, `drover ${args.join(' ')}: exit ${status} expected, got ${r.status}; ${r.stderr}`);
    assert.match(r.stderr, /^Error: /, `drover ${args.join(' ')}: error printed as 'Error: ...'`);
    const after = fs.existsSync(file) ? fs.readFileSync(file) : null;
    assert.deepEqual(after, before, `drover ${args.join(' ')} must not change ${file}`);
    return r;
  };

  before(() => {
    home = tempDir();
    file = path.join(home, 'config.json');
    env = { DROVER_HOME: home, DROVER_PROFILE: '' };
  });
  after(() => cleanupTempDirs());

  it('profile setup demo creates a private config file; profile list --json shows it', () => {
    const r = drover('profile', 'setup', 'demo');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /Created profile 'demo' \(default\)/);
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    assert.equal(fs.statSync(home).mode & 0o777, 0o700);
    const list = json<{ defaultProfile: string; profiles: Array<{ name: string; default: boolean; storage: object }> }>(
      drover('profile', 'list', '--json'),
    );
    assert.equal(list.defaultProfile, 'demo');
    assert.deepEqual(
      list.profiles.map((p) => [p.name, p.default]),
      [['demo', true]],
    );
    assert.deepEqual(list.profiles[0]!.storage, {
      backend: 'sqlite',
      path: path.join(home, 'data', 'demo', 'processes.sqlite'),
    });
  });

  it('config set daemon.timeout 5 -p demo, then config get gives 5', () => {
    const set = drover('config', 'set', 'daemon.timeout', '5', '-p', 'demo');
    assert.equal(set.status, 0, set.stderr);
    const get = drover('config', 'get', 'daemon.timeout', '-p', 'demo');
    assert.equal(get.status, 0, get.stderr);
    assert.equal(get.stdout.trim(), '5');
    const got = json<{ value: number; source: string; profile: string }>(
      runCli(['config', 'get', 'daemon.timeout', '--json'], { ...env, DROVER_PROFILE: 'demo' }),
    );
    assert.deepEqual(got, { key: 'daemon.timeout', value: 5, source: 'profile', profile: 'demo' });
  });

  it('config set daemon.timeout abc fails naming the option and the expected type', () => {
    const r = fails(['config', 'set', 'daemon.timeout', 'abc']);
    assert.match(r.stderr, /option 'daemon\.timeout' must be a number .*got "abc"/);
    fails(['config', 'set', 'no.such.option', '1']);
    fails(['config', 'set', 'logging.level', 'debug', '--global', '-p', 'demo']);
  });

  it('rejects bad profile names and accepts good ones', () => {
    // All of the issue's bad names are checked in test/config; here the ones a shell user would type.
    for (const name of ['../x', 'x y', 'n'.repeat(65)]) {
      const r = fails(['profile', 'setup', name]);
      assert.match(r.stderr, /invalid profile name/, name);
    }
    assert.equal(drover('profile', 'setup', 'my-profile.v2').status, 0);
    fails(['config', 'get', 'daemon.timeout', '-p', '../x']);
  });

  it('config list shows every option with its value, source and restart marker; --global and unset work', () => {
    assert.equal(drover('config', 'set', 'logging.level', 'warn', '--global').status, 0);
    const list = json<{
      profile: string;
      options: Array<{ name: string; value: unknown; source: string; restartRequired: boolean }>;
    }>(drover('config', 'list', '-p', 'demo', '--json'));
    const byName = new Map(list.options.map((o) => [o.name, o]));
    assert.equal(list.profile, 'demo');
    assert.deepEqual([byName.get('daemon.timeout')!.value, byName.get('daemon.timeout')!.source], [5, 'profile']);
    assert.deepEqual([byName.get('logging.level')!.value, byName.get('logging.level')!.source], ['warn', 'global']);
    assert.deepEqual(
      [byName.get('daemon.default_workers')!.value, byName.get('daemon.default_workers')!.source],
      [1, 'default'],
    );
    assert.equal(byName.get('daemon.worker_process_slots')!.restartRequired, true);
    const text = drover('config', 'list', '-p', 'demo').stdout;
    assert.match(text, /^daemon\.timeout\s+5\s+profile\s+host\s*$/m);
    assert.match(text, /^daemon\.worker_process_slots\s+200\s+default\s+shared\s+yes$/m);
    const unset = json<{ changed: boolean; value: number; source: string }>(
      drover('config', 'unset', 'daemon.timeout', '-p', 'demo', '--json'),
    );
    assert.deepEqual([unset.changed, unset.value, unset.source], [true, 2, 'default']);
  });

  it('profile show hides passwords; set-default and delete behave', () => {
    const r = drover(
      'profile',
      'setup',
      'pw',
      '--broker-url',
      'amqp://me:hunter2@mq.example:5672/v',
      '--sqlite-path',
      path.join(home, 'pw.sqlite'),
    );
    assert.equal(r.status, 0, r.stderr);
    const show = drover('profile', 'show', 'pw');
    assert.match(show.stdout, /amqp:\/\/me:\*\*\*@mq\.example:5672\/v/);
    const all =
      show.stdout + drover('profile', 'list', '--json').stdout + drover('profile', 'show', 'pw', '--json').stdout;
    assert.ok(!all.includes('hunter2'), 'the password is never shown');
    assert.ok(fs.readFileSync(file, 'utf8').includes('hunter2'), 'but it is kept in the file');

    assert.equal(drover('profile', 'set-default', 'pw').status, 0);
    assert.equal(json<{ name: string }>(drover('profile', 'show', '--json')).name, 'pw');

    // Without --force and without a terminal: refused, nothing changes.
    const refused = fails(['profile', 'delete', 'pw']);
    assert.match(refused.stderr, /not a terminal.*--force/);
    fails(['profile', 'delete', 'nope', '--force']);
    // With --force: removed from the file together with its SQLite data.
    fs.writeFileSync(path.join(home, 'pw.sqlite'), 'x');
    fs.mkdirSync(path.join(home, 'data', 'pw'), { recursive: true });
    const del = json<{ removed: string[]; defaultProfile: string | null }>(
      drover('profile', 'delete', 'pw', '--force', '--json'),
    );
    assert.deepEqual(del.removed.sort(), [path.join(home, 'data', 'pw'), path.join(home, 'pw.sqlite')].sort());
    assert.equal(del.defaultProfile, null, 'several profiles left: no silent new default');
    assert.ok(!fs.existsSync(path.join(home, 'pw.sqlite')));
    const list = json<{ profiles: Array<{ name: string }> }>(drover('profile', 'list', '--json'));
    assert.ok(!list.profiles.some((p) => p.name === 'pw'));
  });

  it('profile delete asks on a terminal: no keeps the profile, yes deletes it', async function () {
    requireService(this, haveScript(), 'script(1) from util-linux, to run the CLI on a pseudo-terminal');
    assert.equal(drover('profile', 'setup', 'asked').status, 0);
    const before = fs.readFileSync(file);
    const no = await runOnTerminal(['profile', 'delete', 'asked'], env, 'n');
    assert.equal(no.status, 1, no.output);
    assert.match(no.output, /Delete profile 'asked' .*\[y\/N\]/);
    assert.deepEqual(fs.readFileSync(file), before);
    const yes = await runOnTerminal(['profile', 'delete', 'asked'], env, 'y');
    assert.equal(yes.status, 0, yes.output);
    assert.match(yes.output, /Deleted profile 'asked'/);
    assert.ok(!JSON.parse(fs.readFileSync(file, 'utf8')).profiles.asked);
  });

  it('a config file with a JSON syntax error: every command fails with the path and position', () => {
    const broken = fs.readFileSync(file, 'utf8').replace('"version": 1,', '"version": 1');
    fs.writeFileSync(file, broken, { mode: 0o600 });
    const commands = [
      ['profile', 'list'],
      ['profile', 'show', 'demo'],
      ['profile', 'setup', 'other'],
      ['profile', 'delete', 'demo', '--force'],
      ['config', 'set', 'daemon.timeout', '3', '-p', 'demo'],
      ['config', 'get', 'daemon.timeout'],
      ['status'],
    ];
    for (const args of commands) {
      const r = fails(args);
      assert.ok(r.stderr.includes(`${file}: invalid JSON at line 3, column 3`), `${args.join(' ')}: ${r.stderr}`);
    }
    const j = runCli(['config', 'list', '--json'], env);
    assert.equal(j.status, 1);
    const err = JSON.parse(j.stdout) as { error: { code: string; message: string } };
    assert.equal(err.error.code, 'CONFIG_INVALID');
    assert.ok(err.error.message.includes(file));
  });

  it('refuses a config file written by a newer version, unchanged', () => {
    fs.writeFileSync(file, JSON.stringify({ version: 99, profiles: {}, future: true }), { mode: 0o600 });
    const r = fails(['config', 'set', 'daemon.timeout', '3', '--global']);
    assert.match(r.stderr, /written by a newer version of Drover/);
    fails(['profile', 'list']);
  });
});
