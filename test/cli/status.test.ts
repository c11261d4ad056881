/**
 * `drover status` against the real RabbitMQ, SQLite and PostgreSQL, and against brokers that
 * refuse or never answer: it must say what is unreachable and exit 3, bounded by daemon.timeout.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import {
  RABBIT_URL,
  cleanupTempDirs,
  closedPort,
  freshPostgresDatabase,
  portOpen,
  requireService,
  runCli,
  runCliAsync,
  tempDir,
  PG_ADMIN_URL,
  type CliResult,
} from '../helpers/env.js';
import type { StatusResult } from '../../src/commands/status.js';

describe('cli: drover status', function () {
  this.timeout(60_000);
  let env: NodeJS.ProcessEnv;
  const drover = (...args: string[]): CliResult => runCli(args, env);
  const setup = (...args: string[]): void => {
    const r = drover(...args);
    assert.equal(r.status, 0, `drover ${args.join(' ')}: ${r.stderr}`);
  };

  before(() => {
    env = { DROVER_HOME: tempDir(), DROVER_PROFILE: '' };
  });
  after(() => cleanupTempDirs());

  it('on first use creates the default profile (local bus), says so in one line, and reports the store reachable', async () => {
    // Async: the sync runner does not capture stderr of a successful command.
    const r = await runCliAsync(['status', '--json'], env);
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.match(
      r.stderr,
      /^Created profile 'default' in .*config\.json .*local \(the daemon\).*--broker rabbitmq.*\n$/,
    );
    const s = JSON.parse(r.stdout) as StatusResult;
    assert.equal(s.profile, 'default');
    assert.equal(s.store.backend, 'sqlite');
    assert.equal(s.store.reachable, true, s.store.error ?? '');
    assert.equal(typeof s.store.schemaVersion, 'number');
    assert.deepEqual(s.broker, { kind: 'local', url: 'local (the daemon)', reachable: true });
    assert.deepEqual(s.daemon, { running: false, pid: null, summary: 'not running' });
    assert.equal(s.reachable, true);

    // The human screen says the same, and nothing is created twice.
    const h = await runCliAsync(['status'], env);
    assert.equal(h.status, 0, h.stderr);
    assert.equal(h.stderr, '');
    assert.match(h.stdout, /^Config file: .*config\.json$/m);
    assert.match(h.stdout, /^Profile: +default /m);
    assert.match(h.stdout, /^Store: +reachable +sqlite:.*\(schema version \d+, SQLite /m);
    assert.match(h.stdout, /^Broker: +local +the daemon carries tasks \(no broker server\)$/m);
    assert.match(h.stdout, /^Daemon: +not running$/m);
    // daemon status says which bus too, and that nothing needs reaching for it.
    const d = await runCliAsync(['daemon', 'status'], env);
    assert.equal(d.status, 3, d.stderr);
    assert.match(d.stdout, /^Broker: local: the daemon carries tasks \(no broker server\)$/m);
  });

  it('reports the broker of a RabbitMQ profile reachable, with its version', async function () {
    const rabbit = new URL(RABBIT_URL);
    requireService(this, await portOpen(Number(rabbit.port || 5672), rabbit.hostname), `RabbitMQ at ${rabbit.host}`);
    setup('profile', 'setup', 'rmq', '--broker', 'rabbitmq', '--broker-url', RABBIT_URL);
    const j = drover('status', '-p', 'rmq', '--json');
    assert.equal(j.status, 0, j.stderr + j.stdout);
    const s = JSON.parse(j.stdout) as StatusResult;
    assert.ok(s.broker.kind === 'rabbitmq');
    assert.equal(s.broker.reachable, true, s.broker.error ?? '');
    assert.equal(s.broker.product, 'RabbitMQ');
    assert.match(s.broker.serverVersion ?? '', /^\d+\.\d+/);
    const h = drover('status', '-p', 'rmq');
    assert.match(
      h.stdout,
      new RegExp(`^Broker: +reachable +${rabbit.hostname}:${rabbit.port || 5672} vhost / \\(RabbitMQ \\d`, 'm'),
    );
  });

  it('reports a broker on a closed port unreachable and exits 3', async () => {
    const port = await closedPort();
    setup('profile', 'setup', 'down', '--broker-url', `amqp://guest:guest@127.0.0.1:${port}`);
    setup('config', 'set', 'daemon.timeout', '0.5', '-p', 'down');
    const h = drover('status', '-p', 'down');
    assert.equal(h.status, 3, h.stderr);
    assert.match(h.stdout, new RegExp(`^Broker: +UNREACHABLE +127\\.0\\.0\\.1:${port} .*ECONNREFUSED`, 'm'));
    assert.match(h.stdout, /^Store: +reachable/m);
    const j = drover('status', '-p', 'down', '--json');
    assert.equal(j.status, 3);
    const s = JSON.parse(j.stdout) as StatusResult;
    assert.ok(s.broker.kind === 'rabbitmq');
    assert.deepEqual([s.broker.reachable, s.broker.port, s.reachable, s.store.reachable], [false, port, false, true]);
  });

  it('gives up on a broker that never answers after daemon.timeout and exits 3', async () => {
    // Accepts TCP connections and never says a word.
    const held: net.Socket[] = [];
    const silent = net.createServer((sock) => held.push(sock));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as net.AddressInfo).port;
    try {
      setup('profile', 'setup', 'silent', '--broker-url', `amqp://guest:guest@127.0.0.1:${port}`);
      setup('config', 'set', 'daemon.timeout', '0.3', '-p', 'silent');
      const r = await runCliAsync(['status', '-p', 'silent'], env);
      assert.equal(r.status, 3, r.stderr);
      assert.match(r.stdout, /^Broker: +UNREACHABLE .*did not answer within 0\.3 s/m);
    } finally {
      for (const s of held) s.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('reports a PostgreSQL store reachable with its version', async function () {
    const pgUrl = new URL(PG_ADMIN_URL);
    requireService(this, await portOpen(Number(pgUrl.port || 5432), pgUrl.hostname), `PostgreSQL at ${pgUrl.host}`);
    const db = await freshPostgresDatabase();
    try {
      setup('profile', 'setup', 'pg', '--storage', 'postgres', '--postgres-url', db.url);
      const r = drover('status', '-p', 'pg', '--json');
      const s = JSON.parse(r.stdout) as StatusResult;
      assert.equal(s.store.backend, 'postgres');
      assert.equal(s.store.reachable, true, s.store.error ?? '');
      assert.equal(typeof s.store.schemaVersion, 'number');
      assert.match(s.store.serverVersion ?? '', /PostgreSQL|\d+\.\d+/);
    } finally {
      await db.drop();
    }
  });
  it('a store copied from another profile: status says WRONG STORE naming both uuids and exits 3; a worker refuses it', async () => {
    setup('profile', 'setup', 'orig');
    // A worker of 'orig' would record it in its store; status only looks, so adopt it here.
    const orig = JSON.parse(drover('profile', 'show', 'orig', '--json').stdout) as {
      uuid: string;
      storage: { path: string };
    };
    const { openStore } = await import('../../src/store/index.js');
    const st = await openStore(
      { backend: 'sqlite', path: orig.storage.path },
      { profile: { name: 'orig', uuid: orig.uuid } },
    );
    await st.createProcesses([{ type: 'x', inputs: null }]);
    await st.close();
    const copy = path.join(tempDir(), 'copied.sqlite');
    fs.copyFileSync(orig.storage.path, copy);
    for (const ext of ['-wal', '-shm']) {
      if (fs.existsSync(orig.storage.path + ext)) fs.copyFileSync(orig.storage.path + ext, copy + ext);
    }
    setup('profile', 'setup', 'copied', '--sqlite-path', copy);
    const copied = JSON.parse(drover('profile', 'show', 'copied', '--json').stdout) as { uuid: string };

    const ok = drover('status', '-p', 'orig', '--json');
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    const okStatus = JSON.parse(ok.stdout) as StatusResult;
    assert.equal(okStatus.store.profileUuid, orig.uuid);
    assert.equal(okStatus.store.profileMismatch, null);
    assert.equal(okStatus.ok, true);

    const j = drover('status', '-p', 'copied', '--json');
    assert.equal(j.status, 3, j.stdout + j.stderr);
    const s = JSON.parse(j.stdout) as StatusResult;
    assert.equal(s.store.reachable, true);
    assert.equal(s.reachable, true);
    assert.equal(s.ok, false);
    assert.equal(s.store.profileUuid, orig.uuid);
    const m = s.store.profileMismatch ?? '';
    assert.ok(m.includes(copy) && m.includes(orig.uuid) && m.includes(copied.uuid), m);
    const h = drover('status', '-p', 'copied');
    assert.equal(h.status, 3);
    assert.match(
      h.stdout,
      new RegExp(
        `^Store: +WRONG STORE +sqlite:${copy.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} .*belongs to profile 'orig' \\(uuid ${orig.uuid}\\)`,
        'm',
      ),
    );

    // A worker of 'copied' refuses to consume: it exits at once, saying why.
    const w = await runCliAsync(['daemon', 'worker', '-p', 'copied'], env);
    assert.notEqual(w.status, 0);
    assert.match(
      w.stdout + w.stderr,
      /worker failed to start: store sqlite:.* belongs to profile 'orig'.*refusing to consume/,
    );
    // And the store still belongs to 'orig'.
    assert.equal(
      (JSON.parse(drover('status', '-p', 'copied', '--json').stdout) as StatusResult).store.profileUuid,
      orig.uuid,
    );
  });
});
