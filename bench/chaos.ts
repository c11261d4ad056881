/**
 * Chaos run (`npm run chaos`; not a test), once per message bus (CHAOS_BUSES, default
 * `local,rabbitmq`) and store (CHAOS_STORES, default `sqlite,postgres`; PostgreSQL in a fresh
 * database on the local server, dropped after): a daemon with 3 workers runs CHAOS_N processes (each sleeps CHAOS_SLEEP_MS and
 * records every start in a file) while a random worker is SIGKILLed every CHAOS_KILL_EVERY_MS for
 * CHAOS_KILL_FOR_MS. Then it checks that every process finished, that none is left leased, and
 * reports how many were started more than once (those the killed workers were running) and how long
 * the whole run took. Exits non-zero when anything is unfinished on any bus.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { Config } from '../src/config/index.js';
import { ProcessClient } from '../src/api/processes.js';
import { DaemonClient } from '../src/client/index.js';

const N = Number(process.env.CHAOS_N ?? 2000);
const SLEEP_MS = Number(process.env.CHAOS_SLEEP_MS ?? 300);
const KILL_EVERY_MS = Number(process.env.CHAOS_KILL_EVERY_MS ?? 1000);
const KILL_FOR_MS = Number(process.env.CHAOS_KILL_FOR_MS ?? 15_000);
const FIXTURES = path.resolve(
  path.dirname(new URL(import.meta.url).pathname),
  '..',
  'test',
  'fixtures',
  'processes.js',
);

const RABBIT = 'amqp://guest:guest@127.0.0.1:5672';
const BUSES = (process.env.CHAOS_BUSES ?? 'local,rabbitmq').split(',') as Array<'local' | 'rabbitmq'>;
const STORES = (process.env.CHAOS_STORES ?? 'sqlite,postgres').split(',') as Array<'sqlite' | 'postgres'>;
const PG_ADMIN = 'postgres://postgres@127.0.0.1:5432/test';

async function adminQuery(sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: PG_ADMIN });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

async function chaos(bus: 'local' | 'rabbitmq', store: 'sqlite' | 'postgres'): Promise<boolean> {
  const db = store === 'postgres' ? `drover_chaos_${crypto.randomBytes(4).toString('hex')}` : null;
  if (db !== null) await adminQuery(`CREATE DATABASE ${db}`);
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-chaos-'));
  const env = { ...process.env, DROVER_HOME: home };
  const config = Config.load(path.join(home, 'config.json'));
  config.setupProfile(
    'chaos',
    {
      ...(bus === 'local' ? { broker: 'local' as const } : { brokerUrl: RABBIT }),
      ...(db !== null ? { storage: 'postgres' as const, postgresUrl: `postgres://postgres@127.0.0.1:5432/${db}` } : {}),
    },
    { DROVER_HOME: home },
  );
  config.setOption('processes.modules', [FIXTURES], 'chaos');
  config.setOption('daemon.worker_process_slots', 100, 'chaos');
  config.setOption('daemon.lease_seconds', 300, 'chaos'); // only the daemon's fast release can keep this run short
  config.save();
  const profile = config.getProfile('chaos');
  const runs = path.join(home, 'runs');
  const daemon = new DaemonClient(profile, { env });
  const client = await ProcessClient.open(profile, { env });
  try {
    await daemon.startDaemon({ numberWorkers: 3, wait: true, timeout: 60 });
    const t0 = performance.now();
    const ids = await client.submitMany(
      'test.record_sleep',
      Array.from({ length: N }, () => ({ seconds: SLEEP_MS / 1000, file: runs })),
    );
    let kills = 0;
    const killUntil = Date.now() + KILL_FOR_MS;
    while (Date.now() < killUntil) {
      await new Promise((r) => setTimeout(r, KILL_EVERY_MS));
      const workers = (await daemon.getWorkerInfo({ timeout: 10 })).filter(
        (w) => w.pid !== null && w.state === 'ready',
      );
      const victim = workers[Math.floor(Math.random() * workers.length)];
      if (victim?.pid) {
        try {
          process.kill(victim.pid, 'SIGKILL');
          kills++;
        } catch {
          // already gone
        }
      }
    }
    for (;;) {
      const c = await client.store.countByState();
      if (c.finished + c.excepted + c.killed >= N) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const seconds = (performance.now() - t0) / 1000;
    const procs = await client.listProcesses({});
    const starts = new Map<number, number>();
    for (const line of fs.readFileSync(runs, 'utf8').split('\n'))
      if (line) starts.set(Number(line), (starts.get(Number(line)) ?? 0) + 1);
    const notFinished = procs.filter((p) => p.state !== 'finished').length;
    const leased = procs.filter((p) => p.leaseOwner !== null).length;
    const restarted = ids.filter((id) => (starts.get(id) ?? 0) > 1).length;
    const neverStarted = ids.filter((id) => !starts.has(id)).length;
    const maxClaims = Math.max(...procs.map((p) => p.runs));
    const info = await daemon.getWorkerInfo({ timeout: 10 });
    console.log(
      `chaos (${store} store, ${bus} bus): ${N} processes of ${SLEEP_MS} ms on 3 workers × 100 slots, ${kills} worker SIGKILLs in ${KILL_FOR_MS / 1000} s`,
    );
    console.log(
      `all terminal after ${seconds.toFixed(1)} s; not finished: ${notFinished}; still leased: ${leased}; never started: ${neverStarted}`,
    );
    console.log(
      `started more than once (running on a killed worker): ${restarted}; max claims of one process: ${maxClaims}`,
    );
    console.log(`workers now: ${info.map((w) => `${w.id} restarts=${w.restarts} state=${w.state}`).join(', ')}`);
    return notFinished === 0 && leased === 0 && neverStarted === 0;
  } finally {
    await daemon.stopDaemon({ wait: true, timeout: 60 }).catch(() => undefined);
    if (bus === 'rabbitmq') {
      const { default: amqp } = await import('amqplib');
      const { deleteTopology, topologyFor } = await import('../src/broker/rabbitmq/index.js');
      const conn = await amqp.connect(RABBIT);
      const ch = await conn.createChannel();
      await deleteTopology(ch, topologyFor(profile.uuid)).catch(() => undefined);
      await conn.close();
    }
    await client.close();
    fs.rmSync(home, { recursive: true, force: true });
    if (db !== null) await adminQuery(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  }
}

let ok = true;
for (const store of STORES) for (const bus of BUSES) ok = (await chaos(bus, store)) && ok;
process.exitCode = ok ? 0 : 1;
