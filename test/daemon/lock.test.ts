/**
 * The profile lock under a real race: two processes that try it at the same instant. SQLite takes
 * its exclusive lock in two steps (shared, then exclusive), so a single attempt each could make
 * both give up and leave the profile with no daemon; exactly one must win, every time.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { cleanupTempDirs, tempDir } from '../helpers/env.js';

const LOCK_MODULE = fileURLToPath(new URL('../../src/daemon/lock.js', import.meta.url));

/** A child that tries the lock when told `go`, prints GOT or BUSY, and holds it until its stdin ends. */
const CHILD = `
import { tryAcquireDaemonLock } from ${JSON.stringify(LOCK_MODULE)};
process.stdout.write('ready\\n');
process.stdin.once('data', async () => {
  const lock = await tryAcquireDaemonLock(process.argv[1]);
  process.stdout.write(lock ? 'GOT\\n' : 'BUSY\\n');
  process.stdin.on('end', () => lock?.release());
  process.stdin.resume();
});
`;

function startChild(file: string): {
  child: ChildProcess;
  ready: Promise<string>;
  answer: Promise<string>;
} {
  const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD, file], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let out = '';
  const waiters: Array<() => void> = [];
  child.stdout!.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    for (const w of waiters.splice(0)) w();
  });
  const until = (re: RegExp): Promise<string> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const m = re.exec(out);
        if (m) resolve(m[0]);
        else waiters.push(check);
      };
      child.once('exit', (code) => reject(new Error(`lock child exited with ${code}: ${out}`)));
      check();
    });
  return { child, ready: until(/ready/), answer: until(/GOT|BUSY/) };
}

describe('the daemon lock', function () {
  this.timeout(60_000);
  after(() => cleanupTempDirs());

  it('of two processes trying the free lock at the same instant, exactly one gets it (8 rounds)', async () => {
    const dir = tempDir();
    for (let round = 0; round < 8; round++) {
      const file = path.join(dir, 'daemon.lock');
      const a = startChild(file);
      const b = startChild(file);
      try {
        await Promise.all([a.ready, b.ready]);
        a.child.stdin!.write('go\n');
        b.child.stdin!.write('go\n');
        const answers = (await Promise.all([a.answer, b.answer])).sort();
        assert.deepEqual(answers, ['BUSY', 'GOT'], `round ${round}`);
      } finally {
        for (const c of [a.child, b.child]) c.stdin!.end();
        await Promise.all(
          [a.child, b.child].map((c) => (c.exitCode !== null ? null : new Promise((r) => c.once('exit', r)))),
        );
      }
    }
  });
});
