/**
 * `npm start` under a supervisor (issue 13, must-show 8): the start script replaces its shell with
 * the daemon, so the SIGTERM or SIGINT that npm forwards reaches the daemon itself, which drains
 * its workers and exits; nothing of the profile is left running. (`--ignore-scripts` skips the
 * `prestart` build, which `npm test` has just done.)
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { REPO_ROOT, cleanupTempDirs, tempDir, waitUntil } from '../helpers/env.js';

/** The start time of a live pid (field 22 of /proc/PID/stat), or null when it is gone or a zombie. */
function startTime(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[0] === 'Z' ? null : fields[19]!;
  } catch {
    return null;
  }
}

/** Pids of every descendant of `pid` (through /proc/PID/task/*\/children). */
function descendants(pid: number): number[] {
  const out: number[] = [];
  const walk = (p: number): void => {
    let kids: number[] = [];
    try {
      for (const t of fs.readdirSync(`/proc/${p}/task`)) {
        kids.push(
          ...fs
            .readFileSync(`/proc/${p}/task/${t}/children`, 'utf8')
            .split(' ')
            .filter((x) => x.trim() !== '')
            .map(Number),
        );
      }
    } catch {
      kids = [];
    }
    for (const k of kids) {
      out.push(k);
      walk(k);
    }
  };
  walk(pid);
  return out;
}

const npmCli = process.env.npm_execpath && fs.existsSync(process.env.npm_execpath) ? process.env.npm_execpath : null;

describe('npm start under a supervisor (issue 13)', function () {
  this.timeout(60_000);
  let npm: ChildProcess | null = null;
  after(() => {
    if (npm && npm.exitCode === null && npm.signalCode === null) npm.kill('SIGKILL');
    cleanupTempDirs();
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal} to the npm process stops the daemon and its workers: none is left`, async () => {
      const home = tempDir('drover-npm-start-');
      // `npm` as the one running this test when there is one, else from PATH.
      const [cmd, args] = npmCli ? [process.execPath, [npmCli]] : ['npm', []];
      const env: NodeJS.ProcessEnv = { ...process.env, DROVER_HOME: home };
      delete env.DROVER_PROFILE; // the default profile, created on first use, as for a new user
      npm = spawn(cmd, [...args, 'start', '--ignore-scripts'], {
        cwd: REPO_ROOT,
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const child = npm;
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      await waitUntil(
        () => /worker w1 \(pid \d+\) is ready/.test(out),
        30_000,
        `the daemon's worker to be ready:\n${out}`,
      );
      const tree = descendants(child.pid!).map((pid) => ({ pid, start: startTime(pid) }));
      const daemon = Number(/daemon of profile 'default' starting \(pid (\d+)/.exec(out)![1]);
      const worker = Number(/worker w1 \(pid (\d+)\) is ready/.exec(out)![1]);
      const pids = tree.map((t) => t.pid);
      assert.ok(
        pids.includes(daemon) && pids.includes(worker),
        `daemon ${daemon} and worker ${worker} under npm: ${pids}`,
      );
      child.kill(signal);
      await exited;
      // npm exits once its child has: by then the daemon has drained and stopped its worker.
      const left = tree.filter((t) => t.pid > 1 && t.start !== null && startTime(t.pid) === t.start);
      // Nothing of it may outlive the test, whatever it asserts (each pid checked by its start time).
      for (const t of left) process.kill(t.pid, 'SIGKILL');
      assert.deepEqual(left, [], `left running after npm exited:\n${out}`);
      assert.match(out, /daemon stopped/);
      assert.match(out, /worker w1 \(pid \d+\) exited with code 0 after draining/);
      fs.rmSync(home, { recursive: true, force: true });
    });
  }
});
