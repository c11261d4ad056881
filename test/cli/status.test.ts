/**
 * `drover status` against the real RabbitMQ, SQLite and PostgreSQL, and against brokers that
 * refuse or never answer: it must say what is unreachable and exit 3, bounded by daemon.timeout.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
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
});
