/**
 * The process model shared by the store, the engine, the workers and the clients.
 *
 * States (as AiiDA):
 * - `created`: stored, waiting to be claimed by a worker.
 * - `running`: claimed by a worker (or released by one and waiting to be claimed again).
 * - `waiting`: checkpointed while awaiting child processes; holds no worker slot.
 * - `finished`: `run` returned; `exitStatus` 0 means success, non-zero an expected failure.
 * - `excepted`: `run` threw; `exception` holds the message and stack.
 * - `killed`: killed on request.
 * The last three are terminal.
 *
 * @module
 */
import type { JsonValue } from './json.js';

/** All process states. */
export const PROCESS_STATES = ['created', 'running', 'waiting', 'finished', 'excepted', 'killed'] as const;
/** A process state. */
export type ProcessState = (typeof PROCESS_STATES)[number];
/** States a process never leaves. */
export const TERMINAL_STATES: readonly ProcessState[] = ['finished', 'excepted', 'killed'];
/** States of a process that still has work to do. */
export const ACTIVE_STATES: readonly ProcessState[] = ['created', 'running', 'waiting'];

/** True for `finished`, `excepted` and `killed`. */
export function isTerminal(state: ProcessState): boolean {
  return TERMINAL_STATES.includes(state);
}

/** The durable record of a process. Times are milliseconds since the epoch. */
export interface ProcessRecord {
  id: number;
  uuid: string;
  type: string;
  label: string | null;
  state: ProcessState;
  paused: boolean;
  killRequested: boolean;
  inputs: JsonValue;
  outputs: JsonValue | null;
  exitStatus: number | null;
  exitMessage: string | null;
  /** Message and stack of the exception when `run` threw. */
  exception: string | null;
  parentId: number | null;
  /** The worker that last ran (or runs) the process. */
  workerId: string | null;
  /** The worker holding the lease now, if any. */
  leaseOwner: string | null;
  leaseExpiresAt: number | null;
  /** How many times a worker has claimed the process (1 for a process run once, uninterrupted). */
  runs: number;
  ctime: number;
  mtime: number;
}

/**
 * `raw` as a {@link ProcessRecord} when it is one (every field present with its type), else null.
 * For records received from other programs (see {@link StateBroadcast.record}), which are never
 * trusted as they come.
 */
export function asProcessRecord(raw: unknown): ProcessRecord | null {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return null;
  const r = raw as Record<string, unknown>;
  const int = (v: unknown): boolean => typeof v === 'number' && Number.isSafeInteger(v);
  const intOrNull = (v: unknown): boolean => v === null || int(v);
  const strOrNull = (v: unknown): boolean => v === null || typeof v === 'string';
  const ok =
    int(r.id) &&
    (r.id as number) > 0 &&
    typeof r.uuid === 'string' &&
    typeof r.type === 'string' &&
    strOrNull(r.label) &&
    typeof r.state === 'string' &&
    (PROCESS_STATES as readonly string[]).includes(r.state) &&
    typeof r.paused === 'boolean' &&
    typeof r.killRequested === 'boolean' &&
    'inputs' in r &&
    'outputs' in r &&
    intOrNull(r.exitStatus) &&
    strOrNull(r.exitMessage) &&
    strOrNull(r.exception) &&
    intOrNull(r.parentId) &&
    strOrNull(r.workerId) &&
    strOrNull(r.leaseOwner) &&
    intOrNull(r.leaseExpiresAt) &&
    int(r.runs) &&
    int(r.ctime) &&
    int(r.mtime);
  if (!ok) return null;
  return {
    id: r.id as number,
    uuid: r.uuid as string,
    type: r.type as string,
    label: r.label as string | null,
    state: r.state as ProcessState,
    paused: r.paused as boolean,
    killRequested: r.killRequested as boolean,
    inputs: r.inputs as JsonValue,
    outputs: r.outputs as JsonValue | null,
    exitStatus: r.exitStatus as number | null,
    exitMessage: r.exitMessage as string | null,
    exception: r.exception as string | null,
    parentId: r.parentId as number | null,
    workerId: r.workerId as string | null,
    leaseOwner: r.leaseOwner as string | null,
    leaseExpiresAt: r.leaseExpiresAt as number | null,
    runs: r.runs as number,
    ctime: r.ctime as number,
    mtime: r.mtime as number,
  };
}

/** What a worker reports when `run` ends. */
export type ProcessOutcome =
  | { state: 'finished'; outputs: JsonValue; exitStatus: number; exitMessage: string | null }
  | { state: 'excepted'; exception: string }
  | { state: 'killed'; exitMessage: string | null };

/** An entry of a process's journal of durable progress. */
export interface JournalEntry {
  /** 0-based position in the run. */
  seq: number;
  kind: 'step' | 'submit';
  /** The step name, or for `submit` the child process type. */
  name: string;
  /** The step's JSON result, or for `submit` the child id. */
  result: JsonValue;
}

/** One line of a process's report log. */
export interface ReportLine {
  time: number;
  message: string;
}
