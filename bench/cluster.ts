/**
 * Several hosts benchmark (`npm run bench:cluster`, also part of `npm run bench`; not a test):
 * throughput of one profile on the shared PostgreSQL store and RabbitMQ with 1, 2 and 3 daemons,
 * one per test host, in one run (issue 11).
 *
 * The hosts are network namespaces on a bridge with a server namespace running a RabbitMQ node and
 * a PostgreSQL cluster of the benchmark's own (test/helpers/netns.ts, the same test hosts as
 * test/cluster/hosts.test.ts), so it needs root; without it, it says why and exits 0. Every host
 * shares this machine's cores: more daemons add workers and connections, not CPU, so the figures
 * show what the coordination costs and whether anything serializes, not how a real cluster scales.
 *
 * Per configuration: the daemons started (each with BENCH_CLUSTER_WORKERS workers, default 1),
 * 50 processes to warm up, then BENCH_CLUSTER_N (default 3000) trivial `core.arithmetic.add`
 * processes submitted in one go from host1 until all are `finished`; e2e processes/s, how many
 * each host ran, and the ratio to the single daemon. Before and after them, in the same run, raw
 * amqplib: the same number of confirmed persistent messages through a durable queue on the
 * server's node to two consumers (the baseline of bench/throughput.ts, over the bridge).
 */
import path from 'node:path';
import { ProcessClient } from '../src/api/processes.js';
import { Config } from '../src/config/index.js';
import { rawBulk } from './raw.js';
import {
  createTestNet,
  sharedProfileSetup,
  testNetUnavailable,
  type HostProcess,
  type TestNet,
} from '../test/helpers/netns.js';

const N = Number(process.env.BENCH_CLUSTER_N ?? 3000);
const WORKERS = Number(process.env.BENCH_CLUSTER_WORKERS ?? 1);

const f0 = (x: number): string => x.toFixed(0);
const f2 = (x: number): string => x.toFixed(2);

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function main(): Promise<void> {
  const missing = testNetUnavailable();
  if (missing !== null) {
    console.log(`cluster benchmark skipped: the test hosts (network namespaces) need ${missing}`);
    return;
  }
  let net: TestNet | null = null;
  let client: ProcessClient | null = null;
  const running: HostProcess[] = [];
  const stopAll = async (): Promise<void> => {
    for (const d of running.splice(0)) {
      if (d.child.exitCode === null && d.child.signalCode === null) d.child.kill('SIGTERM');
      await Promise.race([d.exited, new Promise((r) => setTimeout(r, 20_000))]);
    }
  };
  try {
    net = await createTestNet(3);
    const [h1] = net.hosts as [TestNet['hosts'][0]];
    const run = async (h: TestNet['hosts'][0], args: string[], input?: string, env?: NodeJS.ProcessEnv) => {
      const r = await h.cli(args, input, env);
      if (r.status !== 0) throw new Error(`${h.name}: drover ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
      return r.stdout;
    };
    await run(h1, sharedProfileSetup(net, 'work'));
    const exported = await run(h1, ['profile', 'export', 'work']);
    for (const h of net.hosts.slice(1)) {
      await run(h, ['profile', 'import', '-'], exported, { DROVER_BROKER_PASSWORD: 'guest' });
      await run(h, ['profile', 'set-default', 'work']);
    }
    client = await ProcessClient.open(Config.load(path.join(h1.home, 'config.json')).getProfile('work'));
    const rawBefore = await rawBulk(net.amqpUrl, N);
    console.log(`raw amqplib bulk through the server namespace's node: ${f0(rawBefore)} msgs/s`);
    const rates: number[] = [];
    let submitted = 0;
    for (const k of [1, 2, 3]) {
      const hosts = net.hosts.slice(0, k);
      for (const h of hosts) running.push(h.spawn(['daemon', 'start', String(WORKERS), '--foreground']));
      for (const [i, d] of running.entries()) {
        await waitUntil(
          () => Promise.resolve(new RegExp(`worker w${WORKERS} \\(pid \\d+\\) is ready`).test(d.output())),
          60_000,
          `the daemon of ${hosts[i]!.name}:\n${d.output()}`,
        );
      }
      const finished = async (total: number): Promise<boolean> => {
        const c = await client!.store.countByState();
        if (c.excepted > 0) throw new Error(`${c.excepted} processes excepted`);
        return c.finished >= total;
      };
      await client.submitMany(
        'core.arithmetic.add',
        Array.from({ length: 50 }, (_, i) => ({ x: i, y: 1 })),
      );
      submitted += 50;
      await waitUntil(() => finished(submitted), 60_000, 'the warm-up processes');
      const t0 = performance.now();
      const ids = await client.submitMany(
        'core.arithmetic.add',
        Array.from({ length: N }, (_, i) => ({ x: i, y: 1 })),
      );
      submitted += N;
      await waitUntil(() => finished(submitted), 600_000, `${N} processes on ${k} daemon(s)`);
      const rate = N / ((performance.now() - t0) / 1000);
      rates.push(rate);
      const byHost = new Map<string, number>();
      for (const id of ids) {
        const p = await client.getProcess(id);
        const host = p.workerId?.split(':')[0] ?? '?';
        byHost.set(host, (byHost.get(host) ?? 0) + 1);
      }
      console.log(
        `${k} daemon(s) × ${WORKERS} worker(s), ${N} processes: ${f0(rate)} processes/s ` +
          `(${f2(rate / rates[0]!)}× one daemon, ${f2(rate / rawBefore)}× raw); ran: ` +
          [...byHost].map(([h, n]) => `${h} ${n}`).join(', '),
      );
      await stopAll();
    }
    const rawAfter = await rawBulk(net.amqpUrl, N);
    console.log(`raw amqplib bulk again: ${f0(rawAfter)} msgs/s`);
  } finally {
    await stopAll();
    await client?.close();
    await net?.destroy();
  }
}

await main();
process.exit(0);
