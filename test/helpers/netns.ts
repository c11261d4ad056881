/**
 * Test hosts on one machine: network namespaces on a bridge of their own, as several machines on
 * a LAN. A server namespace runs a RabbitMQ node and a PostgreSQL cluster of the test's own; each
 * host namespace runs drover with its own hostname (a UTS namespace), its own DROVER_HOME and only
 * the network: links can be cut (the host's veth goes down) and put back. Everything made here
 * (namespaces, bridge, links, servers, folders) is removed by {@link TestNet.destroy}; traffic
 * stays on the bridge and the namespaces' loopbacks.
 *
 * Needs root, `ip` (iproute2), `unshare`, and the RabbitMQ and PostgreSQL server binaries.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import amqp from 'amqplib';
import pg from 'pg';
import { CLI, waitUntil } from './env.js';
import { findPostgresBin } from './pg-cluster.js';

const RABBIT_BIN_DIRS = ['/usr/lib/rabbitmq/bin'];

function rabbitBin(): string | null {
  return RABBIT_BIN_DIRS.find((d) => fs.existsSync(path.join(d, 'rabbitmq-server'))) ?? null;
}

function have(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Why test hosts cannot be made here, or null when they can. */
export function testNetUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'root (to create network namespaces)';
  for (const c of ['ip', 'unshare', 'runuser']) if (!have(c)) return `the '${c}' command`;
  if (rabbitBin() === null) return `RabbitMQ server scripts in ${RABBIT_BIN_DIRS.join(', ')}`;
  if (findPostgresBin() === null) return 'PostgreSQL server binaries (initdb, pg_ctl)';
  try {
    execFileSync('id', ['-u', 'postgres'], { stdio: 'ignore' });
  } catch {
    return "a 'postgres' user to run PostgreSQL as";
  }
  return null;
}

function sh(file: string, args: string[]): string {
  return execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
}

/** A drover process started in a host namespace. */
export interface HostProcess {
  child: ChildProcess;
  /** Everything it wrote so far (stdout and stderr). */
  output(): string;
  exited: Promise<void>;
}

/** One test host. */
export interface TestHost {
  readonly name: string;
  readonly ns: string;
  readonly ip: string;
  /** Its DROVER_HOME. */
  readonly home: string;
  /** Runs `drover ARGS` there (as that host, with its hostname) and returns how it ended. */
  cli(
    args: string[],
    input?: string,
    extraEnv?: NodeJS.ProcessEnv,
  ): Promise<{ status: number; stdout: string; stderr: string }>;
  /** Starts `drover ARGS` there in the background (a daemon). */
  spawn(args: string[]): HostProcess;
  /** Cuts the host's link to the bridge (it keeps running, alone). */
  cut(): void;
  /** Puts the link back. */
  restore(): void;
}

/** The server namespace's services and the hosts. */
export interface TestNet {
  readonly serverIp: string;
  readonly amqpUrl: string;
  /** A database of the server's PostgreSQL, reachable from every host. */
  readonly pgUrl: string;
  readonly hosts: TestHost[];
  /** RabbitMQ's CLI on the server node. */
  rabbitctl(...args: string[]): string;
  destroy(): Promise<void>;
}

/** `drover` arguments that set up profile `name` on the server's PostgreSQL and RabbitMQ, as the default. */
export function sharedProfileSetup(net: TestNet, name: string): string[] {
  return [
    'profile',
    'setup',
    name,
    '--storage',
    'postgres',
    '--postgres-url',
    net.pgUrl,
    '--broker',
    'rabbitmq',
    '--broker-url',
    net.amqpUrl,
    '--set-default',
  ];
}

/** Creates a server namespace and `n` hosts on a bridge; resolves once both servers answer. */
export async function createTestNet(n: number): Promise<TestNet> {
  const tag = crypto.randomBytes(3).toString('hex');
  // A /24 of 10.x that no interface of the machine uses.
  const used = sh('ip', ['-4', '-o', 'addr']);
  let net = '';
  for (let i = 0; i < 200; i++) {
    const candidate = `10.${200 + (crypto.randomBytes(1)[0]! % 50)}.${crypto.randomBytes(1)[0]! % 250}`;
    if (!used.includes(`${candidate}.`)) {
      net = candidate;
      break;
    }
  }
  const bridge = `drvbr${tag}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-net-'));
  fs.chmodSync(dir, 0o755); // the postgres user reaches its data directory inside
  const made: { ns: string[]; links: string[]; bridge: boolean } = { ns: [], links: [], bridge: false };
  const children: ChildProcess[] = [];
  const serverNs = `drv${tag}srv`;
  const serverIp = `${net}.1`;
  let pgData = '';
  let rabbitEnv: NodeJS.ProcessEnv = {};
  let rabbitNode = '';

  const destroy = async (): Promise<void> => {
    if (rabbitNode !== '') {
      try {
        sh('ip', [
          'netns',
          'exec',
          serverNs,
          path.join(rabbitBin()!, 'rabbitmqctl'),
          '-q',
          '-n',
          rabbitNode,
          'shutdown',
        ]);
      } catch {
        // not answering: killed with the namespace's processes below
      }
    }
    if (pgData !== '') {
      try {
        sh('ip', [
          'netns',
          'exec',
          serverNs,
          'runuser',
          '-u',
          'postgres',
          '--',
          path.join(findPostgresBin()!, 'pg_ctl'),
          '-D',
          pgData,
          '-m',
          'immediate',
          '-w',
          'stop',
        ]);
      } catch {
        // already down
      }
    }
    for (const c of children) {
      if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }
    // Whatever still runs in our namespaces (a server's helper, a drover worker) goes with them.
    for (const ns of made.ns) {
      try {
        for (const pid of sh('ip', ['netns', 'pids', ns])
          .split('\n')
          .filter((x) => x.trim() !== '')) {
          const p = Number(pid);
          if (Number.isInteger(p) && p > 1) process.kill(p, 'SIGKILL');
        }
      } catch {
        // gone already
      }
    }
    for (const l of made.links) {
      try {
        sh('ip', ['link', 'del', l]);
      } catch {
        // removed with its namespace
      }
    }
    if (made.bridge) {
      try {
        sh('ip', ['link', 'del', bridge]);
      } catch {
        // gone
      }
    }
    for (const ns of made.ns) {
      try {
        sh('ip', ['netns', 'del', ns]);
      } catch {
        // gone
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };

  try {
    sh('ip', ['link', 'add', bridge, 'type', 'bridge']);
    made.bridge = true;
    sh('ip', ['addr', 'add', `${net}.254/24`, 'dev', bridge]);
    sh('ip', ['link', 'set', bridge, 'up']);
    const addNs = (ns: string, ip: string, link: string): void => {
      sh('ip', ['netns', 'add', ns]);
      made.ns.push(ns);
      sh('ip', ['link', 'add', link, 'type', 'veth', 'peer', 'name', `${link}p`]);
      made.links.push(link);
      sh('ip', ['link', 'set', `${link}p`, 'netns', ns]);
      sh('ip', ['link', 'set', link, 'master', bridge]);
      sh('ip', ['link', 'set', link, 'up']);
      sh('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
      sh('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', `${link}p`, 'name', 'eth0']);
      sh('ip', ['netns', 'exec', ns, 'ip', 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
      sh('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'eth0', 'up']);
    };
    addNs(serverNs, serverIp, `drv${tag}s`);

    // PostgreSQL in the server namespace, open to the hosts' network.
    const pgBin = findPostgresBin()!;
    pgData = path.join(dir, 'pg');
    fs.mkdirSync(pgData, { mode: 0o700 });
    const pgUid = Number(sh('id', ['-u', 'postgres']).trim());
    const pgGid = Number(sh('id', ['-g', 'postgres']).trim());
    fs.chownSync(pgData, pgUid, pgGid);
    const asPostgres = (cmd: string, args: string[]): string =>
      sh('ip', ['netns', 'exec', serverNs, 'runuser', '-u', 'postgres', '--', path.join(pgBin, cmd), ...args]);
    asPostgres('initdb', ['-D', pgData, '-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8']);
    fs.appendFileSync(
      path.join(pgData, 'postgresql.conf'),
      [
        "listen_addresses = '*'",
        'port = 5432',
        `unix_socket_directories = '${pgData}'`,
        'fsync = off',
        'max_connections = 300',
        '',
      ].join('\n'),
    );
    fs.appendFileSync(path.join(pgData, 'pg_hba.conf'), `host all all ${net}.0/24 trust\n`);
    asPostgres('pg_ctl', ['-D', pgData, '-l', path.join(pgData, 'server.log'), '-w', '-t', '60', 'start']);
    const adminUrl = `postgres://postgres@${serverIp}:5432/postgres`;
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    await admin.query('CREATE DATABASE drover');
    await admin.end();

    // RabbitMQ in the server namespace (its own epmd there), guest allowed from the hosts.
    const rdir = path.join(dir, 'rabbit');
    fs.mkdirSync(rdir);
    rabbitNode = `drover-net-${tag}@localhost`;
    const conf = path.join(rdir, 'rabbitmq.conf');
    fs.writeFileSync(conf, 'listeners.tcp.1 = 0.0.0.0:5672\nloopback_users = none\n');
    fs.writeFileSync(path.join(rdir, 'rabbitmq-env.conf'), '');
    fs.writeFileSync(path.join(rdir, 'enabled_plugins'), '[].\n');
    fs.writeFileSync(path.join(rdir, '.erlang.cookie'), crypto.randomBytes(16).toString('hex').toUpperCase(), {
      mode: 0o400,
    });
    rabbitEnv = {
      ...process.env,
      HOME: rdir,
      RABBITMQ_NODENAME: rabbitNode,
      RABBITMQ_CONFIG_FILE: conf,
      RABBITMQ_CONF_ENV_FILE: path.join(rdir, 'rabbitmq-env.conf'),
      RABBITMQ_ADVANCED_CONFIG_FILE: path.join(rdir, 'advanced.config'),
      RABBITMQ_ENABLED_PLUGINS_FILE: path.join(rdir, 'enabled_plugins'),
      RABBITMQ_MNESIA_BASE: path.join(rdir, 'mnesia'),
      RABBITMQ_LOG_BASE: path.join(rdir, 'log'),
      RABBITMQ_PID_FILE: path.join(rdir, 'node.pid'),
      ERL_EPMD_ADDRESS: '127.0.0.1',
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
    };
    const out = fs.openSync(path.join(rdir, 'server.out'), 'a');
    const server = spawn('ip', ['netns', 'exec', serverNs, path.join(rabbitBin()!, 'rabbitmq-server')], {
      env: rabbitEnv,
      cwd: rdir,
      stdio: ['ignore', out, out],
    });
    fs.closeSync(out);
    children.push(server);
    const amqpUrl = `amqp://guest:guest@${serverIp}:5672`;
    await waitUntil(
      async () => {
        if (server.exitCode !== null)
          throw new Error(fs.readFileSync(path.join(rdir, 'server.out'), 'utf8').slice(-3000));
        try {
          const c = await amqp.connect(amqpUrl, { timeout: 2000 });
          c.on('error', () => undefined);
          await c.close();
          return true;
        } catch {
          return false;
        }
      },
      90_000,
      'the server namespace RabbitMQ node to start',
      250,
    );

    const hosts: TestHost[] = [];
    for (let i = 1; i <= n; i++) {
      const name = `host${i}`;
      const ns = `drv${tag}h${i}`;
      const ip = `${net}.${10 + i}`;
      const link = `drv${tag}${i}`;
      addNs(ns, ip, link);
      const home = path.join(dir, name);
      fs.mkdirSync(home, { mode: 0o700 });
      const argv = (args: string[]): string[] => [
        'netns',
        'exec',
        ns,
        'unshare',
        '--uts',
        'sh',
        '-c',
        `hostname ${name} && exec "$0" "$@"`,
        process.execPath,
        CLI,
        ...args,
      ];
      const env: NodeJS.ProcessEnv = { ...process.env, DROVER_HOME: home };
      // A host of its own: no profile, runtime dir or session bus of the machine's.
      delete env.DROVER_PROFILE;
      delete env.XDG_RUNTIME_DIR;
      delete env.DBUS_SESSION_BUS_ADDRESS;
      hosts.push({
        name,
        ns,
        ip,
        home,
        cli: (args, input, extraEnv) =>
          new Promise((resolve) => {
            const c = spawn('ip', argv(args), { env: { ...env, ...extraEnv }, stdio: ['pipe', 'pipe', 'pipe'] });
            let stdout = '';
            let stderr = '';
            c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
            c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
            c.stdin.end(input ?? '');
            c.on('close', (code) => resolve({ status: code ?? -1, stdout, stderr }));
          }),
        spawn: (args) => {
          const c = spawn('ip', argv(args), { env, stdio: ['ignore', 'pipe', 'pipe'] });
          children.push(c);
          let text = '';
          c.stdout!.on('data', (d: Buffer) => (text += d.toString()));
          c.stderr!.on('data', (d: Buffer) => (text += d.toString()));
          return { child: c, output: () => text, exited: new Promise((r) => c.on('exit', () => r())) };
        },
        cut: () => void sh('ip', ['link', 'set', link, 'down']),
        restore: () => void sh('ip', ['link', 'set', link, 'up']),
      });
    }
    return {
      serverIp,
      amqpUrl,
      pgUrl: `postgres://postgres@${serverIp}:5432/drover`,
      hosts,
      rabbitctl: (...args) =>
        execFileSync(
          'ip',
          ['netns', 'exec', serverNs, path.join(rabbitBin()!, 'rabbitmqctl'), '-q', '-n', rabbitNode, ...args],
          {
            env: rabbitEnv,
            encoding: 'utf8',
            timeout: 60_000,
          },
        ),
      destroy,
    };
  } catch (err) {
    await destroy();
    throw err;
  }
}
