/**
 * The end-to-end benchmark suite (`npm run bench`; not a test). Everything in one run on this
 * machine, next to raw amqplib baselines measured in the same run (the machine is shared and noisy:
 * read the ratios):
 *
 * - raw: N confirmed persistent messages through a durable queue to 2 consumers (before and after
 *   the rest, the better one counts); 2,000 publishes awaited one by one (publish-and-confirm-each);
 *   the AMQP request/reply round trip over 500 sequential requests.
 * - bulk: N trivial `core.arithmetic.add` processes submitted in one go to a daemon with 2 workers,
 *   and again with 1 (the default; on SQLite a second writer of the store costs more than its core
 *   brings: `bulk.<store>.<bus>.w1` next to `bulk.<store>.<bus>`),
 *   until all are `finished`, for each store (SQLite, PostgreSQL) and each bus (local, rabbitmq).
 * - one by one: 2,000 submits awaited one by one with a `ProcessClient`, and (SQLite) with the
 *   top-level `submit()`; each loop opens its connection inside its timing, and SQLite runs the two
 *   loops four times each, alternating which goes first (the best of each counts); then with 1
 *   worker, the `ProcessClient` loop only (`seq.<store>.<bus>.client.w1`).
 * - latency: 500 sequential processes, each submitted and awaited with the library's wait
 *   (`waitForProcesses`), p50/p95/p99, after 1,500 untimed ones; with 2 workers and with 1.
 * - revive: a worker SIGKILLed 5 times; from the kill to the new worker consuming, next to a cold
 *   worker start (fork to consuming) measured in the same daemon.
 * - 100,000 queued: submitted in one go (submit rate), drained (drain rate), worker and daemon RSS
 *   at the start and at their peak.
 *
 * The results go to bench/last-results.json; the previous file is read first and each figure is
 * printed next to the one before. Options (env): BENCH_N (10000), BENCH_SEQ_N (2000),
 * BENCH_LATENCY_N (500), BENCH_QUEUED_N (100000), BENCH_ONLY (comma list of sections: raw, bulk,
 * seq, latency, revive, queued), BENCH_BUSES (local,rabbitmq), BENCH_STORES (sqlite,postgres),
 * BENCH_NODE_ARGS (node options of the daemons and their workers, e.g.
 * `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile them).
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
import { DaemonClient } from '../src/client/index.js';
import { deleteTopology, topologyFor } from '../src/broker/rabbitmq/index.js';
import { rawBulk } from './raw.js';

type Bus = 'local' | 'rabbitmq';
type Store = 'sqlite' | 'postgres';

const N = Number(process.env.BENCH_N ?? 10_000);
const SEQ_N = Number(process.env.BENCH_SEQ_N ?? 2000);
const LATENCY_N = Number(process.env.BENCH_LATENCY_N ?? 500);
/**
 * Rounds run before the latency rounds are timed, for Drover and for the raw round trip alike: a
 * daemon runs for days, so its steady state is what a user meets. Without them the 500 rounds
 * measured mostly V8 still compiling the path (p50 1.1 ms over the first 500 rounds, 0.77 over
 * 5,000); after 500 the local bus still read 0.72-0.78 ms, after 1,500 0.60-0.63 (raw 0.35 and
 * 0.32), side by side.
 */
const LATENCY_WARMUP = Number(process.env.BENCH_LATENCY_WARMUP ?? 1500);
const QUEUED_N = Number(process.env.BENCH_QUEUED_N ?? 100_000);
const ONLY = new Set((process.env.BENCH_ONLY ?? 'raw,bulk,seq,latency,revive,queued').split(','));
const BUSES = (process.env.BENCH_BUSES ?? 'local,rabbitmq').split(',') as Bus[];
const STORES = (process.env.BENCH_STORES ?? 'sqlite,postgres').split(',') as Store[];
/** Node options of the daemons (and so of their workers, which inherit them), e.g. `--cpu-prof`. */
const NODE_ARGS = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
const RABBIT = 'amqp://guest:guest@127.0.0.1:5672';
const PG_ADMIN = 'postgres://postgres@127.0.0.1:5432/test';
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(ROOT, 'bin', 'drover.js');
const RESULTS = path.join(ROOT, 'bench', 'last-results.json');

/** Every figure, by a stable name: what the results file holds. */
const results: Record<string, number> = {};
const previous: Record<string, number> = fs.existsSync(RESULTS)
  ? ((JSON.parse(fs.readFileSync(RESULTS, 'utf8')) as { figures?: Record<string, number> }).figures ?? {})
  : {};

const f2 = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
const f0 = (x: number): string => (Number.isFinite(x) ? x.toFixed(0) : 'n/a');

/** Records a figure and prints it, with the previous run's value when there is one. */
function report(name: string, value: number, text: string): void {
  results[name] = value;
  const before = previous[name];
  console.log(`${text}${before !== undefined ? `   [before: ${before < 100 ? f2(before) : f0(before)}]` : ''}`);
}

function rssMiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : NaN;
  } catch {
    return NaN;
  }
}

/** CPU time (user + system) of a process so far, in ms, from /proc; NaN when it cannot be read. */
function cpuMs(pid: number): number {
  try {
    // The fields after the command name (which may hold spaces, hence the last ')'): utime is the 12th.
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // USER_HZ is 100 on Linux
  } catch {
    return NaN;
  }
}

interface Lat {
  p50: number;
  p95: number;
  p99: number;
}

function latencies(ms: number[]): Lat {
  const s = [...ms].sort((a, b) => a - b);
  const q = (x: number): number => s[Math.min(s.length - 1, Math.floor(x * s.length))]!;
  return { p50: q(0.5), p95: q(0.95), p99: q(0.99) };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** A fresh profile (and, for PostgreSQL, database) with a daemon of `workers` workers. */
async function daemonProfile(
  bus: Bus,
  store: Store,
  workers = 2,
): Promise<{
  profile: Profile;
  client: ProcessClient;
  daemon: DaemonClient;
  daemonPid: number;
  env: NodeJS.ProcessEnv;
  out: () => string;
  stop: () => Promise<void>;
}> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-bench-'));
  let dropDb: (() => Promise<void>) | null = null;
  const config = Config.load(path.join(home, 'config.json'));
  const broker = bus === 'local' ? { broker: 'local' as const } : { brokerUrl: RABBIT };
  if (store === 'postgres') {
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
  const child: ChildProcess = spawn(
    process.execPath,
    [...NODE_ARGS, CLI, 'daemon', 'start', String(workers), '--foreground'],
    {
      env,
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise<void>((resolve, reject) => {
    const t = setInterval(() => {
      if (out.includes('daemon ready')) {
        clearInterval(t);
        resolve();
      }
    }, 10);
    child.on('exit', () => reject(new Error(`daemon exited: ${out}`)));
  });
  const client = await ProcessClient.open(profile, { env });
  return {
    profile,
    client,
    daemon: new DaemonClient(profile, { env }),
    daemonPid: child.pid!,
    env,
    out: () => out,
    stop: async () => {
      await client.close();
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.on('exit', r)));
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

/** Workers of a daemon from its log: slot name, pid. */
function workerPids(out: string): number[] {
  const bySlot = new Map<string, number>();
  for (const m of out.matchAll(/started worker (w\d+) \(pid (\d+)/g)) bySlot.set(m[1]!, Number(m[2]));
  return [...bySlot.values()];
}

/**
 * Until the store counts `total` finished processes. Told by the state events of the client's
 * subscription (which the warm-up's wait made), so the submitter does not poll the store, which at
 * 100 counts a second took about as much CPU as a worker: when as many processes as are missing
 * were seen finishing, or every 250 ms in case events were missed, the store is asked.
 */
async function waitFinished(client: ProcessClient, total: number): Promise<void> {
  let seen = 0;
  let wake: () => void = () => undefined;
  const listening = await client.listen({
    // As waitForProcesses: the ends only, so the daemon does not wake this process for each start.
    terminalOnly: true,
    onState: (m) => {
      if (m.state !== 'finished' && m.state !== 'excepted') return;
      seen++;
      wake();
    },
    onGap: () => wake(),
  });
  try {
    for (;;) {
      const c = await client.store.countByState();
      if (c.finished >= total) return;
      if (c.excepted > 0) throw new Error(`${c.excepted} processes excepted`);
      const target = seen + (total - c.finished);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 250);
        wake = () => {
          if (seen < target) return;
          clearTimeout(timer);
          resolve();
        };
      });
    }
  } finally {
    listening.stop();
  }
}

const add = (n: number, base = 0): Array<{ x: number; y: number }> =>
  Array.from({ length: n }, (_, i) => ({ x: base + i, y: 1 }));

// ---- raw baselines ----

/** Persistent publishes awaited one by one (each confirmed before the next). */
async function rawConfirmEach(): Promise<number> {
  const conn = await amqp.connect(RABBIT, { noDelay: true });
  const ch = await conn.createConfirmChannel();
  const queue = `drover.bench.each.${crypto.randomUUID()}`;
  await ch.assertQueue(queue, { durable: true });
  const t0 = performance.now();
  for (let i = 0; i < SEQ_N; i++) {
    await new Promise<void>((resolve, reject) =>
      ch.sendToQueue(queue, Buffer.from('{"v":1}'), { persistent: true }, (err) => (err ? reject(err) : resolve())),
    );
  }
  const rate = SEQ_N / ((performance.now() - t0) / 1000);
  await ch.deleteQueue(queue);
  await conn.close();
  return rate;
}

async function rawRoundTrip(): Promise<Lat> {
  const conn = await amqp.connect(RABBIT, { noDelay: true });
  const server = await amqp.connect(RABBIT, { noDelay: true });
  const ch = await conn.createChannel();
  const sch = await server.createChannel();
  const q = `drover.bench.rpc.${crypto.randomUUID()}`;
  await sch.assertQueue(q, { durable: false, autoDelete: true });
  await sch.consume(q, (m) => {
    if (!m) return;
    sch.sendToQueue(m.properties.replyTo as string, m.content, { correlationId: m.properties.correlationId });
    sch.ack(m);
  });
  const replies = await ch.assertQueue('', { exclusive: true });
  const waiting = new Map<string, () => void>();
  await ch.consume(replies.queue, (m) => m && waiting.get(m.properties.correlationId as string)?.(), { noAck: true });
  const ms: number[] = [];
  for (let i = -LATENCY_WARMUP; i < LATENCY_N; i++) {
    const id = String(i);
    const s = performance.now();
    await new Promise<void>((resolve) => {
      waiting.set(id, resolve);
      ch.sendToQueue(q, Buffer.from('{}'), { correlationId: id, replyTo: replies.queue });
    });
    waiting.delete(id);
    if (i >= 0) ms.push(performance.now() - s);
  }
  await conn.close();
  await server.close();
  return latencies(ms);
}

// ---- drover sections ----

async function bulk(bus: Bus, store: Store, raw: () => number, workers: 1 | 2): Promise<void> {
  const d = await daemonProfile(bus, store, workers);
  try {
    await waitForProcesses(d.client, await d.client.submitMany('core.arithmetic.add', add(50)));
    // Where the CPU goes (the machine has few cores, so CPU per process bounds the rate).
    const pids = [d.daemonPid, ...workerPids(d.out())];
    const cpu0 = pids.map(cpuMs);
    const self0 = process.cpuUsage();
    const t0 = performance.now();
    await d.client.submitMany('core.arithmetic.add', add(N));
    await waitFinished(d.client, N + 50);
    const rate = N / ((performance.now() - t0) / 1000);
    const self = process.cpuUsage(self0);
    const perK = (ms: number): string => f0((ms * 1000) / N);
    const cpu = pids.map((p, i) => cpuMs(p) - cpu0[i]!);
    report(
      `bulk.${store}.${bus}${workers === 1 ? '.w1' : ''}`,
      rate,
      `bulk ${N}, ${store} ${bus.padEnd(8)}, ${workers} worker${workers === 1 ? ' ' : 's'}: ${f0(rate)} processes/s ` +
        `(${f2(rate / raw())}× the raw bulk before); ` +
        `CPU ms per 1000: daemon ${perK(cpu[0]!)}, workers ${cpu.slice(1).map(perK).join('/')}, ` +
        `submitter ${perK((self.user + self.system) / 1000)}`,
    );
  } finally {
    await d.stop();
  }
}

/**
 * Awaited submits one at a time. With 2 workers both loops; with 1 (the default
 * `daemon.default_workers`) the ProcessClient loop alone: on PostgreSQL one worker took 0.50-0.57x
 * raw confirm-each where two took 0.42-0.46x, side by side (the second worker's claims and ends
 * are transactions of their own, on two cores shared with the submitter, daemon and server).
 */
async function oneByOne(bus: Bus, store: Store, rawEach: number, workers: 1 | 2): Promise<void> {
  const d = await daemonProfile(bus, store, workers);
  try {
    // Each loop opens its connection inside its timing, as a script does: ProcessClient.open, or the
    // top-level submit()'s first call (before, only the top-level loop paid for its open). SQLite
    // runs both loops four times, alternating which goes first, and keeps the best of each: on this
    // shared machine one loop's rate swings by a quarter from minute to minute (a single pair of
    // loops read the top-level function at 0.71-1.03x), while the shared client's own cost per call
    // (withClient) measured 1.5 us against the ~100 us of a submit.
    let done = 0;
    const clientLoop = async (): Promise<number> => {
      const t0 = performance.now();
      const c = await ProcessClient.open(d.profile, { env: d.env });
      for (let i = 0; i < SEQ_N; i++) await c.submit('core.arithmetic.add', { x: i, y: 1 });
      const rate = SEQ_N / ((performance.now() - t0) / 1000);
      await c.close();
      return rate;
    };
    const topLevelLoop = async (): Promise<number> => {
      // The top-level function, as a script calls it (in this process, with the daemon's environment).
      const saved = process.env.DROVER_HOME;
      process.env.DROVER_HOME = d.env.DROVER_HOME;
      const { submit, close } = await import('../src/api/processes.js');
      try {
        const t0 = performance.now();
        for (let i = 0; i < SEQ_N; i++) await submit('core.arithmetic.add', { x: i, y: 1 }, { profile: 'bench' });
        return SEQ_N / ((performance.now() - t0) / 1000);
      } finally {
        await close();
        process.env.DROVER_HOME = saved;
      }
    };
    const loops = store === 'sqlite' && workers === 2 ? ['client', 'top'] : ['client'];
    const rounds = store === 'sqlite' ? 4 : 1;
    let rate = 0;
    let top = 0;
    for (let r = 0; r < rounds; r++) {
      // ABBA: rounds 1 and 2 run the loops in the other order.
      for (const loop of r === 1 || r === 2 ? [...loops].reverse() : loops) {
        if (loop === 'client') rate = Math.max(rate, await clientLoop());
        else top = Math.max(top, await topLevelLoop());
        // A loop's processes run before the next loop: it must not compete with their runs (its
        // own run alongside it, as a script's do).
        await waitFinished(d.client, (done += SEQ_N));
      }
    }
    const w = workers === 1 ? '.w1' : '';
    report(
      `seq.${store}.${bus}.client${w}`,
      rate,
      `one by one, ${store} ${bus.padEnd(8)}, ${workers} worker${workers === 1 ? ' ' : 's'}, ProcessClient: ` +
        `${f0(rate)} submits/s (${f2(rate / rawEach)}× raw confirm-each)`,
    );
    results[`seq.${store}.${bus}.client${w}.ratio`] = rate / rawEach;
    if (loops.includes('top')) {
      report(
        `seq.${store}.${bus}.toplevel`,
        top,
        `one by one, ${store} ${bus.padEnd(8)}, top-level submit(): ${f0(top)} submits/s (${f2(top / rate)}× ProcessClient)`,
      );
    }
  } finally {
    await d.stop();
  }
}

/**
 * With 2 workers, and with 1 (the default): on RabbitMQ, which hands deliveries to its consumers
 * in turn, one worker took p50 1.02-1.04 ms where two took 1.26-1.27 (side by side; each of the
 * two runs every other process, its store's page cache stale from the other's writes). The local
 * hub gives an idle daemon's work to its first least-loaded worker, so there it made no difference.
 */
async function latency(bus: Bus, rtt: Lat, workers: 1 | 2): Promise<void> {
  const d = await daemonProfile(bus, 'sqlite', workers);
  try {
    await waitForProcesses(d.client, await d.client.submitMany('core.arithmetic.add', add(50)));
    for (let i = 0; i < LATENCY_WARMUP; i++) {
      await waitForProcesses(d.client, [await d.client.submit('core.arithmetic.add', { x: i, y: 1 })]);
    }
    const pids = [d.daemonPid, ...workerPids(d.out())];
    const cpu0 = pids.map(cpuMs);
    const self0 = process.cpuUsage();
    const ms: number[] = [];
    for (let i = 0; i < LATENCY_N; i++) {
      const s = performance.now();
      const id = await d.client.submit('core.arithmetic.add', { x: i, y: 1 });
      await waitForProcesses(d.client, [id]);
      ms.push(performance.now() - s);
    }
    // CPU per process and round: on two cores a round's hops run one after another, so these add up
    // to most of the p50 (USER_HZ ticks: read over 500 rounds, not one).
    const self = process.cpuUsage(self0);
    const perRound = (msCpu: number): string => f0((msCpu * 1000) / LATENCY_N);
    const cpu = pids.map((p, i) => cpuMs(p) - cpu0[i]!);
    const l = latencies(ms);
    const key = `latency.${bus}${workers === 1 ? '.w1' : ''}`;
    report(
      `${key}.p50`,
      l.p50,
      `latency, sqlite ${bus.padEnd(8)}, ${workers} worker${workers === 1 ? ' ' : 's'}: p50 ${f2(l.p50)} ms (${f2(l.p50 / rtt.p50)}× raw round trip), p95 ${f2(l.p95)}, p99 ${f2(l.p99)} ms; ` +
        `CPU µs per round: client ${perRound((self.user + self.system) / 1000)}, daemon ${perRound(cpu[0]!)}, ` +
        `workers ${cpu.slice(1).map(perRound).join('/')}`,
    );
    results[`${key}.p95`] = l.p95;
    results[`${key}.p99`] = l.p99;
    results[`${key}.ratio`] = l.p50 / rtt.p50;
  } finally {
    await d.stop();
  }
}

async function revive(bus: Bus): Promise<void> {
  // Five healthy workers, each SIGKILLed once: the first death of a worker is what a user meets.
  const d = await daemonProfile(bus, 'sqlite', 5);
  try {
    const ready = async (n: number): Promise<Array<{ id: string; pid: number }>> => {
      for (;;) {
        const ws = await d.daemon.getWorkerInfo();
        if (ws.length === n && ws.every((w) => w.state === 'ready' && w.pid !== null)) {
          return ws.map((w) => ({ id: w.id, pid: w.pid! }));
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    // A cold start: the worker added by `incr`, from the request to the worker consuming.
    const cold: number[] = [];
    for (let i = 0; i < 3; i++) {
      await ready(5);
      const t0 = performance.now();
      await d.daemon.increaseWorkers(1);
      await ready(6);
      cold.push(performance.now() - t0);
      await d.daemon.decreaseWorkers(1);
      for (;;) {
        if ((await d.daemon.getWorkerInfo()).length === 5) break;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    const kills: number[] = [];
    for (const w of await ready(5)) {
      const t0 = performance.now();
      process.kill(w.pid, 'SIGKILL');
      for (;;) {
        const n = (await d.daemon.getWorkerInfo()).find((x) => x.id === w.id);
        if (n && n.pid !== null && n.pid !== w.pid && n.state === 'ready') break;
        await new Promise((r) => setTimeout(r, 5));
      }
      kills.push(performance.now() - t0);
    }
    const c = median(cold);
    const k = median(kills);
    report(
      `revive.${bus}.median`,
      k,
      `revive, ${bus.padEnd(8)}: kill -> new worker consuming, median of 5 ${f0(k)} ms (${kills.map(f0).join(', ')}); ` +
        `cold worker start median ${f0(c)} ms; difference ${f0(k - c)} ms`,
    );
    results[`revive.${bus}.cold`] = c;
  } finally {
    await d.stop();
  }
}

async function queued(bus: Bus): Promise<void> {
  const d = await daemonProfile(bus, 'sqlite');
  try {
    const pids = workerPids(d.out());
    const at = (): string =>
      `daemon ${rssMiB(d.daemonPid, 'VmRSS')} MiB, workers ${pids.map((p) => rssMiB(p, 'VmRSS')).join('/')} MiB`;
    const startRss = at();
    const rss0 = [d.daemonPid, ...pids].map((p) => rssMiB(p, 'VmRSS'));
    const samples: number[][] = [];
    const sampler = setInterval(() => samples.push([d.daemonPid, ...pids].map((p) => rssMiB(p, 'VmRSS'))), 250);
    // Submitted in batches of 10,000 (each one transaction and one publish), as fast as they go.
    const t0 = performance.now();
    for (let i = 0; i < QUEUED_N; i += 10_000) {
      await d.client.submitMany('core.arithmetic.add', add(Math.min(10_000, QUEUED_N - i), i));
    }
    const submitted = performance.now();
    await waitFinished(d.client, QUEUED_N);
    clearInterval(sampler);
    const drained = performance.now();
    const peak = [d.daemonPid, ...pids].map((p) => rssMiB(p, 'VmHWM'));
    const submitRate = QUEUED_N / ((submitted - t0) / 1000);
    const drainRate = QUEUED_N / ((drained - t0) / 1000);
    report(`queued.${bus}.submit`, submitRate, `${QUEUED_N} queued, ${bus.padEnd(8)}: submitted ${f0(submitRate)}/s`);
    report(
      `queued.${bus}.drain`,
      drainRate,
      `${QUEUED_N} queued, ${bus.padEnd(8)}: all finished at ${f0(drainRate)}/s`,
    );
    // RSS over the run: first and last thirds of the samples, to see whether it grows.
    const third = Math.max(1, Math.floor(samples.length / 3));
    const mean = (rows: number[][], i: number): number => rows.reduce((a, r) => a + r[i]!, 0) / rows.length;
    const early = samples.slice(0, third);
    const late = samples.slice(-third);
    const names = ['daemon', ...pids.map((_, i) => `w${i + 1}`)];
    console.log(
      `${QUEUED_N} queued, ${bus.padEnd(8)}: RSS at start ${startRss}; peak ${peak.map((p, i) => `${names[i]} ${p}`).join(', ')} MiB; ` +
        `mean RSS in the first/last third of the run ${names.map((n, i) => `${n} ${f0(mean(early, i))}/${f0(mean(late, i))}`).join(', ')} MiB`,
    );
    results[`queued.${bus}.daemon.peak`] = peak[0]!;
    results[`queued.${bus}.daemon.start`] = rss0[0]!;
    for (let i = 1; i < peak.length; i++) {
      results[`queued.${bus}.w${i}.peak`] = peak[i]!;
      results[`queued.${bus}.w${i}.start`] = rss0[i]!;
    }
  } finally {
    await d.stop();
  }
}

// ---- the run ----

console.log(
  `drover benchmark suite: ${os.cpus().length} cores, node ${process.version}, N=${N}, one-by-one ${SEQ_N}, ` +
    `latency ${LATENCY_N}, queued ${QUEUED_N}`,
);
const rawRuns: number[] = [];
const rawBest = (): number => Math.max(...rawRuns);
if (ONLY.has('raw') || ONLY.has('bulk')) rawRuns.push(await rawBulk(RABBIT, N));
const rawEach = ONLY.has('raw') || ONLY.has('seq') ? await rawConfirmEach() : NaN;
const rtt = ONLY.has('raw') || ONLY.has('latency') ? await rawRoundTrip() : { p50: NaN, p95: NaN, p99: NaN };
if (ONLY.has('bulk')) {
  for (const store of STORES)
    for (const bus of BUSES) for (const w of [2, 1] as const) await bulk(bus, store, rawBest, w);
}
if (ONLY.has('seq')) {
  for (const store of STORES)
    for (const bus of BUSES) for (const w of [2, 1] as const) await oneByOne(bus, store, rawEach, w);
}
if (ONLY.has('latency')) for (const bus of BUSES) for (const w of [2, 1] as const) await latency(bus, rtt, w);
if (ONLY.has('revive')) for (const bus of BUSES) await revive(bus);
if (ONLY.has('queued')) for (const bus of BUSES) await queued(bus);
if (ONLY.has('raw') || ONLY.has('bulk')) rawRuns.push(await rawBulk(RABBIT, N));
if (rawRuns.length > 0) {
  report(
    'raw.bulk',
    rawBest(),
    `raw amqplib bulk: ${rawRuns.map(f0).join(' and ')} msgs/s (before and after; the best counts)`,
  );
}
for (const [k, v] of Object.entries(results)) {
  if (/^bulk\.[a-z]+\.[a-z]+(\.w1)?$/.test(k)) {
    results[`${k}.ratio`] = v / rawBest();
    console.log(`${k}: ${f2(v / rawBest())}× the best raw amqplib bulk of this run`);
  }
}
if (results['bulk.sqlite.local'] && results['bulk.sqlite.rabbitmq']) {
  console.log(
    `local / rabbitmq bulk on SQLite: ${f2(results['bulk.sqlite.local'] / results['bulk.sqlite.rabbitmq'])}×`,
  );
}
if (Number.isFinite(rawEach)) report('raw.confirmEach', rawEach, `raw publish-and-confirm-each: ${f0(rawEach)}/s`);
if (Number.isFinite(rtt.p50)) {
  report('raw.rtt.p50', rtt.p50, `raw AMQP request/reply: p50 ${f2(rtt.p50)} ms, p95 ${f2(rtt.p95)} ms`);
}
fs.writeFileSync(
  RESULTS,
  JSON.stringify(
    { at: new Date().toISOString(), cores: os.cpus().length, node: process.version, figures: results },
    null,
    2,
  ) + '\n',
);
console.log(`results written to ${path.relative(ROOT, RESULTS)}`);
process.exit(0);
