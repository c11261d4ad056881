/**
 * Cheap reachability probes of a profile's store and broker, for `drover daemon status`: a TCP
 * (or Unix socket) connection to the server, or a look at the SQLite file. No driver is loaded and
 * no one logs in, so a status call stays fast; `drover status` does the full check (login, schema
 * and server versions). Every probe is bounded by its timeout and never throws.
 *
 * @module
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describeStorage, type BrokerSettings, type StorageSettings } from '../config/config.js';

/** What a probe found. */
export interface ReachabilityCheck {
  /** What was probed, for people: `sqlite:/path`, `127.0.0.1:5672`, ... (no password). */
  target: string;
  reachable: boolean;
  /** How it was probed, or why it is not reachable. */
  detail: string;
}

/** Connects to `host:port` (or the Unix socket `socketPath`) and closes again; resolves why not on failure. */
function connectProbe(
  where: { host: string; port: number } | { socketPath: string },
  timeoutMs: number,
): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = 'socketPath' in where ? net.connect(where.socketPath) : net.connect(where.port, where.host);
    const finish = (why: string | null): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(why);
    };
    const timer = setTimeout(() => finish(`no connection within ${timeoutMs / 1000}s`), timeoutMs);
    socket.once('connect', () => finish(null));
    socket.once('error', (err: NodeJS.ErrnoException) => finish(err.code ?? err.message));
  });
}

/** The nearest existing directory at or above `dir`. */
function existingAncestor(dir: string): string {
  let d = dir;
  while (!fs.existsSync(d)) {
    const up = path.dirname(d);
    if (up === d) return d;
    d = up;
  }
  return d;
}

function sqliteProbe(file: string): ReachabilityCheck {
  const target = describeStorage({ backend: 'sqlite', path: file });
  try {
    fs.accessSync(file, fs.constants.R_OK | fs.constants.W_OK);
    return { target, reachable: true, detail: 'file readable and writable' };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') return { target, reachable: false, detail: `${code ?? 'not accessible'}` };
  }
  // Not there yet: the first process submitted creates it, if its directory can be made.
  const dir = existingAncestor(path.dirname(file));
  try {
    fs.accessSync(dir, fs.constants.W_OK);
    return { target, reachable: true, detail: 'not created yet (the first use creates it)' };
  } catch {
    return { target, reachable: false, detail: `the file does not exist and ${dir} is not writable` };
  }
}

/** Where a PostgreSQL URL points, with node-postgres' defaults (localhost:5432). */
function postgresTarget(url: string): { host: string; port: number } | { socketPath: string } {
  const u = new URL(url);
  const port = u.port === '' ? 5432 : Number(u.port);
  const host = u.hostname !== '' ? decodeURIComponent(u.hostname) : (u.searchParams.get('host') ?? 'localhost');
  if (host.startsWith('/')) return { socketPath: path.join(host, `.s.PGSQL.${port}`) };
  return { host: host.replace(/^\[(.*)\]$/, '$1'), port };
}

/** Probes the profile's store: the SQLite file, or a connection to the PostgreSQL server. */
export async function probeStore(storage: StorageSettings, timeoutMs: number): Promise<ReachabilityCheck> {
  if (storage.backend === 'sqlite') return sqliteProbe(storage.path);
  const target = describeStorage(storage);
  let where: { host: string; port: number } | { socketPath: string };
  try {
    where = postgresTarget(storage.url);
  } catch {
    return { target, reachable: false, detail: 'the URL cannot be parsed' };
  }
  const why = await connectProbe(where, timeoutMs);
  return why === null
    ? { target, reachable: true, detail: 'the server accepts connections' }
    : { target, reachable: false, detail: why };
}

/**
 * Probes the profile's broker: a connection to the RabbitMQ server. The local bus is the daemon
 * itself: there is no server to reach (whether the daemon runs is reported beside it).
 */
export async function probeBroker(broker: BrokerSettings, timeoutMs: number): Promise<ReachabilityCheck> {
  const target = broker.displayUrl;
  if (broker.kind === 'local')
    return { target, reachable: true, detail: 'the daemon carries tasks (no broker server)' };
  const why = await connectProbe({ host: broker.host.replace(/^\[(.*)\]$/, '$1'), port: broker.port }, timeoutMs);
  return why === null
    ? { target, reachable: true, detail: 'the server accepts connections' }
    : { target, reachable: false, detail: why };
}
