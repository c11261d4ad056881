/**
 * Issue 5 point 7: a real daemon (spawned by DaemonClient.startDaemon, with real workers against
 * RabbitMQ) on a PRIVATE session bus. busctl --user introspects it and reads its properties,
 * methods work, PropertiesChanged arrives after increaseWorkers, the D-Bus and socket transports
 * return the same status, a missing daemon is reported at once, `my-profile.v2` works, and a
 * daemon without a session bus (or that loses it) keeps answering on its socket.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import dbus from 'dbus-next';
import { DaemonClient, type DaemonClientOptions } from '../../src/client/index.js';
import { DaemonException, DaemonNotRunningException, DaemonTimeoutException } from '../../src/errors/index.js';
import { DBUS_INTERFACE, daemonBusName, daemonObjectPath, type DaemonStatus } from '../../src/protocol/index.js';
import { cleanupTempDirs, portOpen, requireService, tempDir } from '../helpers/env.js';
import { makeProfile, waitUntil, type TestProfile } from '../helpers/profile.js';
import { stopAndCheckLeaks } from '../daemon/helpers.js';
import { busctl, busctlProperty, connectClient, haveCommand, startPrivateBus, type PrivateBus } from './helpers.js';

describe('the daemon on D-Bus (issue 5, point 7)', function () {
  this.timeout(90_000);
  let bus: PrivateBus;
  let tp: TestProfile;
  /** Clients whose daemons afterEach stops, with the home whose processes it checks. */
  const started: Array<{ client: DaemonClient; home: string }> = [];
  const clients: dbus.MessageBus[] = [];

  before(async function () {
    requireService(this, await portOpen(5672), 'RabbitMQ on 127.0.0.1:5672');
    requireService(this, haveCommand('dbus-daemon'), 'dbus-daemon (Debian package dbus)');
    requireService(this, haveCommand('busctl'), 'busctl (Debian package systemd)');
    bus = await startPrivateBus();
    tp = await makeProfile({ name: 'dbus-test' });
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.disconnect();
    for (const { client, home } of started.splice(0)) await stopAndCheckLeaks(client, home);
  });

  after(async () => {
    await tp?.cleanup();
    await bus?.stop();
    cleanupTempDirs();
  });

  /** A client of `p` whose environment (and so its daemon's) points at the private bus. */
  function clientOf(p: TestProfile, options: DaemonClientOptions = {}, env: NodeJS.ProcessEnv = bus.env): DaemonClient {
    return new DaemonClient(p.reload(), { env: { ...process.env, ...p.env, ...env }, ...options });
  }

  /** Starts the daemon of `p` with `n` workers and waits until every worker is ready. */
  async function startDaemon(p: TestProfile, n: number, client = clientOf(p)): Promise<DaemonClient> {
    started.push({ client, home: p.home });
    await client.startDaemon({ numberWorkers: n });
    await waitUntil(async () => (await client.getStatus()).state === 'running', 30_000, 'state running', 100);
    return client;
  }

  /** Bytes of the daemon log so far (the profile's log is appended to by every daemon of the file). */
  function logSize(client: DaemonClient): number {
    try {
      return fs.statSync(client.logFile).size;
    } catch {
      return 0;
    }
  }

  async function proxy(profileName: string): Promise<{ daemon: dbus.ClientInterface; props: dbus.ClientInterface }> {
    const c = await connectClient(bus);
    clients.push(c);
    const obj = await c.getProxyObject(daemonBusName(profileName), daemonObjectPath(profileName));
    return { daemon: obj.getInterface(DBUS_INTERFACE), props: obj.getInterface('org.freedesktop.DBus.Properties') };
  }

  it('busctl --user introspects the object and reads its properties', async () => {
    const client = await startDaemon(tp, 1);
    const status = await client.getStatus();
    const name = daemonBusName('dbus-test');
    const objectPath = daemonObjectPath('dbus-test');

    const intro = await busctl(bus, 'introspect', name, objectPath);
    assert.equal(intro.status, 0, intro.stderr);
    for (const member of [
      'org.drover.Daemon1',
      '.Status',
      '.DaemonInfo',
      '.WorkerInfo',
      '.IncreaseWorkers',
      '.DecreaseWorkers',
      '.RestartWorkers',
      '.Stop',
      '.Profile',
      '.Pid',
      '.State',
      '.NumberOfWorkers',
      '.Workers',
      '.RunningProcesses',
    ]) {
      assert.ok(
        intro.stdout.split('\n').some((l) => l.startsWith(member + ' ')),
        `introspection shows ${member}`,
      );
    }
    assert.match(intro.stdout, /\.Workers\s+property\s+a\(ssuuuu\)/);

    const get = (prop: string): Promise<unknown> => busctlProperty(bus, name, objectPath, DBUS_INTERFACE, prop);
    assert.equal(await get('Profile'), 'dbus-test');
    assert.equal(await get('Pid'), status.pid);
    assert.equal(await get('State'), 'running');
    assert.equal(await get('NumberOfWorkers'), 1);
    assert.equal(await get('RunningProcesses'), 0);
    assert.equal(await get('Supervisor'), 'self');
    assert.equal(await get('StartedAt'), status.startedAt);
    const w = status.workers[0]!;
    assert.deepEqual(await get('Workers'), [['w1', 'ready', w.pid, 0, w.slots, 0]]);

    // The plain text form a user reads.
    const plain = await busctl(bus, 'get-property', name, objectPath, DBUS_INTERFACE, 'Workers', 'State');
    assert.equal(plain.stdout, `a(ssuuuu) 1 "w1" "ready" ${w.pid} 0 ${w.slots} 0\ns "running"\n`);
  });

  it('methods work: IncreaseWorkers changes NumberOfWorkers and PropertiesChanged arrives; refusals are org.drover.Error.*', async () => {
    const client = await startDaemon(tp, 1);
    const { daemon, props } = await proxy('dbus-test');
    const changes: Array<Record<string, unknown>> = [];
    props.on('PropertiesChanged', (iface: string, changed: Record<string, dbus.Variant>) => {
      if (iface !== DBUS_INTERFACE) return;
      changes.push(Object.fromEntries(Object.entries(changed).map(([k, v]) => [k, v.value])));
    });

    assert.equal(await daemon.IncreaseWorkers!(1), 2);
    await waitUntil(() => changes.some((c) => c.NumberOfWorkers === 2), 10_000, 'PropertiesChanged NumberOfWorkers=2');
    // The new worker shows in Workers, first starting, then ready: each change is signalled.
    await waitUntil(
      () => changes.some((c) => (c.Workers as Array<[string, string]> | undefined)?.[1]?.[1] === 'ready'),
      30_000,
      'PropertiesChanged with w2 ready',
    );
    const name = daemonBusName('dbus-test');
    const objectPath = daemonObjectPath('dbus-test');
    assert.equal(await busctlProperty(bus, name, objectPath, DBUS_INTERFACE, 'NumberOfWorkers'), 2);
    assert.equal(await client.getNumberOfWorkers(), 2);

    // busctl calls the methods too; structured results are JSON strings.
    const dec = await busctl(bus, 'call', name, objectPath, DBUS_INTERFACE, 'DecreaseWorkers', 'u', '1');
    assert.equal(dec.stdout, 'u 1\n', dec.stderr);
    const st = await busctl(bus, '--json=short', 'call', name, objectPath, DBUS_INTERFACE, 'Status');
    const fromBusctl = JSON.parse((JSON.parse(st.stdout) as { data: [string] }).data[0]) as DaemonStatus;
    assert.equal(fromBusctl.profile, 'dbus-test');
    assert.equal(fromBusctl.numberOfWorkers, 1);
    const restart = (await daemon.RestartWorkers!()) as [number, number];
    assert.deepEqual(restart, [1, 1]);
    const workerInfo = JSON.parse((await daemon.WorkerInfo!()) as string) as { workers: unknown[] };
    assert.ok(Array.isArray(workerInfo.workers));

    // Refusals keep their control error code in the D-Bus error name.
    for (const [call, code] of [
      [() => daemon.DecreaseWorkers!(0), 'org.drover.Error.ParamsInvalid'],
      [() => daemon.DecreaseWorkers!(5), 'org.drover.Error.ParamsInvalid'],
      [() => daemon.IncreaseWorkers!(1000), 'org.drover.Error.ParamsInvalid'],
    ] as const) {
      await assert.rejects(call(), (err: dbus.DBusError) => {
        assert.equal(err.type, code);
        assert.match(err.text, /workers/i);
        return true;
      });
    }
    const refused = await busctl(bus, 'call', name, objectPath, DBUS_INTERFACE, 'DecreaseWorkers', 'u', '0');
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /param 'n' must be an integer from 1 to 256, got 0/);
    // The daemon is unchanged by the refusals.
    assert.equal(await client.getNumberOfWorkers(), 1);
  });

  it('DaemonClient over dbus and over the socket see the same daemon; Stop over D-Bus releases the name', async () => {
    const socketClient = await startDaemon(tp, 2);
    const dbusClient = clientOf(tp, { transport: 'dbus' });
    const stable = (s: DaemonStatus): unknown => ({
      ...s,
      workers: s.workers.map((w) => ({ ...w, memoryRss: null, cpuPercent: null })),
    });
    // Memory and CPU are sampled between the two calls; everything else must match.
    const [a, b] = await Promise.all([socketClient.getStatus(), dbusClient.getStatus()]);
    assert.deepEqual(stable(b), stable(a));
    const [infoA, infoB] = await Promise.all([socketClient.getDaemonInfo(), dbusClient.getDaemonInfo()]);
    assert.deepEqual({ ...infoB, memoryRss: 0 }, { ...infoA, memoryRss: 0 });
    assert.deepEqual(
      (await dbusClient.getWorkerInfo()).map((w) => [w.id, w.pid, w.state]),
      (await socketClient.getWorkerInfo()).map((w) => [w.id, w.pid, w.state]),
    );
    assert.equal(await dbusClient.increaseWorkers(1), 3);
    assert.equal(await socketClient.getNumberOfWorkers(), 3);
    // An error reply keeps its code over both transports.
    for (const c of [socketClient, dbusClient]) {
      await assert.rejects(c.decreaseWorkers(10), (err: Error) => {
        assert.ok(err instanceof DaemonException && !(err instanceof DaemonNotRunningException));
        assert.match(err.message, /refused 'decreaseWorkers': .*\(PARAMS_INVALID\)$/);
        return true;
      });
    }

    // A daemon that owns its name but does not answer (stopped): a timeout, as over the socket.
    const pid = socketClient.daemonPid!;
    process.kill(pid, 'SIGSTOP');
    try {
      await assert.rejects(dbusClient.getStatus({ timeout: 1 }), DaemonTimeoutException);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    assert.equal((await dbusClient.getStatus()).pid, pid, 'it answers again once continued');

    await dbusClient.stopDaemon();
    assert.equal(socketClient.isDaemonRunning, false);
    const list = await busctl(bus, 'list', '--acquired');
    assert.ok(!list.stdout.includes(daemonBusName('dbus-test')), 'the name is released');
    // No daemon: DaemonNotRunningException at once, not a timeout after 30 s.
    await assert.rejects(dbusClient.getStatus({ timeout: 30 }), DaemonNotRunningException);
  });

  it('a profile named my-profile.v2 starts, answers and stops over D-Bus', async () => {
    const p = await makeProfile({ name: 'my-profile.v2' });
    try {
      const client = clientOf(p, { transport: 'dbus' });
      // Not running yet: the D-Bus transport says so at once.
      await assert.rejects(client.getStatus({ timeout: 30 }), DaemonNotRunningException);
      await startDaemon(p, 1, client); // waits for the answer over D-Bus
      assert.equal((await client.getStatus()).profile, 'my-profile.v2');
      const name = 'org.drover.Daemon.my_2dprofile_2ev2';
      const objectPath = '/org/drover/Daemon/my_2dprofile_2ev2';
      assert.equal(await busctlProperty(bus, name, objectPath, DBUS_INTERFACE, 'Profile'), 'my-profile.v2');
      assert.equal(await client.increaseWorkers(1), 2);
      assert.equal(await busctlProperty(bus, name, objectPath, DBUS_INTERFACE, 'NumberOfWorkers'), 2);
      await client.stopDaemon();
      assert.equal(client.isDaemonRunning, false);
      await stopAndCheckLeaks(null, p.home);
    } finally {
      for (const { client, home } of started.splice(0)) await stopAndCheckLeaks(client, home);
      await p.cleanup();
    }
  });

  it('without a session bus the daemon logs one line and answers on its socket; the dbus transport says why', async () => {
    const runtime = tempDir('drover-xdg-'); // no bus socket in it
    const noBus = { DBUS_SESSION_BUS_ADDRESS: '', XDG_RUNTIME_DIR: runtime };
    const client = clientOf(tp, {}, noBus);
    const offset = logSize(client);
    await startDaemon(tp, 1, client);
    assert.equal((await client.getStatus()).numberOfWorkers, 1);
    const log = fs.readFileSync(client.logFile, 'utf8').slice(offset);
    assert.equal(log.match(/no D-Bus session bus/g)?.length, 1, log);
    assert.doesNotMatch(log, /WARN|ERROR/);
    const viaDbus = clientOf(tp, { transport: 'dbus' }, noBus);
    await assert.rejects(viaDbus.getStatus(), (err: Error) => {
      assert.ok(err instanceof DaemonException && !(err instanceof DaemonNotRunningException));
      assert.match(err.message, /no usable session bus.*use transport 'socket'/);
      return true;
    });
  });

  it('a daemon whose bus name is taken says so once and answers on its socket', async () => {
    const squatter = await connectClient(bus);
    clients.push(squatter);
    const name = daemonBusName('dbus-test');
    assert.equal(await squatter.requestName(name, dbus.NameFlag.DO_NOT_QUEUE), dbus.RequestNameReply.PRIMARY_OWNER);
    const client = clientOf(tp);
    const offset = logSize(client);
    await startDaemon(tp, 1, client);
    const log = fs.readFileSync(client.logFile, 'utf8').slice(offset);
    assert.equal(log.match(new RegExp(`the D-Bus name ${name} is owned by another process`, 'g'))?.length, 1, log);
    assert.equal(await client.increaseWorkers(1), 2);
    // The squatter still holds the name: the daemon did not take it over.
    const owner = await busctl(bus, 'status', name);
    assert.match(owner.stdout, new RegExp(`^PID=${process.pid}$`, 'm'));
  });

  it('a daemon that loses its session bus logs it once and keeps answering on its socket', async () => {
    const own = await startPrivateBus();
    try {
      const client = clientOf(tp, {}, own.env);
      const offset = logSize(client);
      await startDaemon(tp, 1, client);
      const viaDbus = clientOf(tp, { transport: 'dbus' }, own.env);
      assert.equal((await viaDbus.getStatus()).numberOfWorkers, 1);
      await own.stop();
      await waitUntil(
        () => /lost the D-Bus session bus/.test(fs.readFileSync(client.logFile, 'utf8').slice(offset)),
        10_000,
        'the daemon to log the lost bus',
      );
      assert.equal(await client.increaseWorkers(1), 2);
      await assert.rejects(viaDbus.getStatus(), (err: Error) => {
        assert.ok(err instanceof DaemonException);
        assert.ok(!(err instanceof DaemonTimeoutException), 'a dead bus is reported, not waited for');
        assert.match(err.message, /cannot connect to the D-Bus session bus/);
        return true;
      });
      await client.stopDaemon();
      const log = fs.readFileSync(client.logFile, 'utf8').slice(offset);
      assert.equal(log.match(/lost the D-Bus session bus/g)?.length, 1, log);
      assert.match(log, /daemon stopped/);
    } finally {
      await own.stop();
    }
  });
});
