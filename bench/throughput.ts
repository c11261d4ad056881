/**
 * End-to-end throughput benchmark (`npm run bench`; not a test).
 *
 * In one run, on this machine:
 * 1. Drover: N trivial `core.arithmetic.add` processes submitted in one go (one store transaction,
 *    one confirmed publish) to a fresh SQLite profile, run by 2 workers (`drover daemon worker`
 *    processes) until all are `finished` in the store.
 * 2. Raw amqplib baseline: N persistent messages published with confirms to a durable queue and
 *    consumed with manual acks (prefetch 200) by 2 consumers on separate connections.
 * Prints processes/s, the baseline msgs/s, their ratio, and the peak RSS of each worker.
 *
 * Options (env): BENCH_N (default 10000), BENCH_STORE (sqlite | postgres), BENCH_QUEUE_TYPE
 * (classic | quorum, for the baseline).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import amqp from 'amqplib';
import pg from 'pg';
import { Config } from '../src/config/index.js';
import { ProcessClient } from '../src/api/processes.js';
import { deleteTopology, topologyFor } from '../src/broker/rabbitmq/index.js';

const N = Number(process.env.BENCH_N ?? 10_000);
const STORE = process.env.BENCH_STORE ?? 'sqlite';
const QUEUE_TYPE = process.env.BENCH_QUEUE_TYPE ?? 'classic';
const RABBIT = 'amqp://guest:guest@127.0.0.1:5672';
const PG_ADMIN = 'postgres://postgres@127.0.0.1:5432/test';
const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'drover.js');

/** CPU seconds (user + system) used so far by process `pid`. */
function cpuSeconds(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}

/** PID of the RabbitMQ server (beam.smp), to attribute CPU time; null when not found. */
function brokerPid(): number | null {
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8');
      if (cmd.includes('beam.smp') && cmd.includes('rabbit')) return Number(e);
    } catch {
      // gone
    }
  }
  return null;
}

function peakRssMiB(pid: number): number {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /VmHWM:\s+(\d+) kB/.exec(status);
    return m ? Math.round(Number(m[1]) / 1024) : NaN;
  } catch {
    return NaN;
  }
}

async function drover(): Promise<{
  perSecond: number;
  seconds: number;
  peakRss: number[];
  cpu: { workers: number[]; broker: number; submitter: number };
}> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-bench-'));
  let dropDb: (() => Promise<void>) | null = null;
  const config = Config.load(path.join(home, 'config.json'));
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
      { storage: 'postgres', postgresUrl: `postgres://postgres@127.0.0.1:5432/${name}`, brokerUrl: RABBIT },
      {
        DROVER_HOME: home,
      },
    );
  } else {
    config.setupProfile('bench', { brokerUrl: RABBIT }, { DROVER_HOME: home });
  }
  config.save();
  const profile = config.getProfile('bench');
  const env = { ...process.env, DROVER_HOME: home, DROVER_PROFILE: 'bench' };
  const client = await ProcessClient.open(profile);
  await client.bus(); // declares the topology
  const workers: ChildProcess[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const w = spawn(process.execPath, [CLI, 'daemon', 'worker'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
      workers.push(w);
      await new Promise<void>((resolve, reject) => {
        let out = '';
        w.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('consuming profile')) resolve();
        });
        w.on('exit', () => reject(new Error(`worker exited: ${out}`)));
      });
      w.stdout!.resume();
    }
    const inputs = Array.from({ length: N }, (_, i) => ({ x: i, y: 1 }));
    const beam = brokerPid();
    const cpu0 = {
      workers: workers.map((w) => cpuSeconds(w.pid!)),
      broker: beam ? cpuSeconds(beam) : NaN,
      self: process.cpuUsage(),
    };
    const t0 = performance.now();
    await client.submitMany('core.arithmetic.add', inputs);
    for (;;) {
      const c = await client.store.countByState();
      if (c.finished >= N) break;
      if (c.excepted > 0) throw new Error(`${c.excepted} processes excepted`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const seconds = (performance.now() - t0) / 1000;
    const peakRss = workers.map((w) => peakRssMiB(w.pid!));
    const self = process.cpuUsage(cpu0.self);
    const cpu = {
      workers: workers.map((w, i) => cpuSeconds(w.pid!) - cpu0.workers[i]!),
      broker: beam ? cpuSeconds(beam) - cpu0.broker : NaN,
      submitter: (self.user + self.system) / 1e6,
    };
    return { perSecond: N / seconds, seconds, peakRss, cpu };
  } finally {
    for (const w of workers) w.kill('SIGTERM');
    await Promise.all(workers.map((w) => new Promise((r) => (w.exitCode !== null ? r(null) : w.on('exit', r)))));
    const b = await client.bus();
    if (b) {
      const conn = await amqp.connect(RABBIT);
      const ch = await conn.createChannel();
      await deleteTopology(ch, topologyFor(profile.uuid)).catch(() => undefined);
      await conn.close();
    }
    await client.close();
    await dropDb?.();
    fs.rmSync(home, { recursive: true, force: true });
  }
}

async function rawBaseline(): Promise<{ perSecond: number; seconds: number }> {
  const queue = `drover.bench.raw.${crypto.randomUUID()}`;
  const pubConn = await amqp.connect(RABBIT, { noDelay: true });
  const pub = await pubConn.createConfirmChannel();
  await pub.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': QUEUE_TYPE } });
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

const raw = await rawBaseline();
const d = await drover();
const raw2 = await rawBaseline();
const rawBest = Math.max(raw.perSecond, raw2.perSecond);
console.log(`N = ${N}, store = ${STORE}, baseline queue type = ${QUEUE_TYPE}, ${os.cpus().length} cores`);
console.log(`drover end-to-end: ${d.perSecond.toFixed(0)} processes/s (${d.seconds.toFixed(2)} s)`);
console.log(
  `raw amqplib baseline: ${raw.perSecond.toFixed(0)} and ${raw2.perSecond.toFixed(0)} msgs/s (before and after; best ${rawBest.toFixed(0)})`,
);
console.log(`ratio drover / raw: ${(d.perSecond / rawBest).toFixed(2)}`);
console.log(`worker peak RSS: ${d.peakRss.map((r) => `${r} MiB`).join(', ')}`);
console.log(
  `CPU seconds during the drover run: workers ${d.cpu.workers.map((c) => c.toFixed(2)).join(' + ')}, ` +
    `RabbitMQ ${d.cpu.broker.toFixed(2)}, submitter/poller ${d.cpu.submitter.toFixed(2)} (wall ${d.seconds.toFixed(2)} s, 2 cores)`,
);
process.exit(0);
