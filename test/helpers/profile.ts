/**
 * A throw-away profile for a test file: its own DROVER_HOME (so its own config, SQLite store,
 * runtime dir and logs) and its own uuid (so its own queues), cleaned up afterwards, and helpers to
 * run real workers (`drover daemon worker`) against it.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import amqp from 'amqplib';
import { Config, type Profile, type OptionValue } from '../../src/config/index.js';
import { ProcessClient } from '../../src/api/processes.js';
import { topologyFor, deleteTopology } from '../../src/broker/rabbitmq/index.js';
import { RABBIT_URL, REPO_ROOT, spawnCli, tempDir, waitUntil, freshPostgresDatabase } from './env.js';

/** Absolute path of the compiled test process types. */
export const FIXTURE_MODULE = path.join(REPO_ROOT, 'dist', 'test', 'fixtures', 'processes.js');

/** A profile made for one test file. */
export interface TestProfile {
  home: string;
  name: string;
  profile: Profile;
  /** Environment for CLI and workers: DROVER_HOME and DROVER_PROFILE. */
  env: NodeJS.ProcessEnv;
  /** Re-reads the profile after option changes. */
  reload(): Profile;
  setOption(key: string, value: OptionValue): void;
  /** A process client of the profile that finds its daemon (the test's DROVER_HOME). */
  openClient(): Promise<ProcessClient>;
  cleanup(): Promise<void>;
}

/** Creates a profile in a fresh DROVER_HOME. */
export async function makeProfile(
  opts: {
    name?: string;
    options?: Record<string, OptionValue>;
    storage?: 'sqlite' | 'postgres';
    /** Message bus (default rabbitmq). */
    bus?: 'local' | 'rabbitmq';
    /** The RabbitMQ URL (default: the shared node), e.g. a node of the test's own. */
    brokerUrl?: string;
    /** The SQLite file (default: under the home). */
    sqlitePath?: string;
    /** A database of the test's own PostgreSQL cluster (default: a fresh one on the shared server). */
    postgresUrl?: string;
  } = {},
): Promise<TestProfile> {
  const home = tempDir('drover-home-');
  const name = opts.name ?? 'test';
  const file = path.join(home, 'config.json');
  const config = Config.load(file);
  let dropDb: (() => Promise<void>) | null = null;
  const brokerUrl = opts.brokerUrl ?? RABBIT_URL;
  const broker = opts.bus === 'local' ? { broker: 'local' as const } : { brokerUrl };
  if (opts.storage === 'postgres') {
    let url = opts.postgresUrl;
    if (url === undefined) {
      const db = await freshPostgresDatabase();
      dropDb = db.drop;
      url = db.url;
    }
    config.setupProfile(
      name,
      { storage: 'postgres', postgresUrl: url, ...broker, setDefault: true },
      {
        DROVER_HOME: home,
      },
    );
  } else {
    config.setupProfile(name, { ...broker, setDefault: true, sqlitePath: opts.sqlitePath }, { DROVER_HOME: home });
  }
  for (const [k, v] of Object.entries({ 'processes.modules': [FIXTURE_MODULE], ...(opts.options ?? {}) })) {
    config.setOption(k, v, name);
  }
  config.save();
  const env = { DROVER_HOME: home, DROVER_PROFILE: name };
  const tp: TestProfile = {
    home,
    name,
    env,
    profile: Config.load(file).getProfile(name),
    reload() {
      tp.profile = Config.load(file).getProfile(name);
      return tp.profile;
    },
    setOption(key, value) {
      const c = Config.load(file);
      c.setOption(key, value, name);
      c.save();
      tp.reload();
    },
    openClient() {
      return ProcessClient.open(tp.profile, { env: { ...process.env, ...env } });
    },
    async cleanup() {
      if (tp.profile.broker.kind === 'rabbitmq') await dropTopology(tp.profile.uuid, brokerUrl);
      await dropDb?.();
      fs.rmSync(home, { recursive: true, force: true });
    },
  };
  return tp;
}

/**
 * The environment of "another host" of `tp`'s profile on this machine: a home of its own holding
 * the same profile (same uuid, store and broker), as `profile import` would give it.
 */
export function anotherHost(tp: TestProfile, prefix = 'drover-host2-'): NodeJS.ProcessEnv {
  const home = tempDir(prefix);
  fs.copyFileSync(path.join(tp.home, 'config.json'), path.join(home, 'config.json'));
  fs.chmodSync(path.join(home, 'config.json'), 0o600);
  return { ...tp.env, DROVER_HOME: home };
}

/** Deletes a profile's RabbitMQ queues and exchanges (nothing when the broker is gone). */
export async function dropTopology(uuid: string, url = RABBIT_URL): Promise<void> {
  try {
    const conn = await amqp.connect(url);
    const ch = await conn.createChannel();
    ch.on('error', () => undefined);
    await deleteTopology(ch, topologyFor(uuid)).catch(() => undefined);
    await conn.close().catch(() => undefined);
  } catch {
    // broker gone: nothing to clean
  }
}

/** A worker started with `drover daemon worker`. */
export interface WorkerProc {
  child: ChildProcess;
  /** Everything it printed so far. */
  output(): string;
  /** Resolves with the exit code once it has exited. */
  exited: Promise<number | null>;
}

/** Starts a foreground worker and waits until it consumes. */
export async function startWorker(tp: TestProfile, extraEnv: NodeJS.ProcessEnv = {}): Promise<WorkerProc> {
  const child = spawnCli(['daemon', 'worker'], { ...tp.env, ...extraEnv });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const w: WorkerProc = { child, output: () => out, exited };
  let gone = false;
  void exited.then(() => (gone = true));
  await waitUntil(() => out.includes(' consuming profile ') || gone, 30_000, 'worker to start consuming');
  if (gone) throw new Error(`worker exited during start:\n${out}`);
  return w;
}

/** Stops workers (SIGTERM, then SIGKILL after a few seconds) and waits for them. */
export async function stopWorkers(workers: WorkerProc[]): Promise<void> {
  await Promise.all(
    workers.map(async (w) => {
      if (w.child.exitCode !== null || w.child.signalCode !== null) return;
      w.child.kill('SIGTERM');
      const t = setTimeout(() => w.child.kill('SIGKILL'), 15_000);
      await w.exited;
      clearTimeout(t);
    }),
  );
}

/** Counts lines of a run-record file: id → number of runs. */
export function countRuns(file: string): Map<number, number> {
  const m = new Map<number, number>();
  if (!fs.existsSync(file)) return m;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (line === '') continue;
    const id = Number(line);
    m.set(id, (m.get(id) ?? 0) + 1);
  }
  return m;
}

export { waitUntil };
