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
