/**
 * A PostgreSQL cluster of a test's own, to stop and restart under running workers (the shared
 * server on 5432 is never touched): `initdb` into a temp dir, a free port, the socket in that dir.
 * PostgreSQL refuses to run as root, so under root the binaries run as the `postgres` user.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import pg from 'pg';
import { closedPort } from './env.js';

/** A running (or stopped) cluster of the test's own. */
export interface PgCluster {
  readonly port: number;
  /** The data directory (and socket directory). */
  readonly dir: string;
  /** URL of database `db` over TCP on 127.0.0.1. */
  url(db?: string): string;
  /** Creates a database; returns its URL. */
  createDatabase(name: string): Promise<string>;
  /** `pg_ctl stop -m <mode>` (waits until it is down). */
  stop(mode: 'smart' | 'fast' | 'immediate'): void;
  /** `pg_ctl start` on the same port (waits until it accepts connections). */
  start(): void;
  /** The server's log so far. */
  log(): string;
  /** Stops it (immediately) and removes its directory; safe to call twice. */
  destroy(): void;
}

/** The newest installed PostgreSQL bin directory (with initdb and pg_ctl), or null. */
export function findPostgresBin(): string | null {
  const root = '/usr/lib/postgresql';
  if (!fs.existsSync(root)) return null;
  const versions = fs
    .readdirSync(root)
    .filter(
      (v) => fs.existsSync(path.join(root, v, 'bin', 'initdb')) && fs.existsSync(path.join(root, v, 'bin', 'pg_ctl')),
    )
    .sort((a, b) => Number(b) - Number(a));
  return versions.length > 0 ? path.join(root, versions[0]!, 'bin') : null;
}

/** Who runs the server: ourselves, or (as root) the `postgres` user; null when neither can. */
function serverUser(): { uid: number; gid: number; wrap: string[] } | null {
  if (process.getuid?.() !== 0) return { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, wrap: [] };
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    return { uid, gid, wrap: ['runuser', '-u', 'postgres', '--'] };
  } catch {
    return null;
  }
}

/** Why a cluster of our own cannot be made here, or null when it can. */
export function pgClusterUnavailable(): string | null {
  if (findPostgresBin() === null) return 'PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin';
  if (serverUser() === null) return "a non-root user to run PostgreSQL as (running as root, and no 'postgres' user)";
  return null;
}

/** Creates and starts a cluster of the test's own. */
export async function startPgCluster(): Promise<PgCluster> {
  const bin = findPostgresBin();
  const user = serverUser();
  if (bin === null || user === null) throw new Error(`cannot start a PostgreSQL cluster: ${pgClusterUnavailable()}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-pg-'));
  const data = path.join(dir, 'data');
  const logFile = path.join(dir, 'server.log');
  fs.chownSync(dir, user.uid, user.gid);
  const run = (cmd: string, args: string[]): string => {
    const [file, ...rest] = [...user.wrap, path.join(bin, cmd), ...args];
    return execFileSync(file!, rest, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], cwd: dir });
  };
  let port = 0;
  let running = false;
  const cluster: PgCluster = {
    get port() {
      return port;
    },
    dir,
    url: (db = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${db}`,
    async createDatabase(name) {
      const c = new pg.Client({ connectionString: cluster.url() });
      await c.connect();
      try {
        await c.query(`CREATE DATABASE ${name}`);
      } finally {
        await c.end();
      }
      return cluster.url(name);
    },
    stop(mode) {
      run('pg_ctl', ['-D', data, '-m', mode, '-w', '-t', '60', 'stop']);
      running = false;
    },
    start() {
      run('pg_ctl', ['-D', data, '-l', logFile, '-w', '-t', '60', 'start']);
      running = true;
    },
    log: () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : ''),
    destroy() {
      if (running) {
        try {
          cluster.stop('immediate');
        } catch {
          // already down
        }
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    run('initdb', ['-D', data, '-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8']);
    port = await closedPort();
    // Durability across an OS crash is not what is tested (only the server's): skip the fsyncs.
    fs.appendFileSync(
      path.join(data, 'postgresql.conf'),
      [
        `port = ${port}`,
        "listen_addresses = '127.0.0.1'",
        `unix_socket_directories = '${dir}'`,
        'fsync = off',
        'max_connections = 200',
        '',
      ].join('\n'),
    );
    cluster.start();
  } catch (err) {
    cluster.destroy();
    throw err;
  }
  return cluster;
}
