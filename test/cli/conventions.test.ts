/**
 * The CLI as its users meet it (issue 12): help, "did you mean" for a typo, shell completion, the
 * exit-code table, `-t` against a daemon that does not answer, the oclif-free fast path of
 * `daemon status` (same output as the oclif command, none of oclif, the store drivers, amqplib or
 * D-Bus loaded), `--json` for the largest values Drover allows, and spinners only on a terminal.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import {
  CLI,
  REPO_ROOT,
  cleanupTempDirs,
  portOpen,
  requireService,
  runCli,
  runCliAsync,
  tempDir,
} from '../helpers/env.js';
import { makeProfile, startWorker, stopWorkers, type TestProfile, type WorkerProc } from '../helpers/profile.js';
import { clientFor, stopAndCheckLeaks } from '../daemon/helpers.js';
import { closestCommand, editDistance } from '../../src/cli/command-not-found.js';
import { parseDaemonStatusArgv, type DaemonStatusResult } from '../../src/cli/daemon-status.js';
import type { ProcessListResult } from '../../src/cli/process-list.js';
import { ProcessClient } from '../../src/api/processes.js';
import { waitForProcesses } from '../../src/api/control.js';

function hasProgram(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`]).status === 0;
}

/** Runs `drover ARGS` under a pseudo-terminal (util-linux `script`), typing `input`. */
function runInTerminal(args: string[], env: NodeJS.ProcessEnv, input = ''): { status: number; output: string } {
  const cmd = [process.execPath, CLI, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const r = spawnSync('script', ['-qec', cmd, '/dev/null'], {
    env: { ...process.env, ...env, TERM: 'xterm', CI: '' },
    input,
    encoding: 'utf8',
    timeout: 60_000,
  });
  // eslint-disable-next-line no-control-regex
  return { status: r.status ?? -1, output: (r.stdout ?? '').replace(/\u001b\[[0-9;?]*[A-Za-z]/g, '') };
}

/** Writes an ESM hook that records every module URL loaded into `file`; returns the --import value. */
function moduleRecorder(dir: string, file: string): string {
  const hook = path.join(dir, 'record-modules.mjs');
  const loader = [
    "import { appendFileSync } from 'node:fs';",
    `export async function resolve(s, c, n) { const r = await n(s, c); appendFileSync(${JSON.stringify(file)}, r.url + '\\n'); return r; }`,
  ].join('\n');
  fs.writeFileSync(
    hook,
    [
      "import { register } from 'node:module';",
      "import fs from 'node:fs';",
      `fs.writeFileSync(${JSON.stringify(file)}, '');`,
      `register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(loader)}));`,
    ].join('\n'),
  );
  return pathToFileURL(hook).href;
}

describe('cli: conventions', function () {
  this.timeout(120_000);
  let env: NodeJS.ProcessEnv;

  before(() => {
    env = { DROVER_HOME: tempDir(), XDG_CACHE_HOME: tempDir(), DROVER_PROFILE: '' };
    const r = runCli(['profile', 'setup', 'conv'], env);
    assert.equal(r.status, 0, r.stderr);
  });
  after(() => cleanupTempDirs());

  it('drover help daemon lists the daemon commands with their summaries', () => {
    const r = runCli(['help', 'daemon'], env);
    assert.equal(r.status, 0, r.stderr);
    for (const verb of ['start', 'status', 'stop', 'restart', 'incr', 'decr', 'logs', 'install', 'uninstall']) {
      assert.match(r.stdout, new RegExp(`^ {2}daemon ${verb} +\\S`, 'm'), verb);
    }
    const h = runCli(['daemon', 'status', '--help'], env);
    assert.equal(h.status, 0);
    assert.match(h.stdout, /-t, --timeout=<seconds>/);
    assert.match(h.stdout, /-a, --all/);
  });

  it('a typo gets "did you mean", a swap of two letters counting as one edit', async () => {
    const r = await runCliAsync(['daemon', 'stauts'], env);
    assert.equal(r.status, 2, 'unknown command: a usage error');
    assert.match(r.stderr, /daemon stauts is not a drover command\./);
    assert.match(r.stderr, /^Did you mean drover daemon status\?$/m);
    assert.match(r.stderr, /Run drover help daemon for a list of available commands\./);
    const far = await runCliAsync(['frobnicate'], env);
    assert.equal(far.status, 2);
    assert.doesNotMatch(far.stderr, /Did you mean/);
    assert.equal(editDistance('stauts', 'status'), 1);
    assert.equal(editDistance('stauts', 'start'), 2);
    assert.equal(closestCommand('daemon:stauts', ['daemon:start', 'daemon:status', 'daemon:stop']), 'daemon:status');
  });

  it('on a terminal the suggestion is a question, and yes runs the suggested command', function () {
    requireService(this, hasProgram('script'), 'util-linux script (a pseudo-terminal)');
    const r = runInTerminal(['daemon', 'stauts'], env, '\r');
    assert.match(r.output, /Did you mean drover daemon status\? \[Y\/n\]/);
    assert.match(r.output, /The daemon of profile 'conv' is not running\./, 'the suggested command ran');
    assert.equal(r.status, 3, 'with the exit code of daemon status');
  });

  it('shell completion: the generated bash completion completes commands and flags', function () {
    requireService(this, hasProgram('bash'), 'bash');
    const r = runCli(['autocomplete', 'bash'], env);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /drover autocomplete script bash/);
    const script = runCli(['autocomplete', 'script', 'bash'], env);
    assert.equal(script.status, 0, script.stderr);
    const setup = /DROVER_AC_BASH_SETUP_PATH=(\S+)/.exec(script.stdout)?.[1];
    assert.ok(setup && fs.existsSync(setup), script.stdout);
    const complete = (...words: string[]): string[] =>
      execFileSync(
        'bash',
        [
          '-c',
          `source "$1"; COMP_WORDS=("\${@:2}"); COMP_CWORD=$(($# - 2)); COMP_LINE="\${*:2}"; COMP_POINT=\${#COMP_LINE}; ` +
            `_drover_autocomplete; printf '%s\\n' "\${COMPREPLY[@]}"`,
          'complete',
          setup,
          'drover',
          ...words,
        ],
        { encoding: 'utf8' },
      )
        .split('\n')
        .filter((l) => l !== '');
    assert.deepEqual(complete('daemon', 'st').sort(), ['start', 'status', 'stop']);
    assert.ok(complete('daemon', 'status', '--t').includes('--timeout'));
  });

  it('bad flag values are usage errors (exit 2), in both the fast path and oclif', () => {
    for (const args of [
      ['daemon', 'status', '-t', '0'],
      ['daemon', 'status', '-t', 'soon'],
      ['daemon', 'status', '--bogus'],
      ['process', 'list', '--state', 'sleeping'],
      ['daemon', 'install', '--init', 'upstart', '--dry-run'],
    ]) {
      const r = runCli(args, env);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /Error/);
    }
    assert.deepEqual(parseDaemonStatusArgv(['-t0.5', '--json', '-a'], {}), {
      profile: undefined,
      json: true,
      timeout: 0.5,
      all: true,
    });
    assert.deepEqual(parseDaemonStatusArgv(['--profile=x'], { DROVER_PROFILE: 'y' }), {
      profile: 'x',
      json: false,
      all: false,
      timeout: undefined,
    });
    assert.equal(parseDaemonStatusArgv([], { DROVER_PROFILE: 'y' })?.profile, 'y');
    assert.equal(parseDaemonStatusArgv(['-t', '0'], {}), null, 'left to oclif to report');
    assert.equal(parseDaemonStatusArgv(['--all', '--all'], {}), null);
    assert.equal(parseDaemonStatusArgv(['--help'], {}), null);
  });

  it('daemon status answers in its fast path exactly as the oclif command does', () => {
    const fast = runCli(['daemon', 'status', '--json'], env);
    // The same command through oclif (bin/drover.js hands everything but its fast paths to it).
    const viaOclif = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { run, flush, handle } from '@oclif/core';
         run(process.argv.slice(1), ${JSON.stringify(pathToFileURL(CLI).href)}).then(() => flush()).catch((e) => handle(e));`,
        'daemon',
        'status',
        '--json',
      ],
      { cwd: REPO_ROOT, env: { ...process.env, ...env }, encoding: 'utf8' },
    );
    assert.equal(fast.status, 3);
    assert.equal(viaOclif.status, 3, viaOclif.stderr);
    assert.deepEqual(JSON.parse(fast.stdout), JSON.parse(viaOclif.stdout));
    assert.equal((JSON.parse(fast.stdout) as DaemonStatusResult).profiles[0]!.answer, 'not-running');
  });

  it('process submit answers in its fast path as the oclif command does, without loading oclif', () => {
    const viaOclif = (args: string[]): ReturnType<typeof spawnSync> =>
      spawnSync(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `import { run, flush, handle } from '@oclif/core';
           run(process.argv.slice(1), ${JSON.stringify(pathToFileURL(CLI).href)}).then(() => flush()).catch((e) => handle(e));`,
          ...args,
        ],
        { cwd: REPO_ROOT, env: { ...process.env, ...env }, encoding: 'utf8' },
      );
    const dir = tempDir();
    const log = path.join(dir, 'modules.txt');
    const hook = moduleRecorder(dir, log);
    const submit = ['process', 'submit', 'core.arithmetic.add', '-i', 'x=1', '-i', 'y=2', '--label', 'fast', '--json'];
    const fast = spawnSync(process.execPath, ['--import', hook, CLI, ...submit], {
      env: { ...process.env, ...env },
      encoding: 'utf8',
    });
    assert.equal(fast.status, 0, fast.stderr);
    assert.ok(!fs.readFileSync(log, 'utf8').includes('@oclif'), 'the fast path loaded oclif');
    const slow = viaOclif(submit);
    assert.equal(slow.status, 0, String(slow.stderr));
    const a = JSON.parse(fast.stdout) as { id: number; type: string };
    const b = JSON.parse(String(slow.stdout)) as { id: number; type: string };
    assert.deepEqual(b, { id: a.id + 1, type: a.type });
    // The same warning (no daemon runs), on stderr, from both.
    assert.match(fast.stderr, /^Warning: no daemon of profile '[^']+' is running/m);
    assert.equal(String(slow.stderr).match(/^Warning: .*$/m)?.[0], fast.stderr.match(/^Warning: .*$/m)?.[0]);
    const list = JSON.parse(runCli(['process', 'list', '--json'], env).stdout) as ProcessListResult;
    assert.deepEqual(
      list.processes.filter((p) => p.id === a.id || p.id === b.id).map((p) => [p.label, p.state]),
      [
        ['fast', 'created'],
        ['fast', 'created'],
      ],
    );
    // Errors exit with the same code and message either way, and store nothing.
    for (const args of [
      ['process', 'submit', 'no.such.type', '--json'],
      ['process', 'submit', 'core.arithmetic.add', '--inputs', '{', '--json'],
    ]) {
      const f = runCli(args, env);
      const o = viaOclif(args);
      assert.notEqual(f.status, 0, f.stdout);
      assert.equal(f.status, o.status, `${args.join(' ')}: ${f.stdout} / ${String(o.stdout)}`);
      assert.deepEqual(JSON.parse(f.stdout), JSON.parse(String(o.stdout)));
    }
    const after = JSON.parse(runCli(['process', 'list', '--all', '--json'], env).stdout) as ProcessListResult;
    assert.equal(Math.max(...after.processes.map((p) => p.id)), b.id);
  });

  it('--version and daemon status load neither oclif nor a store driver, amqplib or D-Bus', () => {
    const dir = tempDir();
    const log = path.join(dir, 'modules.txt');
    const hook = moduleRecorder(dir, log);
    for (const args of [['--version'], ['daemon', 'status'], ['daemon', 'status', '--json', '-a']]) {
      const r = spawnSync(process.execPath, ['--import', hook, CLI, ...args], {
        env: { ...process.env, ...env },
        encoding: 'utf8',
      });
      assert.ok([0, 3].includes(r.status ?? -1), `${args.join(' ')}: ${r.stderr}`);
      const loaded = fs.readFileSync(log, 'utf8');
      for (const heavy of [
        '@oclif',
        'amqplib',
        '/pg/',
        'better-sqlite3',
        'dbus-next',
        '/dist/src/service/supervisor.js',
      ]) {
        assert.ok(!loaded.includes(heavy), `drover ${args.join(' ')} loaded ${heavy}`);
      }
      assert.ok(loaded.includes('/dist/src/') || args[0] === '--version', 'the recorder saw the modules');
    }
    const v = runCli(['--version'], env);
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    assert.equal(v.stdout, `drover/${pkg.version} ${process.platform}-${process.arch} node-${process.version}\n`);
  });
});

describe('cli: against a running daemon', function () {
  this.timeout(120_000);
  let tp: TestProfile;
  let workers: WorkerProc[] = [];

  before(async function () {
    requireService(this, await portOpen(5672), 'RabbitMQ on 127.0.0.1:5672');
    tp = await makeProfile({ name: 'conv-run', options: { 'daemon.timeout': 20, 'daemon.default_workers': 1 } });
  });
  afterEach(async () => {
    await stopWorkers(workers);
    workers = [];
  });
  after(async () => {
    if (tp) await stopAndCheckLeaks(clientFor(tp), tp.home);
    await tp?.cleanup();
    cleanupTempDirs();
  });

  it('daemon status -t 0.5 against a SIGSTOPped daemon exits 5 (timed out) at once, not after daemon.timeout', async () => {
    const client = clientFor(tp);
    await client.startDaemon();
    const pid = client.daemonPid!;
    assert.ok(pid > 1 && pid !== process.pid);
    process.kill(pid, 'SIGSTOP');
    try {
      const t0 = Date.now();
      const r = await runCliAsync(['daemon', 'status', '-t', '0.5', '--json'], tp.env);
      const ms = Date.now() - t0;
      assert.equal(r.status, 5, r.stdout + r.stderr);
      const entry = (JSON.parse(r.stdout) as DaemonStatusResult).profiles[0]!;
      assert.deepEqual([entry.answer, entry.running], ['timed-out', true]);
      assert.match(entry.message!, /did not answer 'status' within 0\.5s/);
      // daemon.timeout is 20 s: had -t been ignored, this would have taken that long.
      assert.ok(ms < 10_000, `took ${ms} ms`);
      console.log(`      daemon status -t 0.5 against a stopped daemon: ${ms} ms, exit 5`);
      const text = await runCliAsync(['daemon', 'status', '-t', '0.5'], tp.env);
      assert.equal(text.status, 5);
      assert.match(
        text.stdout,
        /did not answer 'status' within 0\.5s \(it accepted the connection but is not responding\)/,
      );
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await client.stopDaemon();
  });

  it('process show --json prints a process whose outputs hold a 16 MiB string', async () => {
    workers = [await startWorker(tp)];
    const pc = await ProcessClient.open(tp.reload());
    try {
      const size = 16 * 1024 * 1024;
      const id = await pc.submit('core.shell', {
        command: ['sh', '-c', `head -c ${size} /dev/zero | tr '\\0' x`],
        maxOutputBytes: size,
      });
      const [p] = await waitForProcesses(pc, [id], { timeoutSeconds: 60 });
      assert.equal(p!.state, 'finished', p!.exception ?? '');
      const r = await runCliAsync(['process', 'show', String(id), '--json'], tp.env);
      assert.equal(r.status, 0, r.stderr.slice(0, 2000));
      const shown = JSON.parse(r.stdout) as { id: number; outputs: { stdout: string; stdoutTruncated: boolean } };
      assert.equal(shown.id, id);
      assert.equal(shown.outputs.stdout.length, size);
      assert.equal(shown.outputs.stdoutTruncated, false);
      assert.ok(/^x+$/.test(shown.outputs.stdout));
    } finally {
      await pc.close();
    }
  });

  it('spinners: on a terminal on stderr while daemon start waits; never under --json or without a terminal', async function () {
    requireService(this, hasProgram('script'), 'util-linux script (a pseudo-terminal)');
    const piped = await runCliAsync(['daemon', 'start'], tp.env);
    assert.equal(piped.status, 0, piped.stderr);
    assert.doesNotMatch(piped.stderr, /Waiting for/, 'no spinner without a terminal');
    const stop = runInTerminal(['daemon', 'stop'], tp.env);
    assert.equal(stop.status, 0, stop.output);
    assert.match(stop.output, /Waiting for the daemon of profile 'conv-run' to drain the workers and exit\.\.\. done/);
    const start = runInTerminal(['daemon', 'start', '--json'], tp.env);
    assert.equal(start.status, 0, start.output);
    assert.doesNotMatch(start.output, /Waiting for/, 'no spinner under --json');
    assert.equal(
      (JSON.parse(start.output.slice(start.output.indexOf('{'))) as { profile: string }).profile,
      'conv-run',
    );
    assert.equal(runCli(['daemon', 'stop'], tp.env).status, 0);
  });
});
