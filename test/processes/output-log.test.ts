/**
 * The output log of a run (engine/output-log.ts) and its reader (client/process-log.ts), on their
 * own: rotation and its bound, fresh and appending runs, a log that cannot be written, and a
 * follower that reads across rotations.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { processLogPath, processLogPaths, rotatedLogPath } from '../../src/config/index.js';
import { LogFollower, readWholeFile } from '../../src/client/process-log.js';
import { OutputLogFile } from '../../src/engine/index.js';
import { createLogger, silentLogger, type LogLevel } from '../../src/logging/index.js';
import { cleanupTempDirs, tempDir } from '../helpers/env.js';

function recorder(): { logger: ReturnType<typeof createLogger>; lines: string[] } {
  const lines: string[] = [];
  const logger = createLogger({
    sinks: [{ write: (level: LogLevel, _scope: string, message: string) => lines.push(`${level}: ${message}`) }],
  });
  return { logger, lines };
}

describe('output log of a process', function () {
  after(() => cleanupTempDirs());

  it('lives at <log dir>/processes/<id>.log, rotated to <id>.log.1', () => {
    const env = { DROVER_HOME: '/tmp/home-x' };
    assert.equal(processLogPath('work', 42, env), '/tmp/home-x/log/work/processes/42.log');
    assert.deepEqual(processLogPaths('work', 42, env), [
      '/tmp/home-x/log/work/processes/42.log.1',
      '/tmp/home-x/log/work/processes/42.log',
    ]);
    assert.equal(rotatedLogPath('/a/b.log'), '/a/b.log.1');
  });

  it('rotates when a write would pass the limit, keeping at most two files of the last output', () => {
    const file = path.join(tempDir(), 'processes', '7.log');
    const log = new OutputLogFile(file, 100, true, silentLogger);
    let all = '';
    for (let i = 0; i < 50; i++) {
      const line = `line ${i}\n`;
      all += line;
      log.write(i % 2 ? Buffer.from(line) : line);
      assert.ok(fs.statSync(file).size <= 100);
      if (fs.existsSync(rotatedLogPath(file))) assert.ok(fs.statSync(rotatedLogPath(file)).size <= 100);
    }
    log.close();
    log.write('after close\n');
    const kept = readWholeFile(rotatedLogPath(file)).toString() + readWholeFile(file).toString();
    assert.ok(all.endsWith(kept), kept);
    assert.ok(kept.length > 100 && kept.endsWith('line 49\n'));
    assert.equal((fs.statSync(file).mode & 0o777).toString(8), '600');
  });

  it('keeps the last bytes of a single write larger than the limit', () => {
    const file = path.join(tempDir(), '8.log');
    const log = new OutputLogFile(file, 10, true, silentLogger);
    log.write('0123456789abcdefghij');
    log.close();
    assert.equal(fs.readFileSync(file, 'utf8'), 'abcdefghij');
  });

  it('a first run starts anew (removing what an earlier process of the id left); a later run appends', () => {
    const file = path.join(tempDir(), '9.log');
    fs.writeFileSync(file, 'stale\n');
    fs.writeFileSync(rotatedLogPath(file), 'stale rotated\n');
    const first = new OutputLogFile(file, 1000, true, silentLogger);
    first.write('run 1\n');
    first.close();
    assert.equal(fs.readFileSync(file, 'utf8'), 'run 1\n');
    assert.ok(!fs.existsSync(rotatedLogPath(file)));
    const second = new OutputLogFile(file, 1000, false, silentLogger);
    second.write('run 2\n');
    second.close();
    assert.equal(fs.readFileSync(file, 'utf8'), 'run 1\nrun 2\n');
  });

  it('a log that cannot be written is given up with one warning, never throwing', () => {
    const blocker = path.join(tempDir(), 'a-file');
    fs.writeFileSync(blocker, '');
    const { logger, lines } = recorder();
    const log = new OutputLogFile(path.join(blocker, 'processes', '1.log'), 1000, true, logger);
    log.write('x');
    log.write('y');
    log.close();
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(lines[0]!, /^warn: output log .*1\.log: .*the rest of this run's output is not logged/);
  });

  it('a follower reads what was appended, across rotations, and nothing while the file is missing', () => {
    const file = path.join(tempDir(), '10.log');
    const f = new LogFollower(file);
    assert.equal(f.read().length, 0);
    const log = new OutputLogFile(file, 30, true, silentLogger);
    let want = '';
    let got = '';
    for (let i = 0; i < 40; i++) {
      const line = `l${i}\n`;
      want += line;
      log.write(line);
      // Read every other write: the follower is never more than one file behind.
      if (i % 2) got += f.read().toString();
    }
    got += f.read().toString();
    log.close();
    f.close();
    assert.equal(got, want);
  });
});
