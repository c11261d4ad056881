/**
 * Bodies of broker messages. Every body is JSON with a version `v` and a string tag `kind`, and
 * is validated when received: a malformed body is reported as a {@link ProtocolError}, never
 * trusted.
 *
 * @module
 */
import { ProtocolError } from '../errors/index.js';
import { isJsonObject } from './json.js';
import { PROCESS_STATES, asProcessRecord, isTerminal, type ProcessRecord, type ProcessState } from './process.js';

/** Version of the broker message bodies. */
export const BROKER_PROTOCOL_VERSION = 1;

/** "Continue process N": published to the task queue. */
export interface ContinueTask {
  v: 1;
  kind: 'continue';
  processId: number;
}

/** A control request published on the control exchange for the worker running a process. */
export interface ControlMessage {
  v: 1;
  kind: 'control';
  action: 'kill' | 'pause' | 'play';
  processId: number;
  message?: string;
}

/**
 * How the worker running a process acted on a pause or play request (see {@link StateBroadcast.control}):
 * - `stopped`: the process was suspended where it is (its `core.shell` command's process group got SIGSTOP);
 * - `pausing`: it has nothing to stop in place; it pauses at its next step boundary;
 * - `continued`: play resumed a stopped process (SIGCONT).
 */
export type ControlEffect = 'stopped' | 'pausing' | 'continued';
const CONTROL_EFFECTS: readonly ControlEffect[] = ['stopped', 'pausing', 'continued'];

/** Broadcast on every state change (and when a worker acts on a pause or play request). */
export interface StateBroadcast {
  v: 1;
  kind: 'state';
  processId: number;
  type: string;
  state: ProcessState;
  paused: boolean;
  parentId: number | null;
  exitStatus: number | null;
  time: number;
  /**
   * How many times the process had been claimed when this was sent (its `runs`). With the state it
   * orders one process's events: see `stateOrder` in api/watch.ts. Absent from older senders.
   */
  runs?: number;
  /** Set by the worker running the process when it acted on a pause or play request. */
  control?: ControlEffect;
  /**
   * On an end the worker recorded: the process's record as the store now holds it, so that a wait
   * needs no store read to return it. Sent only with the ends of small batches and when its JSON
   * is short ({@link MAX_EVENT_RECORD_BYTES}); a receiver that finds it absent or malformed reads
   * the store. Absent from older senders.
   */
  record?: ProcessRecord;
}

/**
 * Longest JSON text of a {@link StateBroadcast.record}: an end with larger inputs or outputs goes
 * without it (every subscriber receives every end; the waiter reads a large record from the store).
 */
export const MAX_EVENT_RECORD_BYTES = 4096;

/**
 * State broadcasts are published in batches (all changes a process made in one event-loop turn),
 * one message per batch: at thousands of processes a second, one message per change would double
 * the broker's load for information nobody may be listening to.
 */
export interface StateBatch {
  v: 1;
  kind: 'states';
  events: StateBroadcast[];
}

/** Any broker message body. */
export type BrokerMessage = ContinueTask | ControlMessage | StateBroadcast | StateBatch;

function positiveInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v > 0;
}

/** Validates a state broadcast given as an object (without its JSON envelope). */
export function parseStateBroadcast(raw: Record<string, unknown>): StateBroadcast {
  if (!positiveInt(raw.processId)) throw new ProtocolError('state broadcast: processId must be a positive integer');
  if (typeof raw.state !== 'string' || !(PROCESS_STATES as readonly string[]).includes(raw.state)) {
    throw new ProtocolError(`state broadcast: unknown state ${JSON.stringify(raw.state)}`);
  }
  return {
    v: 1,
    kind: 'state',
    processId: raw.processId,
    type: typeof raw.type === 'string' ? raw.type : '',
    state: raw.state as ProcessState,
    paused: raw.paused === true,
    parentId: positiveInt(raw.parentId) ? raw.parentId : null,
    exitStatus: typeof raw.exitStatus === 'number' ? raw.exitStatus : null,
    time: typeof raw.time === 'number' ? raw.time : Date.now(),
    ...(typeof raw.runs === 'number' && Number.isSafeInteger(raw.runs) && raw.runs >= 0 ? { runs: raw.runs } : {}),
    ...(typeof raw.control === 'string' && (CONTROL_EFFECTS as readonly string[]).includes(raw.control)
      ? { control: raw.control as ControlEffect }
      : {}),
    ...eventRecord(raw),
  };
}

/** The record of an end event when it is one of that very end, else nothing (see {@link StateBroadcast.record}). */
function eventRecord(raw: Record<string, unknown>): { record?: ProcessRecord } {
  if (raw.record === undefined) return {};
  const r = asProcessRecord(raw.record);
  return r !== null && r.id === raw.processId && r.state === raw.state && isTerminal(r.state) ? { record: r } : {};
}

/** Validates a control message given as an object (without its JSON envelope). */
export function parseControlMessage(raw: Record<string, unknown>): ControlMessage {
  if (raw.v !== BROKER_PROTOCOL_VERSION || raw.kind !== 'control') {
    throw new ProtocolError('control message: expected {"v":1,"kind":"control",...}');
  }
  if (!positiveInt(raw.processId)) throw new ProtocolError('control message: processId must be a positive integer');
  if (raw.action !== 'kill' && raw.action !== 'pause' && raw.action !== 'play') {
    throw new ProtocolError(`control message: unknown action ${JSON.stringify(raw.action)}`);
  }
  const msg: ControlMessage = { v: 1, kind: 'control', action: raw.action, processId: raw.processId };
  if (typeof raw.message === 'string') msg.message = raw.message;
  return msg;
}

/** Parses and validates a broker message body. */
export function parseBrokerMessage(body: Buffer | string): BrokerMessage {
  const text = typeof body === 'string' ? body : body.toString('utf8');
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new ProtocolError(`message body is not JSON: ${JSON.stringify(text.slice(0, 80))}`);
  }
  if (!isJsonObject(raw)) throw new ProtocolError('message body is not a JSON object');
  if (raw.v !== BROKER_PROTOCOL_VERSION) {
    throw new ProtocolError(
      `unsupported message version ${JSON.stringify(raw.v)} (expected ${BROKER_PROTOCOL_VERSION})`,
    );
  }
  switch (raw.kind) {
    case 'continue':
      if (!positiveInt(raw.processId)) throw new ProtocolError('continue task: processId must be a positive integer');
      return { v: 1, kind: 'continue', processId: raw.processId };
    case 'control':
      return parseControlMessage(raw);
    case 'state':
      return parseStateBroadcast(raw);
    case 'states': {
      if (!Array.isArray(raw.events)) throw new ProtocolError('state batch: events must be an array');
      return {
        v: 1,
        kind: 'states',
        events: raw.events.map((e) => {
          if (!isJsonObject(e)) throw new ProtocolError('state batch: every event must be an object');
          return parseStateBroadcast(e);
        }),
      };
    }
    default:
      throw new ProtocolError(`unknown message kind ${JSON.stringify(raw.kind)}`);
  }
}

/** Encodes a broker message body. */
export function encodeBrokerMessage(msg: BrokerMessage): Buffer {
  return Buffer.from(JSON.stringify(msg));
}
