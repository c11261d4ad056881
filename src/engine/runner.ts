/**
 * Runs one claimed process: builds its {@link RunContext}, replays the journal, and turns the end
 * of `run` into an outcome for the store, or into a suspension.
 *
 * A run ends in one of these ways:
 * - `outcome`: `run` returned (finished, with exit status 0 or an {@link ExitCode}), threw
 *   (excepted), or was killed (killed).
 * - `suspended: waiting`: `ctx.waitFor` checkpointed the process as waiting; its slot is free and
 *   it is replayed when the last awaited child ends.
 * - `suspended: paused`: a pause took effect at a step boundary; the lease was released and the
 *   process resumes (replays) when played. (A run with a command of its own, `core.shell`, is not
 *   suspended by a pause: its process group is stopped in place, see {@link RunHandle.pause}.)
 * - `suspended: lease-lost`: the worker no longer holds the lease (e.g. it was partitioned from
 *   the store long enough for the lease to expire, or frozen); someone else may own the process
 *   now, so nothing more is written for this run.
 *
 * Fencing: the run writes as its claim (the worker id and the claim's token, `ctx.claim`), and
 * before every write it asks the worker whether the lease is still held by the worker's own clock
 * ({@link RunnerHost.holds}). Once it is not (or the store refused a write as a lost lease), the
 * run is lost: `ctx.signal` is aborted (a `core.shell` command's process group is killed), no new
 * step or submission starts, no journal entry, report line, checkpoint or outcome is written.
 * A suspended `run` is abandoned at an `await` that never resolves; it holds nothing.
 *
 * A store that is briefly unreachable (a database restart, a full disk) does not end a run: the
 * run's writes (journal entries, child submissions, the checkpoint before waiting) that fail with
 * a `StoreUnavailableError` are retried with back-off for as long as the run holds its lease. The
 * worker keeps renewing the lease; once the store answers again, a lease still held lets the run go
 * on, a lost one suspends it (`lease-lost`). Every one of these writes is safe to repeat.
 *
 * @module
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import {
  DroverError,
  InputError,
  LeaseLostError,
  NonDeterminismError,
  errorMessage,
  isRetryableStoreError,
} from '../errors/index.js';
import type { ControlEffect, JournalEntry, JsonValue, ProcessOutcome, ProcessRecord } from '../protocol/index.js';
import { RESULT_LIMITS, checkJsonShape, checkJsonValue, isJsonValue, isTerminal } from '../protocol/index.js';
import type { ProcessStore } from '../store/types.js';
import { deferred, sleep } from '../util/index.js';
import type { Logger } from '../logging/index.js';
import { isExitCode, type ChildResult, type OutputLog, type ProcessDefinition, type RunContext } from './definition.js';
import { processGroups } from './process-groups.js';
import type { ProcessRegistry } from './registry.js';

/** Raised into `ctx.signal` when a process is killed. */
export class ProcessKilledError extends DroverError {
  override readonly code: string = 'PROCESS_KILLED';
}

/** What the runner needs from the worker around it. */
export interface RunnerHost {
  store: ProcessStore;
  registry: ProcessRegistry;
  /** Lease owner id of this worker. */
  owner: string;
  /**
   * True while the worker holds the lease of process `id` by the claim `claim`, by its own clock:
   * its last claim or renewal, counted from when it was sent, has not expired yet.
   */
  holds(id: number, claim: number): boolean;
  /** Publishes continue tasks (children just submitted) and clears their dispatch flag. */
  dispatch(ids: number[]): Promise<void>;
  /** Announces a state change, or how a pause or play request was acted on (best effort). */
  announce(
    record: Pick<ProcessRecord, 'id' | 'type' | 'state' | 'paused' | 'parentId' | 'exitStatus' | 'runs'> & {
      control?: ControlEffect;
      /** An end's record as the store now holds it, sent along (`StateBroadcast.record`). */
      endRecord?: ProcessRecord;
    },
  ): void;
  logger: Logger;
  /**
   * Opens the output log of a run (`ctx.output`), closed when the run ends; none: what a run writes
   * there is dropped.
   */
  openOutput?(record: ProcessRecord): OutputLog & { close(): void };
}

/** What `ctx.output` is when the host keeps no output log. */
const NO_OUTPUT: OutputLog = { write: () => undefined };

/**
 * The step whose function is running (process id and the step's seq), so that `ctx.report` inside
 * it reports at the step's own position, not at the position after it.
 */
const stepScope = new AsyncLocalStorage<{ id: number; seq: number }>();

/** How a run ended. */
export type RunEnd =
  { kind: 'outcome'; outcome: ProcessOutcome } | { kind: 'suspended'; reason: 'waiting' | 'paused' | 'lease-lost' };

/** Control over a run in progress, held by the worker. */
export interface RunHandle {
  readonly processId: number;
  /** Settles when the run ends; never rejects. */
  readonly done: Promise<RunEnd>;
  /** Kills the process: aborts `ctx.signal`; the outcome will be `killed`. */
  kill(message?: string): void;
  /**
   * Pauses the run: a run with process groups of its own (a `core.shell` command) is stopped in
   * place (SIGSTOP, and seen stopped; it keeps its slot and lease) and `'stopped'` returned; any other pauses at its
   * next step boundary (`'pausing'`). Either way the worker's answer is broadcast with `control` set.
   */
  pause(): Promise<ControlEffect>;
  /** Cancels a pending pause request, and continues (SIGCONT) groups the pause stopped. */
  play(): void;
  /** The worker lost the lease: abort and write nothing more. */
  leaseLost(): void;
}

class Suspend {
  constructor(readonly reason: 'waiting' | 'paused' | 'lease-lost') {}
}

/** Starts running a claimed process; `claim` is the claim's fencing token (see ProcessStore.claim). */
export function startRun(
  def: ProcessDefinition,
  record: ProcessRecord,
  journal: readonly JournalEntry[],
  host: RunnerHost,
  claim: number,
): RunHandle {
  const id = record.id;
  const owner = host.owner;
  // `ctx.signal` and `ctx.output` are made on first use: most runs (a trivial function, a workflow
  // step) touch neither, and at thousands of runs a second an AbortController and a log path each
  // are a measurable part of a worker's CPU.
  let abort: AbortController | null = null;
  /** Why the run was aborted (killed, lease lost), once it was; the first reason stands. */
  let abortReason: ProcessKilledError | null = null;
  const abortRun = (reason: ProcessKilledError): void => {
    if (abortReason !== null) return;
    abortReason = reason;
    abort?.abort(reason);
  };
  const signal = (): AbortSignal => {
    if (abort === null) {
      abort = new AbortController();
      if (abortReason !== null) abort.abort(abortReason);
    }
    return abort.signal;
  };
  const suspended = deferred<Suspend>();
  let killMessage: string | null = record.killRequested ? 'killed on request' : null;
  let pauseRequested = record.paused;
  let lost = false;
  let seq = 0;
  /** Report lines are written one after the other, in the order they were reported; this is the last. */
  let lastReport: Promise<void> = Promise.resolve();
  /** Lines reported so far at each journal position (the index of the next one there). */
  const reportsAt = new Map<number, number>();
  let output: (OutputLog & { close(): void }) | null = null;
  /** Once the run ended its output log is closed: what is written after is dropped. */
  let ended = false;
  const outputLog = (): OutputLog => {
    if (ended || host.openOutput === undefined) return NO_OUTPUT;
    output ??= host.openOutput(record);
    return output;
  };
  const byseq = new Map<number, JournalEntry>(journal.map((e) => [e.seq, e]));
  const log = host.logger;

  const never = <T>(): Promise<T> => new Promise<T>(() => undefined);

  const loseLease = (): void => {
    if (lost) return;
    lost = true;
    abortRun(new ProcessKilledError('lease lost'));
  };

  /** False once the lease is lost, by the worker's word or its clock (then the run is lost too). */
  const mayWrite = (): boolean => {
    if (!lost && !host.holds(id, claim)) loseLease();
    return !lost;
  };

  /** A store write of this run, waiting out store outages (see the module comment). */
  const durable = async <T>(what: string, call: () => Promise<T>): Promise<T> => {
    for (let attempt = 0; ; attempt++) {
      if (!mayWrite()) return suspend<T>('lease-lost');
      try {
        return await call();
      } catch (err) {
        if (err instanceof LeaseLostError) {
          loseLease();
          return suspend<T>('lease-lost');
        }
        if (!isRetryableStoreError(err) || lost || killMessage !== null) throw err;
        log.debug(`process ${id}: ${what} failed (${errorMessage(err)}); retrying`);
        await sleep(Math.min(2000, 100 * 2 ** attempt));
      }
    }
  };

  const suspend = <T>(reason: Suspend['reason']): Promise<T> => {
    suspended.resolve(new Suspend(reason));
    return never<T>();
  };

  /** Checks kill and pause requests at a step boundary. */
  const boundary = async (): Promise<void> => {
    if (!mayWrite()) await suspend('lease-lost');
    if (killMessage !== null) throw new ProcessKilledError(killMessage);
    if (pauseRequested) {
      await durable('releasing the lease to pause', () => host.store.releaseLeases(owner, [{ id, claim }]));
      host.announce({ ...record, state: 'running', paused: true });
      await suspend('paused');
    }
  };

  const journaled = (kind: JournalEntry['kind'], name: string): { entry: JournalEntry | undefined; seq: number } => {
    const my = seq++;
    const entry = byseq.get(my);
    if (entry && (entry.kind !== kind || entry.name !== name)) {
      throw new NonDeterminismError(
        `non-deterministic replay of process ${id} at step #${my}: the journal has ${entry.kind} '${entry.name}' ` +
          `but run now called ${kind} '${name}'`,
      );
    }
    return { entry, seq: my };
  };

  const ctx: RunContext = {
    processId: id,
    claim,
    get signal() {
      return signal();
    },
    async step<T extends JsonValue>(name: string, fn: () => T | Promise<T>): Promise<T> {
      if (typeof name !== 'string' || name === '') throw new InputError('ctx.step needs a non-empty name');
      const { entry, seq: my } = journaled('step', name);
      if (entry) return entry.result as T;
      await boundary();
      const result = await stepScope.run({ id, seq: my }, fn);
      const value = result === undefined ? null : result;
      checkJsonShape(value, `the result of step '${name}'`, RESULT_LIMITS, false);
      await durable(`journaling step '${name}'`, () =>
        host.store.appendJournal(id, owner, claim, { seq: my, kind: 'step', name, result: value }),
      );
      return value as T;
    },
    async submit(type: string, inputs: JsonValue, options: { label?: string } = {}): Promise<number> {
      const { entry, seq: my } = journaled('submit', type);
      if (entry) return entry.result as number;
      await boundary();
      if (!isJsonValue(inputs)) throw new InputError(`inputs of child '${type}' are not JSON`);
      host.registry.validateSubmission(type, inputs);
      const childId = await durable(`submitting a '${type}' child`, () =>
        host.store.submitChild(id, owner, claim, my, { type, inputs, label: options.label ?? null, parentId: id }),
      );
      host.announce({ id: childId, type, state: 'created', paused: false, parentId: id, exitStatus: null, runs: 0 });
      await host.dispatch([childId]);
      return childId;
    },
    async waitFor(ids: readonly number[]): Promise<ChildResult[]> {
      const wanted = [...ids];
      const fetch = async (): Promise<{ done: boolean; results: ChildResult[] }> => {
        const results: ChildResult[] = [];
        let done = true;
        for (const cid of wanted) {
          const c = await durable(`reading child ${cid}`, () => host.store.getProcess(cid));
          if (!c) throw new InputError(`ctx.waitFor: process ${cid} does not exist`);
          if (c.parentId !== id) throw new InputError(`ctx.waitFor: process ${cid} is not a child of process ${id}`);
          if (!isTerminal(c.state)) {
            done = false;
            continue;
          }
          results.push({
            id: cid,
            state: c.state as ChildResult['state'],
            exitStatus: c.exitStatus,
            exitMessage: c.exitMessage,
            outputs: c.outputs,
          });
        }
        return { done, results };
      };
      let r = await fetch();
      if (r.done) return r.results;
      if (!mayWrite()) return suspend('lease-lost');
      if (killMessage !== null) throw new ProcessKilledError(killMessage);
      const w = await durable('checkpointing to wait', () => host.store.waitForChildren(id, owner, claim, wanted));
      if (w.waiting) {
        host.announce({ ...record, state: 'waiting', paused: false });
        return suspend('waiting');
      }
      r = await fetch();
      return r.results;
    },
    report(message: string): void {
      if (!mayWrite()) return;
      // Keyed by where the run is (see ReportPosition): a replay reports the same keys again, and
      // the store ignores a key it has, so each line is written once however often the run replays.
      // Inside a step's function the position is the step's own seq: a replay that skips the
      // journaled step skips its lines too, and one that runs it again (it had not completed)
      // reports them at the same keys.
      const scope = stepScope.getStore();
      const position = scope !== undefined && scope.id === id ? scope.seq : seq;
      const index = reportsAt.get(position) ?? 0;
      reportsAt.set(position, index + 1);
      const text = String(message);
      lastReport = lastReport.then(() =>
        host.store.addReport(id, owner, claim, text, { position, index }).then(
          () => undefined,
          (err: unknown) => {
            if (err instanceof LeaseLostError) loseLease();
            log.warn(`process ${id}: report line lost: ${errorMessage(err)}`);
          },
        ),
      );
    },
    get output() {
      return outputLog();
    },
  };

  const runPromise = (async (): Promise<RunEnd> => {
    try {
      const raw = await def.run(ctx, record.inputs);
      await lastReport;
      if (!mayWrite()) return { kind: 'suspended', reason: 'lease-lost' };
      if (killMessage !== null) return { kind: 'outcome', outcome: { state: 'killed', exitMessage: killMessage } };
      if (isExitCode(raw)) {
        // Checked here, not only by the store: outputs the store refuses would be retried forever.
        checkJsonValue(raw.outputs, `the outputs of process '${def.name}' (its ExitCode)`, RESULT_LIMITS);
        return {
          kind: 'outcome',
          outcome: { state: 'finished', outputs: raw.outputs, exitStatus: raw.status, exitMessage: raw.message },
        };
      }
      const outputs = raw === undefined ? null : raw;
      checkJsonValue(outputs, `the outputs of process '${def.name}'`, RESULT_LIMITS);
      return { kind: 'outcome', outcome: { state: 'finished', outputs, exitStatus: 0, exitMessage: null } };
    } catch (err) {
      await lastReport;
      if (!mayWrite()) return { kind: 'suspended', reason: 'lease-lost' };
      if (killMessage !== null) return { kind: 'outcome', outcome: { state: 'killed', exitMessage: killMessage } };
      const e = err instanceof Error ? err : new Error(String(err));
      const text = e.stack && e.stack.includes(e.message) ? e.stack : `${e.name}: ${e.message}\n${e.stack ?? ''}`;
      return { kind: 'outcome', outcome: { state: 'excepted', exception: text } };
    }
  })();

  const done = Promise.race([
    runPromise,
    suspended.promise.then((s): RunEnd => ({ kind: 'suspended', reason: s.reason })),
  ]);
  void done.finally(() => {
    ended = true;
    output?.close();
  });

  return {
    processId: id,
    done,
    kill(message = 'killed on request') {
      if (killMessage !== null) return;
      killMessage = message;
      abortRun(new ProcessKilledError(message));
    },
    async pause() {
      pauseRequested = true;
      const effect: ControlEffect = (await processGroups.stopRun(id)) > 0 ? 'stopped' : 'pausing';
      host.announce({ ...record, state: 'running', paused: true, control: effect });
      return effect;
    },
    play() {
      pauseRequested = false;
      if (processGroups.continueRun(id) > 0) {
        host.announce({ ...record, state: 'running', paused: false, control: 'continued' });
      }
    },
    leaseLost() {
      loseLease();
    },
  };
}
