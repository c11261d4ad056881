/**
 * sd_notify: what a daemon started with NOTIFY_SOCKET (as systemd's Type=notify does) tells the
 * service manager, read from a real Unix datagram socket; and that without NOTIFY_SOCKET nothing
 * is loaded or sent.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import {
  createNotifier,
  loadSdNotify,
  systemdNotifySender,
  type HelperRunner,
  type SdNotifyModule,
} from '../../src/daemon/notify.js';
import { createLogger, type LogSink } from '../../src/logging/index.js';
import { cleanupTempDirs, portOpen, requireService, spawnCli, tempDir } from '../helpers/env.js';
import { makeProfile, waitUntil, type TestProfile } from '../helpers/profile.js';
import { clientFor, stopAndCheckLeaks } from './helpers.js';

// Receives datagrams on a Unix socket and prints each as one JSON string per line.
const LISTENER = `
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print(json.dumps("LISTENING"), flush=True)
while True:
    print(json.dumps(s.recv(65536).decode()), flush=True)
`;

function hasPython(): boolean {
  try {
    execFileSync('python3', ['-c', 'import socket'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function hasProgram(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function addonLoads(): boolean {
  try {
    loadSdNotify();
    return true;
  } catch {
    return false;
  }
}

function memoryLogger(): { lines: string[]; logger: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  const sink: LogSink = { write: (level, _scope, message) => lines.push(`${level} ${message}`) };
  return { lines, logger: createLogger({ sinks: [sink], level: 'debug' }) };
}

describe('sd_notify', function () {
  this.timeout(60_000);

  describe('without a service manager', () => {
    it('loads nothing and sends nothing without NOTIFY_SOCKET', () => {
      let loads = 0;
      const n = createNotifier(memoryLogger().logger, {}, () => {
        loads++;
        throw new Error('must not be loaded');
      });
      assert.equal(n.active, false);
      assert.equal(n.watchdogIntervalMs, null);
      n.ready('x');
      n.status('y');
      n.watchdog();
      n.extendTimeout(1000);
      n.stopping('z');
      assert.equal(loads, 0);
    });

    it('without the native module, falls back to systemd-notify (saying so once)', () => {
      const { lines, logger } = memoryLogger();
      const runs: string[][] = [];
      const run: HelperRunner = (program, args, done) => {
        runs.push([program, ...args]);
        done(null);
      };
      const n = createNotifier(
        logger,
        { NOTIFY_SOCKET: '/nonexistent', WATCHDOG_USEC: '1000000', DROVER_SYSTEMD_NOTIFY: '/x/systemd-notify' },
        () => {
          throw new Error('Cannot find module sd-notify');
        },
        run,
      );
      assert.deepEqual([n.active, n.method, n.watchdogIntervalMs], [true, 'systemd-notify', 500]);
      n.ready('x');
      n.watchdog();
      assert.equal(lines.length, 1);
      assert.match(
        lines[0]!,
        /^info the sd-notify module is not available \(Cannot find module sd-notify\); notifying systemd through \/x\/systemd-notify$/,
      );
      assert.deepEqual(runs, [
        ['/x/systemd-notify', `--pid=${process.pid}`, 'READY=1', 'STATUS=x'],
        ['/x/systemd-notify', `--pid=${process.pid}`, 'WATCHDOG=1'],
      ]);
    });

    it('DROVER_SD_NOTIFY=addon: a module that fails to load is one warning, nothing is sent', () => {
      const { lines, logger } = memoryLogger();
      const n = createNotifier(
        logger,
        { NOTIFY_SOCKET: '/nonexistent', WATCHDOG_USEC: '1000000', DROVER_SD_NOTIFY: 'addon' },
        () => {
          throw new Error('libsystemd.so.0: cannot open shared object file');
        },
        () => assert.fail('systemd-notify must not run'),
      );
      assert.deepEqual([n.active, n.method], [false, null]);
      n.ready('x');
      n.watchdog();
      assert.equal(lines.length, 1);
      assert.match(lines[0]!, /^warn NOTIFY_SOCKET is set but the sd-notify module failed to load \(libsystemd/);
    });

    it('systemd-notify runs one at a time; what queues meanwhile is merged, READY and STOPPING never are', () => {
      const runs: string[][] = [];
      const pending: Array<() => void> = [];
      const run: HelperRunner = (_p, args, done) => {
        runs.push(args.slice(1));
        pending.push(() => done(null));
      };
      const send = systemdNotifySender(memoryLogger().logger, { run, pid: 42 });
      send('READY=1\nSTATUS=a');
      send('STATUS=b');
      send('WATCHDOG=1');
      send('STATUS=c');
      send('STOPPING=1\nSTATUS=bye');
      send('EXTEND_TIMEOUT_USEC=5');
      assert.deepEqual(runs, [['READY=1', 'STATUS=a']], 'one helper at a time');
      while (pending.length > 0) pending.shift()!();
      assert.deepEqual(runs, [
        ['READY=1', 'STATUS=a'],
        ['STATUS=c', 'WATCHDOG=1'],
        ['STOPPING=1', 'STATUS=bye'],
        ['EXTEND_TIMEOUT_USEC=5'],
      ]);
    });

    it('sends the watchdog only to the process systemd watches, and each status once', () => {
      const sent: string[] = [];
      const mod: SdNotifyModule = { sendState: (s) => sent.push(s) };
      const other = createNotifier(
        memoryLogger().logger,
        { NOTIFY_SOCKET: '@x', WATCHDOG_USEC: '4000000', WATCHDOG_PID: '1' },
        () => mod,
      );
      assert.equal(other.watchdogIntervalMs, null);
      const mine = createNotifier(
        memoryLogger().logger,
        { NOTIFY_SOCKET: '@x', WATCHDOG_USEC: '4000000', WATCHDOG_PID: String(process.pid) },
        () => mod,
      );
      assert.equal(mine.method, 'addon');
      assert.equal(mine.watchdogIntervalMs, 2000);
      mine.status('a');
      mine.status('a');
      mine.ready('b\nc');
      mine.ready('b\nc');
      mine.watchdog();
      mine.extendTimeout(1500);
      mine.stopping('bye');
      mine.stopping('bye', 2500);
      assert.deepEqual(sent, [
        'STATUS=a',
        'READY=1\nSTATUS=b c',
        'WATCHDOG=1',
        'EXTEND_TIMEOUT_USEC=1500000',
        'STOPPING=1\nSTATUS=bye',
        'STOPPING=1\nSTATUS=bye\nEXTEND_TIMEOUT_USEC=2500000',
      ]);
    });
  });

  for (const method of ['addon', 'systemd-notify'] as const) {
    describe(`with NOTIFY_SOCKET, through ${method === 'addon' ? 'the sd-notify module' : 'systemd-notify'}`, () => {
      let tp: TestProfile;
      let listener: ChildProcess | null = null;
      let daemon: ChildProcess | null = null;
      /** The datagrams received, without systemd-notify's MAINPID= lines and BARRIER=1 messages. */
      const messages: string[] = [];
      const has = (line: string) => (m: string) => m.split('\n').includes(line);
      let daemonOut = '';

      before(async function () {
        requireService(this, await portOpen(5672), 'RabbitMQ on 127.0.0.1:5672');
        requireService(this, hasPython(), 'python3 (to listen on a Unix datagram socket)');
        if (method === 'systemd-notify') {
          requireService(this, hasProgram('systemd-notify'), 'systemd-notify (part of systemd)');
        } else {
          requireService(this, addonLoads(), 'the sd-notify module (needs libsystemd-dev)');
        }
        tp = await makeProfile({ name: 'notify' });
      });

      after(async () => {
        daemon?.kill('SIGKILL');
        listener?.kill('SIGKILL');
        if (tp) await stopAndCheckLeaks(clientFor(tp), tp.home);
        await tp?.cleanup();
        cleanupTempDirs();
      });

      it('READY=1 once the socket listens and the workers are ready; STATUS, WATCHDOG, STOPPING, EXTEND_TIMEOUT_USEC', async () => {
        const sock = path.join(tempDir(), 'notify.sock');
        listener = spawn('python3', ['-c', LISTENER, sock], { stdio: ['ignore', 'pipe', 'inherit'] });
        let buf = '';
        let listening = false;
        listener.stdout!.on('data', (d: Buffer) => {
          buf += d.toString();
          const parts = buf.split('\n');
          buf = parts.pop()!;
          for (const p of parts) {
            const m = JSON.parse(p) as string;
            if (m === 'LISTENING') listening = true;
            else if (m !== 'BARRIER=1') {
              messages.push(
                m
                  .split('\n')
                  .filter((l) => !l.startsWith('MAINPID='))
                  .join('\n'),
              );
            }
          }
        });
        await waitUntil(() => listening, 10_000, 'the listener');

        daemon = spawnCli(['daemon', 'start', '--foreground', '2'], {
          ...tp.env,
          NOTIFY_SOCKET: sock,
          WATCHDOG_USEC: '600000',
          DROVER_SD_NOTIFY: method,
        });
        daemon.stdout!.on('data', (d: Buffer) => (daemonOut += d.toString()));
        daemon.stderr!.on('data', (d: Buffer) => (daemonOut += d.toString()));
        const exited = new Promise<number | null>((resolve) => daemon!.on('exit', (code) => resolve(code)));

        const ready = await waitUntil(() => messages.find(has('READY=1')), 30_000, 'READY=1');
        assert.match(ready!, /^READY=1\nSTATUS=2\/2 workers ready, 0 processes running$/);
        const client = clientFor(tp);
        const status = await client.getStatus();
        assert.equal(status.supervisor, 'systemd');
        assert.ok(status.workers.every((w) => w.state === 'ready'));
        // Nothing said READY before the workers did (the log is written in order).
        const log = fs.readFileSync(client.logFile, 'utf8');
        const readyAt = log.indexOf('daemon ready');
        for (const w of status.workers) {
          const at = log.indexOf(`worker ${w.id} (pid ${w.pid}) is ready`);
          assert.ok(at >= 0 && at < readyAt, `worker ${w.id} was ready before the daemon said so`);
        }
        // No STATUS= before READY=1 (watchdog pings may come first: the supervision tick starts at once).
        assert.deepEqual(
          messages.slice(0, messages.indexOf(ready!)).filter((m) => m.includes('STATUS=')),
          [],
          messages.join(' | '),
        );

        await waitUntil(() => messages.filter(has('WATCHDOG=1')).length >= 3, 5000, 'watchdog pings');

        assert.equal(await client.increaseWorkers(1), 3);
        await waitUntil(
          () => messages.some(has('STATUS=3/3 workers ready, 0 processes running')),
          30_000,
          'a STATUS update after incr',
        );

        daemon.kill('SIGTERM');
        assert.equal(await exited, 0);
        daemon = null;
        const stopping = await waitUntil(() => messages.find(has('STOPPING=1')), 5000, 'STOPPING=1');
        // The drain's time asked for with STOPPING=1 itself: a daemon that drained at once still sent it.
        assert.ok(
          stopping!.split('\n').some((l) => /^EXTEND_TIMEOUT_USEC=\d+$/.test(l)),
          messages.join(' | '),
        );
        // Foreground: the log also went to stdout, worker lines prefixed with their id and pid.
        assert.match(daemonOut, /INFO {2}\[w1 \d+\] worker .* consuming profile 'notify'/);
        if (method === 'systemd-notify') assert.match(daemonOut, /notifying systemd through systemd-notify/);
        assert.equal(client.isDaemonRunning, false);
      });
    });
  }
});
