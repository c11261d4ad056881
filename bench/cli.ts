/**
 * CLI start-up benchmark (`npm run bench:cli`, also part of `npm run bench`; not a test).
 *
 * Times, in one run and interleaved round by round (so machine noise hits every command alike):
 * `node -e ''` (the floor: what starting node itself costs), `drover --version`,
 * `drover daemon status` with the daemon not running and running, and `drover process list` on a
 * SQLite profile. Each command runs BENCH_CLI_RUNS times (default 10); the minimum is the figure
 * (the least disturbed run), printed with the median and as a ratio to the node floor of the
 * same run. NODE_EXTRA_CA_CERTS is removed from the children's environment: it makes every node
 * start read a CA bundle, which is not drover's cost.
 *
 * Targets (issue 12): `daemon status` at most 2.5x the floor, `process list` on SQLite at most 4x.
 *
 * Options (env): BENCH_CLI_RUNS (default 10).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import amqp from 'amqplib';
import { Config } from '../src/config/index.js';
import { deleteTopology, topologyFor } from '../src/broker/rabbitmq/index.js';

const RUNS = Math.max(1, Number(process.env.BENCH_CLI_RUNS ?? 10));
const RABBIT = 'amqp://guest:guest@127.0.0.1:5672';
const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'drover.js');

const home = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-bench-cli-'));
const env: NodeJS.ProcessEnv = { ...process.env, DROVER_HOME: home, DROVER_PROFILE: 'bench' };
delete env.NODE_EXTRA_CA_CERTS;
delete env.NODE_OPTIONS;

/** One command of the benchmark: argv after `node`, and the exit codes it may end with. */
interface Case {
  name: string;
  argv: string[];
  ok: number[];
}

const floor: Case = { name: "node -e ''", argv: ['-e', ''], ok: [0] };
const version: Case = { name: 'drover --version', argv: [CLI, '--version'], ok: [0] };
const statusDown: Case = { name: 'drover daemon status (not running)', argv: [CLI, 'daemon', 'status'], ok: [3] };
const statusUp: Case = { name: 'drover daemon status (running)', argv: [CLI, 'daemon', 'status'], ok: [0] };
const list: Case = { name: 'drover process list (SQLite)', argv: [CLI, 'process', 'list'], ok: [0] };

/** Runs `c` once; returns its wall time in ms. */
function time(c: Case): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, c.argv, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (!c.ok.includes(r.status ?? -1)) {
    throw new Error(`${c.name} exited with ${r.status ?? r.signal}:\n${r.stdout}${r.stderr}`);
  }
  return ms;
}

/** Runs every case RUNS times, round by round; returns the samples per case. */
function measure(cases: Case[]): Map<Case, number[]> {
  const samples = new Map<Case, number[]>(cases.map((c) => [c, []]));
  for (const c of cases) time(c); // warm the file cache
  for (let i = 0; i < RUNS; i++) for (const c of cases) samples.get(c)!.push(time(c));
  return samples;
}

const min = (xs: number[]): number => Math.min(...xs);
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

let uuid: string | null = null;
const rows: Array<{ c: Case; xs: number[]; base: number }> = [];
try {
  const setup = spawnSync(process.execPath, [CLI, 'profile', 'setup', 'bench'], { env, encoding: 'utf8' });
  if (setup.status !== 0) throw new Error(`profile setup failed: ${setup.stderr}`);
  uuid = Config.load(path.join(home, 'config.json')).getProfile('bench').uuid;

  // Daemon not running: the floor, --version, status, process list.
  const down = measure([floor, version, statusDown, list]);
  const base1 = min(down.get(floor)!);
  for (const [c, xs] of down) rows.push({ c, xs, base: base1 });

  const start = spawnSync(process.execPath, [CLI, 'daemon', 'start', '1'], { env, encoding: 'utf8' });
  if (start.status !== 0) throw new Error(`daemon start failed: ${start.stdout}${start.stderr}`);
  try {
    const up = measure([floor, statusUp, { ...list, name: 'drover process list (SQLite, daemon running)' }]);
    const base2 = min(up.get(floor)!);
    for (const [c, xs] of up) if (c !== floor) rows.push({ c, xs, base: base2 });
  } finally {
    spawnSync(process.execPath, [CLI, 'daemon', 'stop'], { env, encoding: 'utf8' });
  }
} finally {
  if (uuid !== null) {
    const conn = await amqp.connect(RABBIT).catch(() => null);
    if (conn) {
      const ch = await conn.createChannel();
      ch.on('error', () => undefined);
      await deleteTopology(ch, topologyFor(uuid)).catch(() => undefined);
      await conn.close().catch(() => undefined);
    }
  }
  fs.rmSync(home, { recursive: true, force: true });
}

const targets: Record<string, number> = {
  [statusDown.name]: 2.5,
  [statusUp.name]: 2.5,
  [list.name]: 4,
};
console.log(`CLI start-up, ${RUNS} runs each (minimum and median), ${os.cpus().length} cores, node ${process.version}`);
console.log("NODE_EXTRA_CA_CERTS unset; ratio = minimum / minimum of `node -e ''` in the same round");
for (const { c, xs, base } of rows) {
  const ratio = min(xs) / base;
  const target = targets[c.name];
  const verdict =
    target === undefined ? '' : ratio <= target ? `  (target <= ${target}x: met)` : `  (target <= ${target}x: MISSED)`;
  console.log(
    `${c.name.padEnd(48)} ${min(xs).toFixed(0).padStart(5)} ms  median ${median(xs).toFixed(0).padStart(5)} ms  ` +
      `${ratio.toFixed(2)}x${verdict}`,
  );
}
