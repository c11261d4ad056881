/**
 * The REAL daemon (`drover daemon start --foreground`) under a REAL systemd user manager
 * (test/helpers/systemd.ts, with a journald in the namespace), with real RabbitMQ and SQLite:
 * issue 5, points 1-6, and the client's delegation to `systemctl --user`.
 *
 * One manager and one profile (`sd`, 2 workers, shutdown grace 2 s, installed with WatchdogSec=3
 * and RestartSec=0) serve the whole file, so the tests run in order and each starts from where the
 * previous one left the unit. The durations measured (start until READY, restart after SIGKILL,
 * watchdog restart, stop) are printed at the end; nothing asserts on them.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { RABBIT_URL, cleanupTempDirs, requireService, runCli, tempDir, waitUntil } from '../helpers/env.js';
import { sdNotifyAddonProblem } from '../../src/daemon/notify.js';
import { dropTopology, makeProfile, type TestProfile } from '../helpers/profile.js';
import { requireUserManager, type UserManager } from '../helpers/systemd.js';
import { killProcessesOfHome, pidAlive, processesOfHome } from '../daemon/helpers.js';
import { Config, configFilePath } from '../../src/config/index.js';
import type { ProcessClient } from '../../src/api/processes.js';
import { waitForProcesses } from '../../src/api/control.js';
import { DaemonClient as BareDaemonClient } from '../../src/client/index.js';
import {
  DAEMON_EXIT_ALREADY_RUNNING,
  DAEMON_PID_FILE,
  isTerminal,
  type DaemonStatus,
} from '../../src/protocol/index.js';
import { DaemonClient, getDaemonClient } from '../../src/index.js';
import {
  DAEMON_PID_FILE_NAME,
  installSystemdService,
  systemdInstanceUnit,
  type InstalledUnitCheck,
} from '../../src/service/index.js';
import type { DaemonStatusResult } from '../../src/commands/daemon/status.js';

const UNIT = 'drover@sd.service';

function whichOk(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const V2 = 'my-profile.v2';
const V2_UNIT = 'drover@my\\x2dprofile.v2.service';

/**
 * How the daemon notifies systemd: through the native sd-notify module, or, as on a machine where
 * it could not be built, through systemd-notify. The second variant runs systemd-notify without
 * CAP_SYS_ADMIN, as for an unprivileged user: it cannot send as the daemon's pid then, so only the
 * unit's NotifyAccess=all (rendered by `daemon install` for this case) lets its messages in.
 */
interface NotifyVariant {
  name: string;
  notifyAccess: 'main' | 'all';
  /**
   * The profile's message bus. The two variants take one each, so both buses run the whole unit
   * life cycle (start, SIGKILL, watchdog, stop, login) without doubling the run.
   */
  bus: 'local' | 'rabbitmq';
  env(): NodeJS.ProcessEnv;
}

const VARIANTS: NotifyVariant[] = [
  { name: 'the sd-notify module', notifyAccess: 'main', bus: 'local', env: () => ({ DROVER_SD_NOTIFY: 'addon' }) },
  {
    name: 'systemd-notify (no sd-notify module, unprivileged)',
    notifyAccess: 'all',
    bus: 'rabbitmq',
    env: () => {
      const wrapper = path.join(tempDir('drover-notify-'), 'systemd-notify-unprivileged');
      fs.writeFileSync(wrapper, '#!/bin/sh\nexec setpriv --bounding-set -sys_admin -- systemd-notify "$@"\n', {
        mode: 0o755,
      });
      return { DROVER_SD_NOTIFY: 'systemd-notify', DROVER_SYSTEMD_NOTIFY: wrapper };
    },
  },
];

for (const variant of VARIANTS) {
  describe(`the daemon under a real systemd user manager, notifying through ${variant.name}, ${variant.bus} bus`, function () {
    this.timeout(120_000);
    let um: UserManager;
    let tp: TestProfile;
    let v2Uuid: string;
    /** Environment of a client outside the namespace that sees this manager's units. */
    let env: NodeJS.ProcessEnv;
    let pc: ProcessClient;
    const figures: string[] = [];

    let variantEnv: NodeJS.ProcessEnv = {};
    const drover = (...args: string[]): ReturnType<UserManager['drover']> =>
      um.drover(args, { DROVER_HOME: tp.home, ...variantEnv });
    /** `systemctl --user show UNIT -p ...` as an object. */
    const show = async (
      unit = UNIT,
      props = ['ActiveState', 'SubState', 'MainPID', 'NRestarts', 'Result', 'StatusText'],
    ) => {
      const r = await um.systemctl('show', unit, '-p', props.join(','));
      assert.equal(r.status, 0, r.stderr);
      return Object.fromEntries(
        r.stdout
          .trim()
          .split('\n')
          .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
      ) as Record<string, string>;
    };
    const mainPid = async (unit = UNIT): Promise<number> => Number((await show(unit, ['MainPID'])).MainPID);
    /** What the user manager logged about the unit (its journal entries with USER_UNIT=). */
    const managerSays = async (unit = UNIT): Promise<string[]> =>
      (await um.journal(unit)).filter((e) => e.USER_UNIT === unit).map((e) => String(e.MESSAGE));
    /** Signals the unit's main process; refuses a pid of 0 (the test's own process group). */
    const signalMain = async (signal: NodeJS.Signals): Promise<number> => {
      const pid = await mainPid();
      assert.ok(pid > 1 && pid !== process.pid, `no main process to send ${signal} to (MainPID=${pid})`);
      process.kill(pid, signal);
      return pid;
    };
    /** A client of profile `sd` that never delegates (talks to the daemon's socket only). */
    const bare = (): BareDaemonClient => new BareDaemonClient(tp.reload(), { env });
    const status = (): Promise<DaemonStatus> => bare().getStatus();
    /** Waits until the unit is active with a main process other than `old`; returns its pid. */
    const newMainPid = (old: number, what: string): Promise<number> =>
      waitUntil(
        async () => {
          const p = await show();
          const pid = Number(p.MainPID);
          return p.ActiveState === 'active' && pid !== old && pid > 0 ? pid : 0;
        },
        30_000,
        what,
        50,
      );
    const submitSleeps = async (seconds: number[]): Promise<number[]> => {
      const ids: number[] = [];
      for (const s of seconds) ids.push(await pc.submit('core.sleep', { seconds: s }));
      return ids;
    };
    const waitRunning = (ids: number[]): Promise<boolean> =>
      waitUntil(
        async () => (await Promise.all(ids.map((id) => pc.getProcess(id)))).every((p) => p.state === 'running'),
        30_000,
        `processes ${ids.join(', ')} to run`,
        100,
      );

    before(async function () {
      if (variant.notifyAccess === 'main') {
        requireService(this, sdNotifyAddonProblem() === null, `the sd-notify module: ${sdNotifyAddonProblem()}`);
      } else {
        requireService(this, whichOk('setpriv') && whichOk('systemd-notify'), 'setpriv and systemd-notify');
      }
      um = await requireUserManager(this, { journal: true });
      variantEnv = variant.env();
      tp = await makeProfile({
        name: 'sd',
        bus: variant.bus,
        options: { 'daemon.shutdown_grace': 2, 'daemon.default_workers': 2, 'daemon.timeout': 10 },
      });
      // A second profile in the same DROVER_HOME: the template unit (and its DROVER_HOME) is shared.
      const config = Config.load(configFilePath({ DROVER_HOME: tp.home }));
      config.setupProfile(V2, variant.bus === 'local' ? { broker: 'local' } : { brokerUrl: RABBIT_URL }, {
        DROVER_HOME: tp.home,
      });
      config.setOption('daemon.default_workers', 1, V2);
      config.save();
      v2Uuid = Config.load(configFilePath({ DROVER_HOME: tp.home })).getProfile(V2).uuid;
      env = { ...process.env, ...um.env, DROVER_HOME: tp.home };
      pc = await tp.openClient();
    });

    after(async () => {
      await um?.stop(); // stops the units: the daemons drain and exit
      await pc?.close();
      const leaked = tp ? await killProcessesOfHome(tp.home) : [];
      if (tp) {
        if (variant.bus === 'rabbitmq') await dropTopology(v2Uuid);
        await tp.cleanup();
      }
      cleanupTempDirs();
      if (figures.length > 0) console.log(`      measured:\n${figures.map((f) => `        ${f}`).join('\n')}`);
      assert.deepEqual(leaked, [], 'processes of the test profile left running');
    });

    it('1. install --enable, then systemctl start: active only after READY, STATUS shown, status sees systemd', async () => {
      const inst = await drover(
        'daemon',
        'install',
        '--enable',
        '--watchdog-sec',
        '3',
        '--restart-sec',
        '0',
        '-p',
        'sd',
      );
      assert.equal(inst.status, 0, inst.stderr + inst.stdout);
      const unit = await show(UNIT, ['RestartPreventExitStatus', 'TimeoutStopUSec', 'ActiveState', 'NotifyAccess']);
      assert.deepEqual(unit, {
        RestartPreventExitStatus: String(DAEMON_EXIT_ALREADY_RUNNING),
        TimeoutStopUSec: '17s', // shutdown grace 2 s + 15 s
        ActiveState: 'inactive',
        NotifyAccess: variant.notifyAccess,
      });

      // Watch the unit and the socket while `systemctl start` runs.
      const seen: Array<{ active: string; answer: string }> = [];
      let done = false;
      const t0 = Date.now();
      const start = um.systemctl('start', UNIT).finally(() => (done = true));
      while (!done) {
        const active = (await show(UNIT, ['ActiveState'])).ActiveState!;
        const answer = await status().then(
          (s) => s.state,
          (e: Error) => e.constructor.name,
        );
        if (!done) seen.push({ active, answer });
        await new Promise((r) => setTimeout(r, 20));
      }
      const r = await start;
      const startMs = Date.now() - t0;
      assert.equal(r.status, 0, r.stderr);
      // While the start job ran the unit was activating, even when the socket already answered
      // (state 'starting': workers not ready yet); it was never active before READY=1.
      assert.ok(
        seen.some((x) => x.active === 'activating'),
        JSON.stringify(seen),
      );
      assert.deepEqual(
        seen.filter((x) => x.active === 'active' && x.answer !== 'running'),
        [],
      );
      // `systemctl start` returned: the daemon answers at once, every worker ready.
      const s = await status();
      assert.equal(s.state, 'running');
      assert.equal(s.supervisor, 'systemd');
      assert.deepEqual(
        s.workers.map((w) => w.state),
        ['ready', 'ready'],
      );
      const p = await show(UNIT, [
        'ActiveState',
        'SubState',
        'MainPID',
        'StatusText',
        'ExecMainStartTimestampMonotonic',
        'ActiveEnterTimestampMonotonic',
        'WatchdogUSec',
      ]);
      assert.equal(p.ActiveState, 'active');
      assert.equal(p.WatchdogUSec, '3s');
      assert.equal(p.SubState, 'running');
      assert.equal(Number(p.MainPID), s.pid);
      assert.equal(p.StatusText, '2/2 workers ready, 0 processes running');
      const readyMs = (Number(p.ActiveEnterTimestampMonotonic) - Number(p.ExecMainStartTimestampMonotonic)) / 1000;
      figures.push(
        `start: exec -> READY=1 ${readyMs.toFixed(0)} ms; \`systemctl start\` took ${startMs} ms ` +
          `(${seen.filter((x) => x.answer === 'starting').length} answers 'starting' while activating)`,
      );

      const st = await um.systemctl('status', UNIT, '--no-pager', '--lines', '50');
      assert.match(st.stdout, /Active: active \(running\)/);
      assert.match(st.stdout, /Status: "2\/2 workers ready, 0 processes running"/);
      assert.match(st.stdout, /drover\[\d+\]: \[daemon\] daemon ready: 2\/2 workers ready/, 'journal lines in status');

      const ds = await drover('daemon', 'status', '-p', 'sd');
      assert.equal(ds.status, 0, ds.stderr);
      assert.match(ds.stdout, new RegExp(`is running \\(pid ${s.pid}, .*supervisor systemd\\): 2 workers`));
      assert.match(
        ds.stdout,
        /^Service: drover@sd\.service \(systemd user unit; enabled, active\) runs \S+ \S+drover\.js$/m,
      );
      assert.doesNotMatch(ds.stderr, /Warning/);
      // The public library client sees the same daemon.
      const lib = await getDaemonClient('sd', { env }).getStatus();
      assert.deepEqual([lib.pid, lib.supervisor], [s.pid, 'systemd']);
    });

    it('logs reach the journal with priorities from the <N> prefixes, not the prefixes themselves', async () => {
      const entries = await um.journal(UNIT);
      const messages = entries.map((e) => String(e.MESSAGE));
      const ready = entries.find((e) => /daemon ready/.test(String(e.MESSAGE)));
      assert.ok(ready, `no 'daemon ready' entry in:\n${messages.join('\n')}`);
      assert.equal(ready.PRIORITY, '6'); // info
      assert.equal(ready.SYSLOG_IDENTIFIER, 'drover');
      assert.equal(ready._SYSTEMD_USER_UNIT, UNIT);
      assert.deepEqual(
        messages.filter((m) => /^<\d>/.test(m)),
        [],
        'a <N> prefix reached the journal as text',
      );
    });

    it('2. SIGKILL of the main process: systemd restarts it, the old workers are gone, running processes finish', async () => {
      const ids = await submitSleeps([3, 3, 3]);
      await waitRunning(ids);
      const before = await status();
      const oldWorkers = before.workers.map((w) => w.pid!);
      assert.equal(oldWorkers.length, 2);
      const t0 = Date.now();
      const pid = await signalMain('SIGKILL');
      const pid2 = await newMainPid(pid, 'systemd to restart the killed daemon');
      const restartMs = Date.now() - t0;
      // systemd killed the rest of the cgroup (KillMode=mixed) before starting the new daemon.
      assert.deepEqual(
        [pid, ...oldWorkers].filter((p) => pidAlive(p)),
        [],
        'the old daemon or its workers are alive',
      );
      const p = await show();
      assert.equal(p.NRestarts, '1');
      assert.ok(
        (await managerSays()).some((m) => /: Main process exited, code=killed, status=9\/KILL$/.test(m)),
        'the manager logged the kill',
      );
      const s = await status();
      assert.deepEqual([s.pid, s.supervisor], [pid2, 'systemd']);
      assert.ok(s.workers.every((w) => !oldWorkers.includes(w.pid!)));
      // The new daemon released the dead workers' leases: the processes ran again and finished.
      const t1 = Date.now();
      const recs = await waitForProcesses(pc, ids, { timeoutSeconds: 60 });
      assert.deepEqual(
        recs.map((r) => [r.state, r.exitStatus, r.runs]),
        ids.map(() => ['finished', 0, 2]),
      );
      figures.push(
        `SIGKILL -> new daemon active: ${restartMs} ms; 3 x 3 s sleeps finished ${Date.now() - t1} ms after that`,
      );
    });

    it('3. SIGSTOP of the daemon: no watchdog pings, systemd restarts it after WatchdogSec', async () => {
      const t0 = Date.now();
      const pid = await signalMain('SIGSTOP');
      try {
        const pid2 = await newMainPid(pid, 'the watchdog to restart the stopped daemon');
        const ms = Date.now() - t0;
        assert.ok(
          (await managerSays()).some((m) => /: Watchdog timeout \(limit 3s\)!$/.test(m)),
          'the manager logged the watchdog timeout',
        );
        assert.equal((await show()).NRestarts, '2');
        assert.equal(pidAlive(pid), false, 'the hung daemon was killed');
        const s = await status();
        assert.deepEqual([s.pid, s.supervisor, s.state], [pid2, 'systemd', 'running']);
        figures.push(`SIGSTOP -> watchdog restart, new daemon active: ${ms} ms (WatchdogSec=3)`);
      } finally {
        if (pidAlive(pid)) process.kill(pid, 'SIGCONT');
      }
    });

    it('4. systemctl stop: the workers drain, the unit ends inactive (not failed), nothing is lost', async () => {
      // A shutdown grace raised after install, with TimeoutStopSec below the drain: EXTEND_TIMEOUT_USEC
      // is what keeps systemd from killing the daemon half-way through it.
      tp.setOption('daemon.shutdown_grace', 4);
      const dropIn = path.join(um.unitDir, `${UNIT}.d`, 'zz-test-short-stop.conf');
      fs.writeFileSync(dropIn, '[Service]\nTimeoutStopSec=2\n');
      try {
        assert.equal((await um.systemctl('daemon-reload')).status, 0);
        assert.equal((await um.systemctl('restart', UNIT)).status, 0); // the daemon reads the new grace
        assert.equal((await show(UNIT, ['TimeoutStopUSec'])).TimeoutStopUSec, '2s');
        const [short, long] = await submitSleeps([1, 6]);
        await waitRunning([short!, long!]);
        const t0 = Date.now();
        const r = await um.systemctl('stop', UNIT);
        const stopMs = Date.now() - t0;
        assert.equal(r.status, 0, r.stderr);
        const p = await show();
        assert.deepEqual([p.ActiveState, p.Result], ['inactive', 'success']);
        assert.deepEqual(processesOfHome(tp.home), [], 'the daemon and its workers are gone');
        // The short one finished during the drain; the long one was released, not killed.
        const s = await pc.getProcess(short!);
        assert.deepEqual([s.state, s.exitStatus, s.runs], ['finished', 0, 1]);
        const l = await pc.getProcess(long!);
        assert.equal(isTerminal(l.state), false, `long process is ${l.state}`);
        assert.equal(l.leaseOwner, null);
        const stopping = (await um.journal(UNIT)).map((e) => String(e.MESSAGE));
        assert.ok(stopping.some((m) => /stopping \(SIGTERM\): draining 2 workers within 4s/.test(m)));
        assert.ok(stopping.some((m) => /daemon stopped/.test(m)));
        figures.push(
          `systemctl stop with a 6 s process and grace 4 s (TimeoutStopSec=2): ${stopMs} ms, Result=success`,
        );
        tp.setOption('daemon.shutdown_grace', 2);
        fs.rmSync(dropIn);
        assert.equal((await um.systemctl('daemon-reload')).status, 0);
        assert.equal((await um.systemctl('start', UNIT)).status, 0);
        const [rec] = await waitForProcesses(pc, [long!], { timeoutSeconds: 60 });
        assert.deepEqual([rec!.state, rec!.exitStatus, rec!.runs], ['finished', 0, 2]);
      } finally {
        tp.setOption('daemon.shutdown_grace', 2);
        fs.rmSync(dropIn, { force: true });
      }
    });

    it('5. a new login (the user manager restarts): the enabled unit starts the daemon by itself', async () => {
      const pid = await mainPid();
      assert.ok(pid > 0);
      const t0 = Date.now();
      await um.restart();
      const pid2 = await newMainPid(pid, 'the enabled unit to start at login');
      // Active means READY=1 was sent: it answers at once.
      const s = await status();
      assert.deepEqual([s.pid, s.supervisor], [pid2, 'systemd']);
      figures.push(`user manager restart -> daemon active: ${Date.now() - t0} ms`);
    });

    it('exit code 4 (the profile is held by a daemon started by hand): the unit fails once, no restart loop', async () => {
      assert.equal((await um.systemctl('stop', UNIT)).status, 0);
      const restarts = (await show()).NRestarts;
      const byHand = bare();
      await byHand.startDaemon();
      const own = await status();
      assert.equal(own.supervisor, 'self');
      try {
        // `daemon status` tells the two apart.
        const ds = await drover('daemon', 'status', '-p', 'sd');
        assert.match(ds.stdout, /supervisor self/);
        assert.match(ds.stdout, /Note: this daemon was started outside drover@sd\.service/);

        const r = await um.systemctl('start', UNIT);
        assert.notEqual(r.status, 0, 'the start job should fail');
        const p = await show(UNIT, ['ActiveState', 'Result', 'ExecMainStatus', 'NRestarts']);
        assert.deepEqual(p, {
          ActiveState: 'failed',
          Result: 'exit-code',
          ExecMainStatus: String(DAEMON_EXIT_ALREADY_RUNNING),
          NRestarts: restarts,
        });
        const err = (await um.journal(UNIT)).find((e) =>
          /is already running \(pid \d+\); not starting another/.test(String(e.MESSAGE)),
        );
        assert.ok(err, 'the refusal is in the journal');
        assert.equal(err.PRIORITY, '3'); // error
        assert.equal((await status()).pid, own.pid, 'the daemon started by hand is untouched');

        // With the unit installed, `drover daemon stop` still stops the daemon started by hand (directly:
        // `systemctl stop` would leave it running).
        const stop = await drover('daemon', 'stop', '-p', 'sd');
        assert.equal(stop.status, 0, stop.stderr);
        assert.match(stop.stdout, /^Daemon of profile 'sd' stopped\.$/m);
        assert.equal(pidAlive(own.pid), false);
      } finally {
        if (byHand.isDaemonRunning) await byHand.stopDaemon({ wait: true });
        await um.systemctl('reset-failed', UNIT);
      }
    });

    it('drover daemon start|restart|stop go through systemctl --user when the unit is installed', async () => {
      const start = await drover('daemon', 'start', '3', '-p', 'sd');
      assert.equal(start.status, 0, start.stderr);
      assert.match(start.stdout, /with 3 workers through systemd \(drover@sd\.service\)/);
      let s = await status();
      assert.deepEqual([s.pid, s.supervisor, s.numberOfWorkers], [await mainPid(), 'systemd', 3]);
      assert.match(start.stdout, new RegExp(`Daemon started \\(pid ${s.pid}, supervised by systemd\\)`));

      const pid = s.pid;
      const restart = await drover('daemon', 'restart', '-p', 'sd');
      assert.equal(restart.status, 0, restart.stderr);
      assert.match(restart.stdout, /restarted through systemd \(drover@sd\.service; pid \d+, 2 workers\)/);
      s = await status();
      assert.notEqual(s.pid, pid);
      assert.deepEqual([s.pid, s.supervisor], [await mainPid(), 'systemd']);

      const stop = await drover('daemon', 'stop', '-p', 'sd');
      assert.equal(stop.status, 0, stop.stderr);
      assert.match(stop.stdout, /stopped \(through systemd: drover@sd\.service\)/);
      const p = await show();
      assert.deepEqual([p.ActiveState, p.Result], ['inactive', 'success']);
      assert.equal(pidAlive(s.pid), false);
    });

    it('the public DaemonClient / getDaemonClient delegate to the unit by default', async () => {
      const client = new DaemonClient(tp.reload(), { env });
      assert.ok(client instanceof BareDaemonClient);
      await client.startDaemon();
      let s = await client.getStatus();
      assert.deepEqual([s.pid, s.supervisor], [await mainPid(), 'systemd']);

      const lib = getDaemonClient('sd', { env });
      await lib.restartDaemon();
      const s2 = await lib.getStatus();
      assert.notEqual(s2.pid, s.pid);
      assert.deepEqual([s2.pid, s2.supervisor], [await mainPid(), 'systemd']);
      await lib.stopDaemon();
      const p = await show();
      assert.deepEqual([p.ActiveState, p.Result], ['inactive', 'success']);
      assert.equal(lib.isDaemonRunning, false);

      // The bare client (src/client) never delegates: it starts the daemon itself.
      const own = bare();
      await own.startDaemon();
      s = await own.getStatus();
      assert.equal(s.supervisor, 'self');
      assert.equal((await show()).ActiveState, 'inactive');
      await own.stopDaemon();
    });

    it('6. a profile named my-profile.v2 installs, starts and stops as drover@my\\x2dprofile.v2.service', async () => {
      const esc = await um.run('systemd-escape', [V2]);
      assert.equal(`drover@${esc.stdout.trim()}.service`, V2_UNIT);
      assert.equal(systemdInstanceUnit(V2), V2_UNIT);
      const inst = await drover('daemon', 'install', '--enable', '--now', '-p', V2);
      assert.equal(inst.status, 0, inst.stderr);
      assert.match(inst.stdout, /ran {5}systemctl --user start 'drover@my\\x2dprofile\.v2\.service'/);
      const p = await show(V2_UNIT);
      assert.deepEqual([p.ActiveState, p.StatusText], ['active', '1/1 workers ready, 0 processes running']);
      const s = await new BareDaemonClient(Config.load(configFilePath(env)).getProfile(V2), { env }).getStatus();
      assert.deepEqual([s.profile, s.pid, s.supervisor], [V2, Number(p.MainPID), 'systemd']);
      const show2 = await um.systemctl('show', V2_UNIT, '-p', 'ExecStart', '--value');
      assert.match(show2.stdout, /--profile my-profile\.v2 ;/);

      const stop = await drover('daemon', 'stop', '-p', V2);
      assert.equal(stop.status, 0, stop.stderr);
      assert.match(stop.stdout, /through systemd: drover@my\\x2dprofile\.v2\.service/);
      const q = await show(V2_UNIT);
      assert.deepEqual([q.ActiveState, q.Result], ['inactive', 'success']);
      const un = await drover('daemon', 'uninstall', '-p', V2);
      assert.equal(un.status, 0, un.stderr);
      assert.match(un.stdout, /kept {4}.*drover@\.service \(still used by profile 'sd'\)/);
    });

    it('uninstalled: start and stop go back to the client itself', async () => {
      const un = await drover('daemon', 'uninstall', '-p', 'sd');
      assert.equal(un.status, 0, un.stderr);
      const start = await drover('daemon', 'start', '-p', 'sd');
      assert.equal(start.status, 0, start.stderr);
      assert.doesNotMatch(start.stdout, /through/);
      const s = await status();
      assert.equal(s.supervisor, 'self');
      const ds = await drover('daemon', 'status', '-p', 'sd');
      assert.doesNotMatch(ds.stdout, /^Service:/m);
      await getDaemonClient('sd', { env }).stopDaemon();
      assert.equal(pidAlive(s.pid), false);
    });
  });
}

describe('daemon status and an installed unit whose node is gone', () => {
  after(cleanupTempDirs);

  it('warns that the unit runs a node that no longer exists (rendered unit, nothing started)', async () => {
    const dir = tempDir('drover-gone-');
    const home = path.join(dir, 'drover');
    const config = Config.load(configFilePath({ DROVER_HOME: home }));
    config.setupProfile('gone', { brokerUrl: RABBIT_URL }, { DROVER_HOME: home });
    config.save();
    // A node that later disappears, as after `nvm uninstall`.
    const node = path.join(dir, 'node-v0', 'bin', 'node');
    fs.mkdirSync(path.dirname(node), { recursive: true });
    fs.symlinkSync(process.execPath, node);
    const env = {
      HOME: dir,
      XDG_CONFIG_HOME: path.join(dir, 'config'),
      XDG_RUNTIME_DIR: path.join(dir, 'no-manager'), // no user manager answers here
      DROVER_HOME: home,
    };
    const plan = await installSystemdService({
      profile: 'gone',
      unit: { nodePath: node, cliPath: path.resolve('bin', 'drover.js'), droverHome: home, shutdownGraceSeconds: 30 },
      dryRun: true,
      env: { ...process.env, ...env },
    });
    for (const f of plan.files) {
      fs.mkdirSync(path.dirname(f.path), { recursive: true });
      fs.writeFileSync(f.path, f.content!);
    }
    const ok = runCli(['daemon', 'status', '-p', 'gone'], env);
    assert.equal(ok.status, 3); // not running
    assert.doesNotMatch(ok.stderr, /Warning/);

    fs.rmSync(path.join(dir, 'node-v0'), { recursive: true });
    const r = runCli(['daemon', 'status', '-p', 'gone'], env);
    assert.equal(r.status, 3, r.stderr);
    assert.match(
      r.stdout,
      /The daemon of profile 'gone' is not running\.\nService: drover@gone\.service \(systemd user unit/,
    );
    const template = path.join(env.XDG_CONFIG_HOME, 'systemd', 'user', 'drover@.service');
    assert.ok(
      r.stderr.includes(
        `Warning: ${template} runs node ${node}, which no longer exists; run \`drover daemon install\` again`,
      ),
      r.stderr,
    );
    const j = runCli(['daemon', 'status', '-p', 'gone', '--json'], env);
    const entry = (JSON.parse(j.stdout) as DaemonStatusResult).profiles[0]!;
    const service = entry.service as InstalledUnitCheck;
    assert.deepEqual(
      [entry.running, service.installed, service.unit, service.nodePath, service.problems.length],
      [false, true, 'drover@gone.service', node, 1],
    );
  });

  it("the service layer's PID file name is the daemon's", () => {
    assert.equal(DAEMON_PID_FILE_NAME, DAEMON_PID_FILE);
  });
});
