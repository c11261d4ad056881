/**
 * A RabbitMQ node of a test's own, to stop, purge, reset and restart under running workers (the
 * shared node on 5672 is never touched): `rabbitmq-server` with its own node name, data, log and
 * configuration in a temp dir, an AMQP listener and a distribution port of its own on 127.0.0.1,
 * and its own Erlang cookie (HOME points at the temp dir). It registers with the machine's epmd
 * like any node; nothing of the shared node's state is read or written.
 *
 * The server scripts are run directly from RabbitMQ's bin directory, not through the Debian
 * wrapper in /usr/sbin, which as root would switch to the `rabbitmq` user and its shared cookie.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import amqp from 'amqplib';
import { closedPort, waitUntil } from './env.js';

/** Where the RabbitMQ server scripts may be. */
const BIN_DIRS = ['/usr/lib/rabbitmq/bin', '/usr/local/opt/rabbitmq/sbin', '/opt/homebrew/opt/rabbitmq/sbin'];

/**
 * Distribution ports every `rabbitmqctl` on the machine uses for itself by default
 * (RABBITMQ_CTL_DIST_PORT_MIN..MAX): a node listening on one of them fails to start whenever a CLI
 * call (ours, or another test's against the shared node) holds it.
 */
const CLI_PORTS = { min: 35672, max: 35682 };

/** The directory with `rabbitmq-server` and `rabbitmqctl`, or null. */
function findBin(): string | null {
  for (const d of BIN_DIRS) {
    if (fs.existsSync(path.join(d, 'rabbitmq-server')) && fs.existsSync(path.join(d, 'rabbitmqctl'))) return d;
  }
  return null;
}

/** Why a node of our own cannot be started here, or null when it can. */
export function rabbitNodeUnavailable(): string | null {
  if (findBin() === null) return `RabbitMQ server scripts (rabbitmq-server, rabbitmqctl) in ${BIN_DIRS.join(', ')}`;
  return null;
}

/** A running (or stopped) node of the test's own. */
export interface RabbitNode {
  /** Its AMQP port on 127.0.0.1. */
  readonly port: number;
  /** Its Erlang node name. */
  readonly nodeName: string;
  /** AMQP URL of its default vhost, as guest. */
  readonly url: string;
  /** Runs `rabbitmqctl -n <node> ARGS`; returns its output. */
  ctl(...args: string[]): string;
  /** `stop_app`: the broker is down (connections closed and refused); the Erlang VM stays. */
  stopApp(): void;
  /** `start_app`; resolves once it accepts AMQP connections again. */
  startApp(): Promise<void>;
  /** `stop_app; reset; start_app`: every queue, message, vhost and user gone; guest and / come back. */
  reset(): Promise<void>;
  /** The server log so far. */
  log(): string;
  /** Shuts the node down and removes its directory; safe to call twice. */
  destroy(): Promise<void>;
}

async function freePort(avoid: Array<[number, number]>): Promise<number> {
  for (;;) {
    const p = await closedPort();
    if (!avoid.some(([a, b]) => p >= a && p <= b)) return p;
  }
}

function cmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

async function acceptsConnections(url: string): Promise<boolean> {
  try {
    const c = await amqp.connect(url, { timeout: 2000 });
    c.on('error', () => undefined);
    await c.close();
    return true;
  } catch {
    return false;
  }
}

/** Starts a node of the test's own; resolves once it accepts AMQP connections. */
export async function startRabbitNode(): Promise<RabbitNode> {
  const bin = findBin();
  if (bin === null) throw new Error(`cannot start a RabbitMQ node: ${rabbitNodeUnavailable()}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-rmq-'));
  const nodeName = `drover-test-${crypto.randomBytes(4).toString('hex')}@localhost`;
  const dist = await freePort([[CLI_PORTS.min, CLI_PORTS.max]]);
  const port = await freePort([
    [CLI_PORTS.min, CLI_PORTS.max],
    [dist, dist],
  ]);
  const conf = path.join(dir, 'rabbitmq.conf');
  fs.writeFileSync(conf, `listeners.tcp.1 = 127.0.0.1:${port}\n`);
  fs.writeFileSync(path.join(dir, 'rabbitmq-env.conf'), '');
  fs.writeFileSync(path.join(dir, 'enabled_plugins'), '[].\n');
  // Our own cookie, written before the server or a CLI could each make a different one.
  fs.writeFileSync(path.join(dir, '.erlang.cookie'), crypto.randomBytes(16).toString('hex').toUpperCase(), {
    mode: 0o400,
  });
  const logFile = path.join(dir, 'server.out');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: dir,
    RABBITMQ_NODENAME: nodeName,
    RABBITMQ_DIST_PORT: String(dist),
    RABBITMQ_CONFIG_FILE: conf,
    RABBITMQ_CONF_ENV_FILE: path.join(dir, 'rabbitmq-env.conf'),
    RABBITMQ_ADVANCED_CONFIG_FILE: path.join(dir, 'advanced.config'),
    RABBITMQ_ENABLED_PLUGINS_FILE: path.join(dir, 'enabled_plugins'),
    RABBITMQ_MNESIA_BASE: path.join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: path.join(dir, 'log'),
    RABBITMQ_PID_FILE: path.join(dir, 'node.pid'),
    ERL_EPMD_ADDRESS: '127.0.0.1',
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
  };
  const url = `amqp://guest:guest@127.0.0.1:${port}`;
  const out = fs.openSync(logFile, 'a');
  const server: ChildProcess = spawn(path.join(bin, 'rabbitmq-server'), [], {
    env,
    cwd: dir,
    stdio: ['ignore', out, out],
  });
  fs.closeSync(out);
  let exited = false;
  server.on('exit', () => (exited = true));
  const ctl = (...args: string[]): string =>
    execFileSync(path.join(bin, 'rabbitmqctl'), ['-q', '-n', nodeName, ...args], {
      env,
      cwd: dir,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 60_000,
    });
  let destroyed = false;
  const node: RabbitNode = {
    port,
    nodeName,
    url,
    ctl,
    stopApp: () => void ctl('stop_app'),
    async startApp() {
      ctl('start_app');
      await waitUntil(() => acceptsConnections(url), 30_000, `RabbitMQ node ${nodeName} to accept connections`, 200);
    },
    async reset() {
      ctl('stop_app');
      ctl('reset');
      await node.startApp();
    },
    log: () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : ''),
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      if (!exited) {
        try {
          ctl('shutdown');
        } catch {
          // Not answering: kill the VM, once its pid file names a process running our node name.
          let pid = NaN;
          try {
            pid = Number(fs.readFileSync(env.RABBITMQ_PID_FILE!, 'utf8').trim());
          } catch {
            // No pid file: the VM never got that far.
          }
          if (Number.isInteger(pid) && pid > 1 && cmdline(pid).includes(nodeName)) process.kill(pid, 'SIGKILL');
          if (!exited) server.kill('SIGTERM');
        }
        await waitUntil(() => exited, 30_000, `RabbitMQ node ${nodeName} to exit`).catch(() => undefined);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await waitUntil(
      async () => exited || (await acceptsConnections(url)),
      90_000,
      `RabbitMQ node ${nodeName} to start`,
      250,
    );
    if (exited) throw new Error(`RabbitMQ node ${nodeName} exited during start:\n${node.log().slice(-3000)}`);
  } catch (err) {
    await node.destroy();
    throw err;
  }
  return node;
}
