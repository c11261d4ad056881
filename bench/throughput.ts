/**
 * End-to-end benchmark (`npm run bench`; not a test). In one run, on this machine:
 *
 * 1. Raw amqplib baseline: N persistent messages published with confirms to a durable queue and
 *    consumed with manual acks (prefetch 200) by 2 consumers on separate connections; and the raw
 *    AMQP request/reply round trip (publish, consume, reply, receive) over 500 sequential requests.
 * 2. For each message bus (`local`, `rabbitmq`) on a fresh SQLite profile (BENCH_STORE for
 *    PostgreSQL), a daemon with 2 workers, and:
 *    - bulk: N trivial `core.arithmetic.add` processes submitted in one go, until all are
 *      `finished` in the store;
 *    - latency: 500 sequential processes, each submitted and awaited with the library's wait
 *      (`waitForProcesses`), from submit to the finished state seen by the submitter; p50/p95/p99.
 * 3. The raw baseline again (the machine is shared and noisy: compare ratios from one run).
 *
 * Prints each figure and its ratio to the baseline, and the peak RSS of the workers.
 *
 * Options (env): BENCH_N (default 10000), BENCH_LATENCY_N (500), BENCH_STORE (sqlite | postgres),
 * BENCH_BUSES (comma list, default local,rabbitmq).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import amqp from 'amqplib';
import pg from 'pg';
import { Config, type Profile } from '../src/config/index.js';
import { ProcessClient } from '../src/api/processes.js';
import { waitForProcesses } from '../src/api/control.js';
import { deleteTopology, topologyFor } from '../src/broker/rabbitmq/index.js';

const N = Number(process.env.BENCH_N ?? 10_000);
const LATENCY_N = Number(process.env.BENCH_LATENCY_N ?? 500);
const STORE = process.env.BENCH_STORE ?? 'sqlite';
const BUSES = (process.env.BENCH_BUSES ?? 'local,rabbitmq').split(',') as Array<'local' | 'rabbitmq'>;
const RABBIT = 'amqp://guest:guest@127.0.0.1:5672';
const PG_ADMIN = 'postgres://postgres@127.0.0.1:5432/test';
const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'drover.js');

function peakRssMiB(pid: number): number {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /VmHWM:\s+(\d+) kB/.exec(status);
    return m ? Math.round(Number(m[1]) / 1024) : NaN;
  } catch {
    return NaN;
  }
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

interface Lat {
  p50: number;
  p95: number;
  p99: number;
}

function latencies(ms: number[]): Lat {
  const s = [...ms].sort((a, b) => a - b);
  return { p50: quantile(s, 0.5), p95: quantile(s, 0.95), p99: quantile(s, 0.99) };
}

/** A fresh profile with a daemon of 2 workers; returns it with a client and a stop function. */
async function daemonProfile(bus: 'local' | 'rabbitmq'): Promise<{
  profile: Profile;
  client: ProcessClient;
  workerPids: number[];
  stop: () => Promise<void>;
}> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-bench-'));
  let dropDb: (() => Promise<void>) | null = null;
  const config = Config.load(path.join(home, 'config.json'));
  const broker = bus === 'local' ? { broker: 'local' as const } : { brokerUrl: RABBIT };
  if (STORE === 'postgres') {
    const name = `drover_bench_${crypto.randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ connectionString: PG_ADMIN });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    dropDb = async () => {
      const c = new pg.Client({ connectionString: PG_ADMIN });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    };
    config.setupProfile(
      'bench',
      { storage: 'postgres', postgresUrl: `postgres://postgres@127.0.0.1:5432/${name}`, ...broker },
      { DROVER_HOME: home },
    );
  } else {
    config.setupProfile('bench', broker, { DROVER_HOME: home });
  }
  config.save();
  const profile = config.getProfile('bench');
  const env = { ...process.env, DROVER_HOME: home, DROVER_PROFILE: 'bench' };
  const daemon: ChildProcess = spawn(process.execPath, [CLI, 'daemon', 'start', '2', '--foreground'], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    daemon.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('daemon ready')) resolve();
    });
    daemon.on('exit', () => reject(new Error(`daemon exited: ${out}`)));
  });
  const workerPids = [...out.matchAll(/started worker w\d+ \(pid (\d+)/g)].map((m) => Number(m[1]));
  const client = await ProcessClient.open(profile, { env });
  return {
    profile,
    client,
    workerPids,
    stop: async () => {
      await client.close();
      daemon.kill('SIGTERM');
      await new Promise((r) => (daemon.exitCode !== null ? r(null) : daemon.on('exit', r)));
      if (bus === 'rabbitmq') {
        const conn = await amqp.connect(RABBIT);
        const ch = await conn.createChannel();
        await deleteTopology(ch, topologyFor(profile.uuid)).catch(() => undefined);
        await conn.close();
      }
      await dropDb?.();
      fs.rmSync(home, { recursive: true, force: true });
    },
  };
}

interface BusResult {
  bus: string;
  perSecond: number;
  seconds: number;
  latency: Lat;
  peakRss: number[];
}

async function droverRun(bus: 'local' | 'rabbitmq'): Promise<BusResult> {
  const d = await daemonProfile(bus);
  try {
    const { client } = d;
    // Warm up both workers and the connections.
    await waitForProcesses(
      client,
      await client.submitMany(
        'core.arithmetic.add',
        Array.from({ length: 50 }, (_, i) => ({ x: i, y: 1 })),
      ),
    );
    const base = (await client.store.countByState()).finished;
    const inputs = Array.from({ length: N }, (_, i) => ({ x: i, y: 1 }));
    const t0 = performance.now();
    await client.submitMany('core.arithmetic.add', inputs);
    for (;;) {
      const c = await client.store.countByState();
      if (c.finished - base >= N) break;
      if (c.excepted > 0) throw new Error(`${c.excepted} processes excepted`);
      await new Promise((r) => setTimeout(r, 10));
    }
    const seconds = (performance.now() - t0) / 1000;
    const lat: number[] = [];
    for (let i = 0; i < LATENCY_N; i++) {
      const s = performance.now();
      const id = await client.submit('core.arithmetic.add', { x: i, y: 1 });
      await waitForProcesses(client, [id]);
      lat.push(performance.now() - s);
    }
    return {
      bus,
      perSecond: N / seconds,
      seconds,
      latency: latencies(lat),
      peakRss: d.workerPids.map(peakRssMiB),
    };
  } finally {
    await d.stop();
  }
}

async function rawBaseline(): Promise<{ perSecond: number; seconds: number }> {
  const queue = `drover.bench.raw.${crypto.randomUUID()}`;
  const pubConn = await amqp.connect(RABBIT, { noDelay: true });
  const pub = await pubConn.createConfirmChannel();
  await pub.assertQueue(queue, { durable: true });
  const consumers = await Promise.all([0, 1].map(() => amqp.connect(RABBIT, { noDelay: true })));
  let received = 0;
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  for (const c of consumers) {
    const ch = await c.createChannel();
    await ch.prefetch(200);
    await ch.consume(queue, (m) => {
      if (!m) return;
      ch.ack(m);
      if (++received === N) done();
    });
  }
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const ok = pub.sendToQueue(queue, Buffer.from(JSON.stringify({ v: 1, kind: 'continue', processId: i + 1 })), {
      persistent: true,
    });
    if (!ok) await new Promise((r) => pub.once('drain', r));
  }
  await pub.waitForConfirms();
  await finished;
  const seconds = (performance.now() - t0) / 1000;
  await pub.deleteQueue(queue);
  await pubConn.close();
  for (const c of consumers) await c.close();
  return { perSecond: N / seconds, seconds };
}

/** Raw AMQP request/reply: publish a request, a consumer replies on a reply queue, the requester receives. */
async function rawRoundTrip(): Promise<Lat> {
  const conn = await amqp.connect(RABBIT, { noDelay: true });
  const server = await amqp.connect(RABBIT, { noDelay: true });
  const ch = await conn.createChannel();
  const sch = await server.createChannel();
  const q = `drover.bench.rpc.${crypto.randomUUID()}`;
  await sch.assertQueue(q, { durable: false, autoDelete: true });
  await sch.consume(
    q,
    (m) => {
      if (!m) return;
      sch.sendToQueue(m.properties.replyTo as string, m.content, { correlationId: m.properties.correlationId });
      sch.ack(m);
    },
    {},
  );
  const replies = await ch.assertQueue('', { exclusive: true });
  const waiting = new Map<string, () => void>();
  await ch.consume(
    replies.queue,
    (m) => {
      if (m) waiting.get(m.properties.correlationId as string)?.();
    },
    { noAck: true },
  );
  const ms: number[] = [];
  for (let i = 0; i < LATENCY_N; i++) {
    const id = String(i);
    const s = performance.now();
    await new Promise<void>((resolve) => {
      waiting.set(id, resolve);
      ch.sendToQueue(q, Buffer.from('{}'), { correlationId: id, replyTo: replies.queue });
    });
    waiting.delete(id);
    ms.push(performance.now() - s);
  }
  await conn.close();
  await server.close();
  return latencies(ms);
}

const raw = await rawBaseline();
const rtt = await rawRoundTrip();
const results: BusResult[] = [];
for (const bus of BUSES) results.push(await droverRun(bus));
const raw2 = await rawBaseline();
const rawBest = Math.max(raw.perSecond, raw2.perSecond);
const f = (x: number): string => x.toFixed(2);
console.log(`N = ${N}, latency over ${LATENCY_N} sequential processes, store = ${STORE}, ${os.cpus().length} cores`);
console.log(
  `raw amqplib: ${raw.perSecond.toFixed(0)} and ${raw2.perSecond.toFixed(0)} msgs/s (before and after; best ${rawBest.toFixed(0)}); ` +
    `request/reply p50 ${f(rtt.p50)} ms, p95 ${f(rtt.p95)} ms`,
);
for (const r of results) {
  console.log(
    `drover ${r.bus.padEnd(8)} bulk ${r.perSecond.toFixed(0)} processes/s (${f(r.seconds)} s; ${f(r.perSecond / rawBest)}× raw); ` +
      `latency p50 ${f(r.latency.p50)} ms (${f(r.latency.p50 / rtt.p50)}× raw RTT), p95 ${f(r.latency.p95)}, p99 ${f(r.latency.p99)} ms; ` +
      `worker peak RSS ${r.peakRss.map((x) => `${x} MiB`).join(', ')}`,
  );
}
const local = results.find((r) => r.bus === 'local');
const rabbit = results.find((r) => r.bus === 'rabbitmq');
if (local && rabbit) console.log(`local / rabbitmq bulk: ${f(local.perSecond / rabbit.perSecond)}×`);
process.exit(0);
