/**
 * The worker supervisor: forks the daemon's workers, watches them, revives the ones that die,
 * adds and removes them at run time, and drains them on stop.
 *
 * Each worker lives in a numbered *slot* (`w1`, `w2`, ...). A slot outlives its worker processes:
 * when the process dies unexpectedly the slot waits a back-off delay and forks a new one (its
 * `restarts` count goes up). States of a slot (see {@link WorkerState}):
 *
 * - `starting`  forked, no `ready` message yet;
 * - `ready`     taking work;
 * - `draining`  told to stop: `drain` over IPC (or SIGTERM if it never got ready), then SIGKILL
 *               after the grace period plus a margin for releasing what is left;
 * - `restarting` dead, waiting for its back-off (`daemon.worker_restart_backoff`, growing with each
 *               consecutive early death after the first: a worker's first death is replaced at once);
 * - `crash-looping` died within {@link CRASH_LOOP_WINDOW_MS} of its start {@link CRASH_LOOP_DEATHS}
 *               times in a row. It is still revived, at the maximum back-off, and reported with its
 *               last exit, its last `fatal` message and its last output lines, until one of its
 *               processes lives longer than the window.
 *
 * Removing a worker (decrease, restart) detaches its process from the slot and drains it; its
 * processes are released to the other workers, not killed. Every process that ends, whatever the
 * reason, is reported through `onWorkerExit` so the daemon can release its leases at once; before
 * that, the process groups the worker reported (its `core.shell` commands) are SIGKILLed, so no
 * command of a dead worker still runs when its process is started elsewhere.
 *
 * Worker ids are `<host>:<profile uuid prefix>-w<slot>-<random>`: every worker a daemon of this
 * profile ever forked on this host starts with {@link Supervisor.workerIdPrefix}, which is how the
 * daemon finds leases of workers it no longer knows (see daemon.ts).
 *
 * @module
 */
import crypto from 'node:crypto';
import os from 'node:os';
import { fork, type ChildProcess } from 'node:child_process';
import type { Profile } from '../config/index.js';
import type { Logger, LogLevel } from '../logging/index.js';
import {
  ControlError,
  parseWorkerToDaemon,
  type BusHubMessage,
  type BusPeerMessage,
  type DaemonToWorker,
  type WorkerExit,
  type WorkerInfo,
  type WorkerRecord,
  type WorkerState,
} from '../protocol/index.js';
import { backoffDelay, parentPid, processStartIdentity, type BackoffPolicy } from '../util/index.js';
import { ProcSampler, type ProcSample } from './proc-stats.js';

/** Consecutive early deaths after which a slot is reported as crash-looping. */
export const CRASH_LOOP_DEATHS = 5;
/** A death within this many ms of the worker's start counts as early. */
export const CRASH_LOOP_WINDOW_MS = 10_000;
/** Time a draining worker gets beyond its grace period to release what it still holds. */
export const DRAIN_KILL_MARGIN_MS = 10_000;
/** Output lines kept per worker for crash reports. */
export const WORKER_LINES_KEPT = 20;
const MAX_LINE_CHARS = 2000;

/** Environment variables of the service manager that must not leak into workers. */
const MANAGER_ENV = [
  'NOTIFY_SOCKET',
  'WATCHDOG_USEC',
  'WATCHDOG_PID',
  'LISTEN_FDS',
  'LISTEN_PID',
  'LISTEN_FDNAMES',
  'JOURNAL_STREAM',
];

/** Where the supervisor sends its workers' local-bus traffic (local profiles: the daemon's hub). */
export interface SupervisorBusHooks {
  /** A worker process was forked; `send` reaches it over IPC (false once it is gone). */
  spawned(workerId: string, name: string, send: (msg: BusHubMessage) => boolean): void;
  /** A bus message from a worker. */
  message(workerId: string, msg: BusPeerMessage): void;
  /** A worker process ended (before `onWorkerExit`). */
  exited(workerId: string): void;
}

/** Options of {@link Supervisor}. */
export interface SupervisorOptions {
  /** The local bus hub, for local profiles. */
  bus?: SupervisorBusHooks;
  profile: Profile;
  /** Absolute path of the worker entry module. */
  workerModule: string;
  logger: Logger;
  /** Where worker output goes, as `[w1 PID] line` (default: `logger`). */
  outputLogger?: Logger;
  /** Environment the workers get (plus DROVER_PROFILE and DROVER_WORKER_ID). */
  env?: NodeJS.ProcessEnv;
  /** Called when a worker process ended, however it ended. */
  onWorkerExit?: (workerId: string, exit: WorkerExit, expected: boolean) => void;
  /** Called when a worker reported ready. */
  onWorkerReady?: (workerId: string) => void;
  /** Called whenever something shown in status changed. */
  onChange?: () => void;
  /** Overrides for tests. */
  crashLoopDeaths?: number;
  crashLoopWindowMs?: number;
  drainKillMarginMs?: number;
}

class Instance {
  ready = false;
  draining = false;
  exited = false;
  running = 0;
  slots: number | null = null;
  sample: ProcSample = { rss: null, cpuPercent: null };
  sampledAt = 0;
  readonly lines: string[] = [];
  killTimer: NodeJS.Timeout | null = null;
  readonly exit: Promise<WorkerExit>;
  resolveExit!: (e: WorkerExit) => void;
  readonly startIdentity: string | null;
  /** Process groups the worker started and reported, checked to be its children: pgid → leader start identity. */
  readonly groups = new Map<number, string>();

  constructor(
    readonly slot: Slot,
    readonly child: ChildProcess,
    readonly workerId: string,
    readonly startedAt: number,
  ) {
    this.exit = new Promise((resolve) => (this.resolveExit = resolve));
    this.startIdentity = child.pid === undefined ? null : processStartIdentity(child.pid);
  }

  get pid(): number | null {
    return this.child.pid ?? null;
  }

  addLine(line: string): void {
    this.lines.push(line.length > MAX_LINE_CHARS ? `${line.slice(0, MAX_LINE_CHARS)}...` : line);
    if (this.lines.length > WORKER_LINES_KEPT) this.lines.shift();
  }
}

class Slot {
  current: Instance | null = null;
  restarts = 0;
  earlyDeaths = 0;
  crashLooping = false;
  lastExit: WorkerExit | null = null;
  lastError: string | null = null;
  /** The process whose output is reported as the slot's last lines (the last one that died). */
  lastDead: Instance | null = null;
  reviveTimer: NodeJS.Timeout | null = null;
  removed = false;

  constructor(readonly index: number) {}

  get name(): string {
    return `w${this.index}`;
  }
}

// Lines written by a worker's own logger: `2026-01-01T00:00:00.000Z INFO  [scope] message`.
const WORKER_LINE_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z (DEBUG|INFO|WARN|ERROR)\s+(.*)$/;

/** Forks and supervises the workers of one daemon. */
export class Supervisor {
  private readonly slots: Slot[] = [];
  private readonly retiring = new Set<Instance>();
  private nextIndex = 1;
  private stopping = false;
  private readonly sampler = new ProcSampler();
  private readonly backoff: BackoffPolicy;
  private readonly crashLoopDeaths: number;
  private readonly crashLoopWindowMs: number;
  private readonly drainKillMarginMs: number;
  /** The start of the id of every worker a daemon of this profile forks on this host. */
  readonly workerIdPrefix: string;
  private sweepCursor = 0;

  constructor(private readonly opts: SupervisorOptions) {
    this.backoff = opts.profile.options['daemon.worker_restart_backoff'];
    this.crashLoopDeaths = opts.crashLoopDeaths ?? CRASH_LOOP_DEATHS;
    this.crashLoopWindowMs = opts.crashLoopWindowMs ?? CRASH_LOOP_WINDOW_MS;
    this.drainKillMarginMs = opts.drainKillMarginMs ?? DRAIN_KILL_MARGIN_MS;
    this.workerIdPrefix = `${os.hostname()}:${opts.profile.uuid.replace(/-/g, '').slice(0, 8)}-w`;
  }

  /** Number of workers kept (draining ones excluded). */
  get numberOfWorkers(): number {
    return this.slots.length;
  }

  /** Processes running in all workers, draining ones included. */
  get runningProcesses(): number {
    let n = 0;
    for (const i of this.instances()) n += i.running;
    return n;
  }

  /** Number of slots whose worker is ready. */
  get readyWorkers(): number {
    return this.slots.filter((s) => s.current?.ready === true && !s.current.draining).length;
  }

  /** Names of crash-looping slots. */
  get crashLooping(): string[] {
    return this.slots.filter((s) => s.crashLooping).map((s) => s.name);
  }

  /** True when every slot's worker sent `ready` at least once or the slot is crash-looping. */
  get settled(): boolean {
    return this.slots.every((s) => s.crashLooping || s.current?.ready === true);
  }

  /** Forks `n` workers. */
  start(n: number): void {
    this.increase(n);
  }

  /** Adds `n` workers; returns the new number of workers. */
  increase(n: number): number {
    this.refuseWhenStopping();
    for (let k = 0; k < n; k++) {
      const slot = new Slot(this.nextIndex++);
      this.slots.push(slot);
      this.spawn(slot);
    }
    this.changed();
    return this.slots.length;
  }

  /**
   * Removes the `n` most recently added workers: each is drained (its running processes finish
   * within `graceSeconds` or are released to the other workers). Returns the new number of workers.
   */
  decrease(n: number, graceSeconds: number): number {
    this.refuseWhenStopping();
    if (n > this.slots.length) {
      throw new ControlError(
        'PARAMS_INVALID',
        `cannot remove ${n} worker${n === 1 ? '' : 's'}: the daemon has ${this.slots.length}`,
      );
    }
    const removed = this.slots.splice(this.slots.length - n, n);
    for (const slot of removed) {
      slot.removed = true;
      this.clearRevive(slot);
      const inst = slot.current;
      if (inst) {
        this.opts.logger.info(`removing worker ${slot.name} (pid ${inst.pid}): draining it`);
        this.retire(inst, graceSeconds);
      }
    }
    this.changed();
    return this.slots.length;
  }

  /**
   * Replaces every worker by a new process: the new ones are forked at once and the old ones
   * drained, so work moves over without a gap. Returns how many were restarted.
   */
  restartAll(graceSeconds: number): number {
    this.refuseWhenStopping();
    let restarted = 0;
    for (const slot of this.slots) {
      this.clearRevive(slot);
      slot.crashLooping = false;
      slot.earlyDeaths = 0;
      const old = slot.current;
      if (old) this.retire(old, graceSeconds);
      this.spawn(slot);
      restarted++;
    }
    this.changed();
    return restarted;
  }

  /** Drains every worker within `graceSeconds` (then kills it); resolves when all have exited. */
  async stopAll(graceSeconds: number): Promise<void> {
    this.stopping = true;
    for (const slot of this.slots) this.clearRevive(slot);
    const exits = this.instances().map((i) => this.drain(i, graceSeconds));
    this.changed();
    await Promise.all(exits);
  }

  /** Kills every worker at once (a second SIGINT while stopping). */
  killAll(): void {
    for (const i of this.instances()) this.signal(i, 'SIGKILL');
  }

  /**
   * Asks one ready worker to re-publish pending dispatches (after another worker's leases were
   * released). Returns false when no worker is ready; a worker sweeps at its start anyway.
   */
  sweep(): boolean {
    const ready = this.slots.map((s) => s.current).filter((i): i is Instance => !!i && i.ready && !i.draining);
    if (ready.length === 0) return false;
    const target = ready[this.sweepCursor++ % ready.length]!;
    return this.send(target, { kind: 'sweep' });
  }

  /** Periodic work: resource sampling and crash-loop recovery. */
  tick(): void {
    const now = Date.now();
    for (const inst of this.instances()) this.sample(inst);
    for (const slot of this.slots) {
      const inst = slot.current;
      if (inst && !inst.exited && now - inst.startedAt >= this.crashLoopWindowMs && slot.earlyDeaths > 0) {
        if (slot.crashLooping) {
          this.opts.logger.info(`worker ${slot.name} (pid ${inst.pid}) has stayed up; no longer crash-looping`);
          this.changed();
        }
        slot.earlyDeaths = 0;
        slot.crashLooping = false;
      }
    }
  }

  /** Ids of the worker processes that have not exited (draining ones included). */
  liveWorkerIds(): string[] {
    return this.instances()
      .filter((i) => !i.exited)
      .map((i) => i.workerId);
  }

  /** Live worker processes with their store identities (for the daemon's workers file). */
  records(): WorkerRecord[] {
    return this.instances()
      .filter((i) => i.pid !== null && i.startIdentity !== null && !i.exited)
      .map((i) => ({ workerId: i.workerId, pid: i.pid!, start: i.startIdentity! }));
  }

  /** What status shows about each worker: the slots in order, then the draining leftovers. */
  info(): WorkerInfo[] {
    const out: WorkerInfo[] = [];
    for (const slot of [...this.slots].sort((a, b) => a.index - b.index)) {
      out.push(this.describe(slot, slot.current, this.slotState(slot)));
    }
    for (const inst of this.retiring) out.push(this.describe(inst.slot, inst, 'draining'));
    return out;
  }

  private slotState(slot: Slot): WorkerState {
    if (slot.crashLooping) return 'crash-looping';
    const inst = slot.current;
    if (!inst) return 'restarting';
    if (inst.draining) return 'draining';
    return inst.ready ? 'ready' : 'starting';
  }

  private sample(inst: Instance): void {
    if (inst.pid === null || inst.exited) return;
    inst.sample = this.sampler.sample(inst.pid);
    inst.sampledAt = Date.now();
  }

  private describe(slot: Slot, inst: Instance | null, state: WorkerState): WorkerInfo {
    // A worker younger than one tick has no sample yet: take one now (two small /proc reads).
    if (inst && Date.now() - inst.sampledAt > 1500) this.sample(inst);
    const lastLines = slot.lastDead ? [...slot.lastDead.lines] : [];
    return {
      id: slot.name,
      workerId: inst?.workerId ?? null,
      pid: inst?.pid ?? null,
      state,
      startedAt: inst?.startedAt ?? null,
      restarts: slot.restarts,
      memoryRss: inst?.sample.rss ?? null,
      cpuPercent: inst?.sample.cpuPercent ?? null,
      running: inst?.running ?? 0,
      slots: inst?.slots ?? null,
      lastExit: slot.lastExit,
      lastError: slot.lastError,
      lastLines,
    };
  }

  private instances(): Instance[] {
    const out: Instance[] = [];
    for (const s of this.slots) if (s.current) out.push(s.current);
    for (const i of this.retiring) out.push(i);
    return out;
  }

  private refuseWhenStopping(): void {
    if (this.stopping) throw new ControlError('DAEMON_STOPPING', 'the daemon is stopping');
  }

  private changed(): void {
    this.opts.onChange?.();
  }

  private clearRevive(slot: Slot): void {
    if (slot.reviveTimer) clearTimeout(slot.reviveTimer);
    slot.reviveTimer = null;
  }

  private retire(inst: Instance, graceSeconds: number): void {
    if (inst.slot.current === inst) inst.slot.current = null;
    if (!inst.exited) {
      this.retiring.add(inst);
      void this.drain(inst, graceSeconds);
    }
  }

  private drain(inst: Instance, graceSeconds: number): Promise<WorkerExit> {
    if (inst.exited || inst.draining) return inst.exit;
    inst.draining = true;
    // A worker that never said ready may not listen to IPC yet, and runs nothing: SIGTERM is enough.
    const told = inst.ready && this.send(inst, { kind: 'drain', graceSeconds });
    if (!told) this.signal(inst, 'SIGTERM');
    inst.killTimer = setTimeout(
      () => {
        if (inst.exited) return;
        this.opts.logger.warn(
          `worker ${inst.slot.name} (pid ${inst.pid}) did not exit within ${graceSeconds}s of grace; killing it`,
        );
        this.signal(inst, 'SIGKILL');
      },
      graceSeconds * 1000 + this.drainKillMarginMs,
    );
    this.changed();
    return inst.exit;
  }

  private send(inst: Instance, msg: DaemonToWorker): boolean {
    if (inst.exited || !inst.child.connected) return false;
    try {
      inst.child.send(msg, (err) => {
        if (err) this.opts.logger.debug(`IPC to worker ${inst.slot.name} failed: ${err.message}`);
      });
      return true;
    } catch {
      return false;
    }
  }

  private signal(inst: Instance, sig: NodeJS.Signals): void {
    if (inst.exited) return;
    try {
      inst.child.kill(sig);
    } catch {
      // Already gone; 'exit' follows.
    }
  }

  private spawn(slot: Slot): void {
    const log = this.opts.logger;
    // workerIdPrefix ends with 'w': the slot's name completes it.
    const workerId = `${this.workerIdPrefix}${slot.name.slice(1)}-${crypto.randomBytes(4).toString('hex')}`;
    const env: NodeJS.ProcessEnv = { ...(this.opts.env ?? process.env) };
    for (const k of MANAGER_ENV) delete env[k];
    env.DROVER_PROFILE = this.opts.profile.name;
    env.DROVER_WORKER_ID = workerId;
    let child: ChildProcess;
    try {
      child = fork(this.opts.workerModule, [], {
        env,
        // Own process group: a Ctrl-C in the daemon's terminal reaches the daemon only, which drains them.
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
        serialization: 'json',
        execArgv: process.execArgv.filter((a) => !a.startsWith('--inspect')),
      });
    } catch (err) {
      log.error(`cannot fork worker ${slot.name}: ${(err as Error).message}`);
      slot.lastError = `fork failed: ${(err as Error).message}`;
      this.afterDeath(slot, { code: null, signal: null, at: Date.now(), uptimeMs: 0 });
      return;
    }
    const inst = new Instance(slot, child, workerId, Date.now());
    slot.current = inst;
    log.info(`started worker ${slot.name} (pid ${inst.pid ?? '?'}, id ${workerId})`);
    this.opts.bus?.spawned(workerId, `worker ${slot.name} (pid ${inst.pid ?? '?'})`, (m) =>
      this.send(inst, { kind: 'bus', message: m }),
    );
    const wlog = (this.opts.outputLogger ?? log).child(`${slot.name} ${inst.pid ?? '?'}`);
    this.pipeLines(inst, child.stdout, wlog, 'info');
    this.pipeLines(inst, child.stderr, wlog, 'warn');
    child.on('message', (raw: unknown) => this.onMessage(inst, raw));
    child.on('error', (err) => {
      log.warn(`worker ${slot.name} (pid ${inst.pid ?? '?'}): ${err.message}`);
      // A failed spawn emits 'error' and may never emit 'exit'.
      if (inst.pid === null) this.onExit(inst, null, null);
    });
    child.on('exit', (code, signal) => this.onExit(inst, code, signal));
    this.changed();
  }

  private pipeLines(inst: Instance, stream: NodeJS.ReadableStream | null, wlog: Logger, defaultLevel: LogLevel): void {
    if (!stream) return;
    let partial = '';
    const emit = (line: string): void => {
      if (line === '') return;
      const m = WORKER_LINE_RE.exec(line);
      const level = m ? (m[1]!.toLowerCase() as LogLevel) : defaultLevel;
      const text = m ? m[2]! : line;
      inst.addLine(text);
      wlog[level](text.length > MAX_LINE_CHARS ? `${text.slice(0, MAX_LINE_CHARS)}...` : text);
    };
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      partial += chunk;
      const parts = partial.split('\n');
      partial = parts.pop() ?? '';
      if (partial.length > 64 * 1024) {
        parts.push(partial);
        partial = '';
      }
      for (const p of parts) emit(p.replace(/\r$/, ''));
    });
    stream.on('end', () => {
      if (partial !== '') emit(partial);
      partial = '';
    });
    stream.on('error', () => undefined);
  }

  private onMessage(inst: Instance, raw: unknown): void {
    const log = this.opts.logger;
    let msg;
    try {
      msg = parseWorkerToDaemon(raw);
    } catch (err) {
      log.warn(`worker ${inst.slot.name} (pid ${inst.pid}) sent an invalid IPC message: ${(err as Error).message}`);
      return;
    }
    if (msg.workerId !== inst.workerId) {
      log.warn(`worker ${inst.slot.name} (pid ${inst.pid}) sent a message for worker id ${msg.workerId}; ignored`);
      return;
    }
    switch (msg.kind) {
      case 'ready':
        if (!inst.ready) {
          inst.ready = true;
          log.info(`worker ${inst.slot.name} (pid ${inst.pid}) is ready`);
          // Workers report stats on change; ask once so status shows its slots from the start.
          this.send(inst, { kind: 'stats?' });
          this.opts.onWorkerReady?.(inst.workerId);
          this.changed();
        }
        break;
      case 'stats': {
        const changed = inst.running !== msg.running || inst.slots !== msg.slots;
        inst.running = Math.max(0, msg.running);
        inst.slots = msg.slots;
        if (changed) this.changed();
        break;
      }
      case 'bus':
        for (const m of msg.messages) this.opts.bus?.message(inst.workerId, m);
        break;
      case 'groups':
        this.trackGroups(inst, msg.pgids);
        break;
      case 'fatal':
        inst.slot.lastError = msg.message;
        log.error(`worker ${inst.slot.name} (pid ${inst.pid}) failed: ${msg.message}`);
        this.changed();
        break;
    }
  }

  /**
   * Records the groups a worker reports. Only a group whose leader is the worker's own child now is
   * taken (a worker cannot make the daemon signal anything else); gone ones are dropped.
   */
  private trackGroups(inst: Instance, pgids: number[]): void {
    const now = new Set(pgids);
    for (const g of inst.groups.keys()) if (!now.has(g)) inst.groups.delete(g);
    for (const g of now) {
      if (inst.groups.has(g) || inst.pid === null || g === inst.pid || g === process.pid) continue;
      const start = processStartIdentity(g);
      if (start !== null && parentPid(g) === inst.pid) inst.groups.set(g, start);
    }
  }

  /**
   * SIGKILLs the process groups a dead worker started. A group whose leader is still the process
   * recorded (same start identity), or is gone while members may remain, is killed; a pid now used
   * by another process is left alone.
   */
  private killGroups(inst: Instance): void {
    let killed = 0;
    for (const [g, start] of inst.groups) {
      const now = processStartIdentity(g);
      if (now !== null && now !== start) continue;
      try {
        process.kill(-g, 'SIGKILL');
        killed++;
      } catch {
        // The group is gone already.
      }
    }
    inst.groups.clear();
    if (killed > 0) {
      this.opts.logger.info(
        `killed ${killed} process group(s) that worker ${inst.slot.name} (pid ${inst.pid}) had started`,
      );
    }
  }

  private onExit(inst: Instance, code: number | null, signal: NodeJS.Signals | null): void {
    if (inst.exited) return;
    inst.exited = true;
    // First of all: nothing the worker started may run on once its leases are released below.
    this.killGroups(inst);
    if (inst.killTimer) clearTimeout(inst.killTimer);
    if (inst.pid !== null) this.sampler.forget(inst.pid);
    const now = Date.now();
    const exit: WorkerExit = { code, signal, at: now, uptimeMs: now - inst.startedAt };
    const how = signal !== null ? `signal ${signal}` : `code ${code}`;
    const slot = inst.slot;
    const expected = inst.draining;
    this.retiring.delete(inst);
    if (expected) {
      const level = code === 0 ? 'info' : 'warn';
      this.opts.logger[level](`worker ${slot.name} (pid ${inst.pid}) exited with ${how} after draining`);
    } else if (!this.stopping) {
      this.opts.logger.warn(
        `worker ${slot.name} (pid ${inst.pid}) exited unexpectedly with ${how} after ${(exit.uptimeMs / 1000).toFixed(1)}s`,
      );
    }
    if (slot.current === inst) {
      slot.current = null;
      slot.lastExit = exit;
      slot.lastDead = inst;
      if (!expected && !this.stopping && !slot.removed) this.afterDeath(slot, exit);
    } else if (!expected) {
      slot.lastExit = exit;
      slot.lastDead = inst;
    }
    inst.resolveExit(exit);
    this.opts.bus?.exited(inst.workerId);
    this.opts.onWorkerExit?.(inst.workerId, exit, expected && code === 0);
    this.changed();
  }

  private afterDeath(slot: Slot, exit: WorkerExit): void {
    if (exit.uptimeMs < this.crashLoopWindowMs) slot.earlyDeaths++;
    else slot.earlyDeaths = 0;
    if (slot.earlyDeaths >= this.crashLoopDeaths && !slot.crashLooping) {
      slot.crashLooping = true;
      const how = exit.signal !== null ? `signal ${exit.signal}` : `code ${exit.code}`;
      const lines = slot.lastDead ? slot.lastDead.lines.slice(-5) : [];
      this.opts.logger.error(
        `worker ${slot.name} is crash-looping: it died within ${this.crashLoopWindowMs / 1000}s of its start ` +
          `${slot.earlyDeaths} times in a row (last: ${how}${slot.lastError ? `; ${slot.lastError}` : ''}); ` +
          `retrying every ${this.backoff.max}s` +
          (lines.length > 0 ? `; last output:\n  ${lines.join('\n  ')}` : ''),
      );
    }
    // A worker that had been up a while, or dies early for the first time, is replaced at once: its
    // processes are waiting. Back-off only for repeated early deaths (the second waits `initial`).
    const delay = slot.crashLooping
      ? Math.round(this.backoff.max * 1000)
      : slot.earlyDeaths <= 1
        ? 0
        : backoffDelay(this.backoff, slot.earlyDeaths - 2);
    this.clearRevive(slot);
    slot.reviveTimer = setTimeout(() => {
      slot.reviveTimer = null;
      if (this.stopping || slot.removed || slot.current) return;
      slot.restarts++;
      this.spawn(slot);
    }, delay);
  }
}
