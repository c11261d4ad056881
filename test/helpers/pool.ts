/**
 * The workers of a test, on either message bus, behind one interface, so that a guarantee test is
 * written once and run on both adapters (parametrized, not copied):
 * - `rabbitmq`: `drover daemon worker` processes in the foreground, each its own OS process taking
 *   tasks from RabbitMQ (a dead one's processes come back when its lease expires);
 * - `local`: a daemon (`drover daemon start N --foreground`), which is the hub of the local bus and
 *   forks the workers (a dead one is revived and its leases released by the daemon).
 */
import fs from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { spawnCli, waitUntil } from './env.js';
import { startWorker, stopWorkers, type TestProfile, type WorkerProc } from './profile.js';

/** The message buses guarantee tests run on. */
export const BUSES = ['rabbitmq', 'local'] as const;
/** A message bus kind. */
export type Bus = (typeof BUSES)[number];

/** One worker process of a pool. */
export interface PoolWorker {
  readonly pid: number;
  /** Its lease owner id in the store. */
  readonly workerId: string;
}

/** The workers of a test. */
export interface Pool {
  readonly bus: Bus;
  /** The live workers (as far as the pool knows). */
  workers(): Promise<PoolWorker[]>;
  /** Everything the workers (local: the daemon and its workers) printed so far. */
  output(): string;
  /**
   * SIGKILLs one worker (one of this pool's, checked) and waits until it is gone. Then, as a
   * supervisor would: rabbitmq starts a new worker, local lets the daemon revive it; resolves
   * once the replacement consumes.
   */
  killWorker(w: PoolWorker): Promise<void>;
  /** Stops everything gracefully (then SIGKILL after a while). */
  stop(): Promise<void>;
}

function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const st = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return st !== 'Z' && st !== 'X';
  } catch {
    return false;
  }
}

class ForegroundPool implements Pool {
  readonly bus = 'rabbitmq' as const;
  constructor(
    private readonly tp: TestProfile,
    private procs: WorkerProc[],
  ) {}

  async workers(): Promise<PoolWorker[]> {
    return this.procs
      .filter((w) => w.child.exitCode === null && w.child.signalCode === null)
      .map((w) => ({ pid: w.child.pid!, workerId: /worker (\S+) consuming/.exec(w.output())![1]! }));
  }

  output(): string {
    return this.procs.map((w) => w.output()).join('');
  }

  async killWorker(w: PoolWorker): Promise<void> {
    const proc = this.procs.find((p) => p.child.pid === w.pid);
    if (!proc) throw new Error(`pid ${w.pid} is not a worker of this pool`);
    proc.child.kill('SIGKILL');
    await proc.exited;
    this.procs.push(await startWorker(this.tp));
  }

  stop(): Promise<void> {
    return stopWorkers(this.procs);
  }
}

const STARTED_RE = /started worker (w\d+) \(pid (\d+), id (\S+)\)/g;

class DaemonPool implements Pool {
  readonly bus = 'local' as const;
  private out = '';
  private readonly exited: Promise<void>;

  constructor(private readonly daemon: ChildProcess) {
    daemon.stdout!.on('data', (d: Buffer) => (this.out += d.toString()));
    daemon.stderr!.on('data', (d: Buffer) => (this.out += d.toString()));
    this.exited = new Promise((resolve) => daemon.on('exit', () => resolve()));
  }

  async ready(n: number): Promise<this> {
    await waitUntil(
      async () => /daemon ready/.test(this.out) && (await this.workers()).length === n,
      30_000,
      `the daemon and its ${n} worker(s) to be ready`,
    );
    return this;
  }

  /** Workers started by the daemon that are alive and reported ready. */
  async workers(): Promise<PoolWorker[]> {
    const bySlot = new Map<string, PoolWorker>();
    for (const m of this.out.matchAll(STARTED_RE)) bySlot.set(m[1]!, { pid: Number(m[2]), workerId: m[3]! });
    return [...bySlot.entries()]
      .filter(([slot, w]) => alive(w.pid) && this.out.includes(`worker ${slot} (pid ${w.pid}) is ready`))
      .map(([, w]) => w);
  }

  output(): string {
    return this.out;
  }

  async killWorker(w: PoolWorker): Promise<void> {
    const mine = [...this.out.matchAll(STARTED_RE)].some((m) => Number(m[2]) === w.pid && m[3] === w.workerId);
    if (!mine || w.pid <= 1) throw new Error(`pid ${w.pid} is not a worker of this daemon`);
    const before = (await this.workers()).length;
    process.kill(w.pid, 'SIGKILL');
    await waitUntil(() => !alive(w.pid), 10_000, `worker ${w.pid} to die`);
    await waitUntil(async () => (await this.workers()).length === before, 30_000, 'the daemon to revive the worker');
  }

  async stop(): Promise<void> {
    if (this.daemon.exitCode !== null || this.daemon.signalCode !== null) return;
    this.daemon.kill('SIGTERM');
    const t = setTimeout(() => this.daemon.kill('SIGKILL'), 30_000);
    await this.exited;
    clearTimeout(t);
  }
}

/** Starts `n` workers on the test profile's bus and waits until they consume. */
export async function startPool(tp: TestProfile, n = 1, extraEnv: NodeJS.ProcessEnv = {}): Promise<Pool> {
  if (tp.profile.broker.kind === 'rabbitmq') {
    const procs = await Promise.all(Array.from({ length: n }, () => startWorker(tp, extraEnv)));
    return new ForegroundPool(tp, procs);
  }
  const daemon = spawnCli(['daemon', 'start', String(n), '--foreground'], { ...tp.env, ...extraEnv });
  return new DaemonPool(daemon).ready(n);
}
