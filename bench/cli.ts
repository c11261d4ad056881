/**
 * CLI start-up benchmark (`npm run bench:cli`, also part of `npm run bench`; not a test).
 *
 * Times, in one run and interleaved round by round (so machine noise hits every command alike):
 * `node -e ''` (the floor: what starting node itself costs), `drover --version`,
 * `drover daemon status` with the daemon not running and running, `drover process list` on a
 * SQLite profile, and a representative set of the commands that go through oclif (`--help`,
 * `profile list`, `config list`, `process show`, `process submit`, `status`). Each command runs
 * BENCH_CLI_RUNS times (default 10); the minimum is the figure (the least disturbed run), printed
 * as a ratio to the node floor of the same rounds. NODE_EXTRA_CA_CERTS is removed from the
 * children's environment: it makes every node start read a CA bundle, which is not drover's cost.
 *
 * The profile is the one the issue measured (issue 12): a SQLite store and RabbitMQ at
 * 127.0.0.1:5672 (`process submit`, `status` and a running daemon use it).
 *
 * Baselines: BENCH_CLI_BASELINE=NAME=DIR[,NAME=DIR...] times the same commands, in the same rounds,
 * with the drover of another checkout (DIR/bin/drover.js, built there, each with a home of its
 * own), and prints how much faster this checkout is than the first one. To compare with the CLI
 * as it was when issue 12 was filed:
 *
 *   git worktree add --detach /tmp/drover-seed 8a1e018 && ln -s "$PWD/node_modules" /tmp/drover-seed/
 *   (cd /tmp/drover-seed && npx tsc -p tsconfig.json)
 *   BENCH_CLI_BASELINE=seed=/tmp/drover-seed npm run bench:cli
 *
 * Without a baseline the issue's own figures stand in (measured on another day, so only a rough
 * comparison): `drover --version` 282 ms, `daemon status` 284 ms, `process list` 423 ms.
 *
 * Targets (issue 12): `daemon status` at most 2.5x the floor, `process list` on SQLite at most 4x,
 * every other command at least 30% faster than before.
 *
 * Options (env): BENCH_CLI_RUNS (default 10), BENCH_CLI_BASELINE.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import amqp from 'amqplib';
import { deleteTopology, topologyFor } from '../src/broker/rabbitmq/index.js';

const RUNS = Math.max(1, Number(process.env.BENCH_CLI_RUNS ?? 10));
const RABBIT = 'amqp://guest:guest@127.0.0.1:5672';
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The issue's figures (min of 10, NODE_EXTRA_CA_CERTS unset), the stand-in without a baseline. */
const ISSUE_MS: Record<string, number> = { version: 282, statusDown: 284, list: 423 };

/** A drover to time: this checkout or a baseline, each with a home (config, store) of its own. */
interface Cli {
  name: string;
  bin: string;
  env: NodeJS.ProcessEnv;
  home: string;
  uuid: string | null;
}

/**
 * One command of the benchmark: its key, what the table calls it, argv after `drover` (`ID` stands
 * for the process each drover submitted at setup, in a store of its own), exit codes.
 */
interface Command {
  key: string;
  name: string;
  argv: string[];
  ok: number[];
}

const baseEnv: NodeJS.ProcessEnv = { ...process.env, DROVER_PROFILE: 'bench' };
delete baseEnv.NODE_EXTRA_CA_CERTS;
delete baseEnv.NODE_OPTIONS;

function makeCli(name: string, dir: string): Cli {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), `drover-bench-cli-${name}-`));
  return { name, bin: path.join(dir, 'bin', 'drover.js'), env: { ...baseEnv, DROVER_HOME: home }, home, uuid: null };
}

const clis: Cli[] = [makeCli('this', REPO)];
for (const spec of (process.env.BENCH_CLI_BASELINE ?? '').split(',').filter(Boolean)) {
  const eq = spec.indexOf('=');
  if (eq <= 0) throw new Error(`BENCH_CLI_BASELINE: expected NAME=DIR, got '${spec}'`);
  clis.push(makeCli(spec.slice(0, eq), path.resolve(spec.slice(eq + 1))));
}
const baselines = clis.slice(1);

/** Runs `drover argv` of `cli` once (output captured); throws when it ends with another code. */
function drover(cli: Cli, argv: string[], ok: number[] = [0]): string {
  const r = spawnSync(process.execPath, [cli.bin, ...argv], { env: cli.env, encoding: 'utf8' });
  if (!ok.includes(r.status ?? -1)) {
    throw new Error(
      `${cli.name}: drover ${argv.join(' ')} exited with ${r.status ?? r.signal}:\n${r.stdout}${r.stderr}`,
    );
  }
  return r.stdout;
}

/** Runs argv under node once with `env`; returns its wall time in ms. */
function time(argv: string[], env: NodeJS.ProcessEnv, ok: number[], what: string): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, argv, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (!ok.includes(r.status ?? -1))
    throw new Error(`${what} exited with ${r.status ?? r.signal}:\n${r.stdout}${r.stderr}`);
  return ms;
}

/** The minimum of each command for each drover (by `${cli}\t${key}`) and of the floor. */
interface Minima {
  floor: number;
  ms: Map<string, number>;
}

/** Runs the floor and every command of every drover RUNS times, round by round; keeps the minima. */
function measure(commands: Command[]): Minima {
  const jobs: Array<{ id: string; run: () => number }> = [
    { id: 'floor', run: () => time(['-e', ''], baseEnv, [0], "node -e ''") },
  ];
  for (const c of commands) {
    for (const cli of clis) {
      const argv = c.argv.map((a) => (a === 'ID' ? String(processIds.get(cli)) : a));
      jobs.push({
        id: `${cli.name}\t${c.key}`,
        run: () => time([cli.bin, ...argv], cli.env, c.ok, `${cli.name}: drover ${argv.join(' ')}`),
      });
    }
  }
  const best = new Map<string, number>();
  for (const j of jobs) j.run(); // warm the file cache
  for (let i = 0; i < RUNS; i++) {
    for (const j of jobs) best.set(j.id, Math.min(best.get(j.id) ?? Infinity, j.run()));
  }
  const floor = best.get('floor')!;
  best.delete('floor');
  return { floor, ms: best };
}

const processIds = new Map<Cli, number>();
const down: Command[] = [
  { key: 'version', name: 'drover --version', argv: ['--version'], ok: [0] },
  { key: 'statusDown', name: 'drover daemon status (not running)', argv: ['daemon', 'status'], ok: [3] },
  { key: 'list', name: 'drover process list (SQLite)', argv: ['process', 'list'], ok: [0] },
  { key: 'help', name: 'drover --help', argv: ['--help'], ok: [0] },
  { key: 'profileList', name: 'drover profile list', argv: ['profile', 'list'], ok: [0] },
  { key: 'configList', name: 'drover config list', argv: ['config', 'list'], ok: [0] },
  { key: 'show', name: 'drover process show ID', argv: ['process', 'show', 'ID'], ok: [0] },
  {
    key: 'submit',
    name: 'drover process submit (RabbitMQ)',
    argv: ['process', 'submit', 'core.arithmetic.add', '-i', 'x=1', '-i', 'y=2'],
    ok: [0],
  },
  { key: 'status', name: 'drover status (SQLite, RabbitMQ)', argv: ['status'], ok: [0] },
];
const up: Command[] = [
  { key: 'statusUp', name: 'drover daemon status (running)', argv: ['daemon', 'status'], ok: [0] },
  { key: 'listUp', name: 'drover process list (SQLite, daemon running)', argv: ['process', 'list'], ok: [0] },
];

const rounds: Array<{ commands: Command[]; m: Minima }> = [];
try {
  for (const cli of clis) {
    // --broker-url: RabbitMQ, in every version of drover (older ones know no --broker).
    drover(cli, ['profile', 'setup', 'bench', '--broker-url', RABBIT]);
    const config = JSON.parse(fs.readFileSync(path.join(cli.home, 'config.json'), 'utf8')) as {
      profiles: Record<string, { uuid: string; broker: { url?: string } }>;
    };
    const p = config.profiles.bench!;
    if (p.broker.url === undefined) throw new Error(`${cli.name}: the bench profile has no RabbitMQ broker`);
    cli.uuid = p.uuid;
    const out = drover(cli, ['process', 'submit', 'core.arithmetic.add', '-i', 'x=1', '-i', 'y=2', '--json']);
    processIds.set(cli, (JSON.parse(out) as { id: number }).id);
  }
  rounds.push({ commands: down, m: measure(down) });

  for (const cli of clis) drover(cli, ['daemon', 'start', '1']);
  try {
    rounds.push({ commands: up, m: measure(up) });
  } finally {
    for (const cli of clis) spawnSync(process.execPath, [cli.bin, 'daemon', 'stop'], { env: cli.env });
  }
} finally {
  const conn = await amqp.connect(RABBIT).catch(() => null);
  if (conn) {
    const ch = await conn.createChannel();
    ch.on('error', () => undefined);
    for (const cli of clis)
      if (cli.uuid !== null) await deleteTopology(ch, topologyFor(cli.uuid)).catch(() => undefined);
    await conn.close().catch(() => undefined);
  }
  for (const cli of clis) fs.rmSync(cli.home, { recursive: true, force: true });
}

const ratioTargets: Record<string, number> = { statusDown: 2.5, statusUp: 2.5, list: 4, listUp: 4 };
console.log(`CLI start-up, ${RUNS} runs each (minimum), ${os.cpus().length} cores, node ${process.version}`);
console.log("NODE_EXTRA_CA_CERTS unset; ratio = minimum / minimum of `node -e ''` in the same rounds");
console.log(
  baselines.length > 0
    ? `baseline: ${baselines.map((b) => `${b.name} (${b.bin})`).join(', ')}, timed in the same rounds`
    : "baseline: the issue's figures (no BENCH_CLI_BASELINE given; measured on another day)",
);
const header = ['command'.padEnd(46), ...clis.map((c) => c.name.padStart(18)), '  vs baseline', '  target'];
console.log(header.join(''));
for (const { commands, m } of rounds) {
  console.log(`${"node -e ''".padEnd(46)}${`${m.floor.toFixed(0)} ms`.padStart(18)}`);
  for (const c of commands) {
    const cell = (cli: Cli): string => {
      const ms = m.ms.get(`${cli.name}\t${c.key}`)!;
      return `${ms.toFixed(0)} ms ${(ms / m.floor).toFixed(2)}x`.padStart(18);
    };
    const mine = m.ms.get(`${clis[0]!.name}\t${c.key}`)!;
    const base = baselines.length > 0 ? m.ms.get(`${baselines[0]!.name}\t${c.key}`) : ISSUE_MS[c.key];
    const faster = base === undefined ? null : 1 - mine / base;
    const vs = faster === null ? '' : `${(faster * 100).toFixed(0)}% faster`;
    const ratioTarget = ratioTargets[c.key];
    const ratio = mine / m.floor;
    const target =
      ratioTarget !== undefined
        ? `<= ${ratioTarget}x: ${ratio <= ratioTarget ? 'met' : 'MISSED'}`
        : faster === null
          ? ''
          : `>= 30% faster: ${faster >= 0.3 ? 'met' : 'MISSED'}`;
    console.log(`${c.name.padEnd(46)}${clis.map(cell).join('')}${vs.padStart(14)}  ${target}`);
  }
}
