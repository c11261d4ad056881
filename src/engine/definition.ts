/**
 * Process definitions. A process type is defined once with {@link defineProcess} and registered
 * by name; workers look it up when they run a process of that type.
 *
 * `run(ctx, inputs)` is replayed from the top after a crash, a wait or a pause: results of
 * `ctx.step`, `ctx.submit` are journaled in the store and returned from the journal on replay, so
 * side effects belong inside steps and `run` must take the same path again (a replay that calls
 * steps in another order than the journal records excepts with a {@link NonDeterminismError}
 * naming the step).
 *
 * @module
 */
import type { JsonValue } from '../protocol/index.js';

/** The outcome of an awaited child. */
export interface ChildResult {
  id: number;
  state: 'finished' | 'excepted' | 'killed';
  exitStatus: number | null;
  exitMessage: string | null;
  outputs: JsonValue | null;
}

/** What `run` can use. */
export interface RunContext {
  /** Id of the running process. */
  readonly processId: number;
  /**
   * The fencing token of this run: the number of the claim it runs under (1 for the first run of
   * the process; every later claim, after a crash, a wait, a pause or a lost lease, is one more).
   * Pass it to an external system that can refuse a write older than the newest it has seen, so
   * a side effect of a run that lost its lease cannot land after a newer run's (see
   * docs/processes.md, "Fencing").
   */
  readonly claim: number;
  /**
   * Fired when the process is killed or its worker loses the lease (it could not renew it before
   * it expired by the worker's clock): stop work and return or throw. After a lost lease nothing
   * more of the run is recorded and `ctx.step`, `ctx.submit` and `ctx.waitFor` never return.
   */
  readonly signal: AbortSignal;
  /**
   * Runs `fn` once and journals its JSON result; on replay returns the journaled result without
   * running `fn` again. A step boundary is also where a pause takes effect.
   */
  step<T extends JsonValue>(name: string, fn: () => T | Promise<T>): Promise<T>;
  /** Submits a child process (journaled: a replay does not submit it twice); returns its id. */
  submit(type: string, inputs: JsonValue, options?: { label?: string }): Promise<number>;
  /**
   * Returns the children's results once all have terminated. Until then the process checkpoints,
   * becomes `waiting`, gives its worker slot back and is resumed (replayed) when the last one ends.
   */
  waitFor(ids: readonly number[]): Promise<ChildResult[]>;
  /**
   * Appends a line to the process's report log (`drover process report ID`). A line is written
   * once however often `run` is replayed: lines are keyed by where the run is (the journal
   * position, and their order there), and a replay reporting a key again writes nothing. So report
   * in a deterministic order, as you take steps; a replay that reports a different message at a
   * key written before keeps the first one.
   */
  report(message: string): void;
  /**
   * The process's output log (`drover process logs ID`): a file per process under the profile's
   * log directory on the host of the worker running it, bounded in size (see the option
   * `processes.log_max_bytes`). `core.shell` streams its command's stdout and stderr into it.
   */
  readonly output: OutputLog;
}

/** The live output of a process (see {@link RunContext.output}). */
export interface OutputLog {
  /** Appends text or bytes. Never throws: a log that cannot be written is given up (and logged). */
  write(chunk: string | Uint8Array): void;
}

const EXIT_CODE_BRAND = Symbol.for('drover.ExitCode');

/** True for an {@link ExitCode}, also one made by another copy of the drover package. */
export function isExitCode(v: unknown): v is ExitCode {
  return (
    v instanceof ExitCode ||
    (typeof v === 'object' && v !== null && (v as Record<symbol, unknown>)[EXIT_CODE_BRAND] === true)
  );
}

/**
 * Returned by `run` to finish with a non-zero exit status: an expected failure, as AiiDA's
 * ExitCode. The process ends `finished` with this status, message and optional outputs.
 */
export class ExitCode {
  /** Brand, so an ExitCode from another copy of the drover package is recognised too. */
  readonly [EXIT_CODE_BRAND] = true;

  constructor(
    readonly status: number,
    readonly message: string,
    readonly outputs: JsonValue = null,
  ) {
    if (!Number.isInteger(status)) throw new TypeError('exit status must be an integer');
  }
}

/** A process type. */
export interface ProcessDefinition<I = JsonValue, O extends JsonValue = JsonValue> {
  /** Registered name, e.g. `core.arithmetic.add`. */
  readonly name: string;
  readonly description?: string;
  /**
   * Checks inputs at submit time (and again before running); returns an error message saying
   * what is wrong, or null. Inputs failing it are rejected at submit.
   */
  validateInputs?(inputs: JsonValue): string | null;
  run(ctx: RunContext, inputs: I): Promise<O | ExitCode> | O | ExitCode;
}

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;

/** Defines a process type (checks the name). */
export function defineProcess<I = JsonValue, O extends JsonValue = JsonValue>(
  def: ProcessDefinition<I, O>,
): ProcessDefinition<I, O> {
  if (typeof def.name !== 'string' || !NAME_RE.test(def.name)) {
    throw new TypeError(`invalid process type name ${JSON.stringify(def.name)}: use dotted identifiers like 'my.job'`);
  }
  if (typeof def.run !== 'function') throw new TypeError(`process type '${def.name}' has no run function`);
  return Object.freeze({ ...def });
}
