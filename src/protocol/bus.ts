/**
 * Messages of the `local` message bus, between the daemon (the hub) and its peers: its workers
 * (over their IPC channel, wrapped as `{kind: "bus", workerId, messages}`) and other programs of the
 * user (over the control socket, as requests of method `bus` whose params are the message; the
 * hub's messages to a socket peer are pushed as lines `{"v":1,"bus":<message>}`).
 *
 * Every message is validated on receipt, on both sides: a malformed one is a {@link ProtocolError}
 * (the socket answers a request with `PARAMS_INVALID`, and logs a refused notification), never
 * trusted and never fatal.
 *
 * @module
 */
import { ProtocolError } from '../errors/index.js';
import { isJsonObject } from './json.js';
import { parseControlMessage, parseStateBroadcast, type ControlMessage, type StateBroadcast } from './broker.js';

/** Most ids or events in one bus message (the socket's line limit is 64 KiB; a sender splits). */
export const MAX_BUS_BATCH = 5000;

/** Peer → hub. */
export type BusPeerMessage =
  /** Processes committed with dispatch pending: a hint (the hub reads the store anyway). */
  | { kind: 'dispatch'; ids: number[] }
  /** Start (or, after a reconnect, resume) consuming tasks with `credit` free slots. */
  | { kind: 'consume'; credit: number; workerId: string | null }
  /** `n` slots freed. */
  | { kind: 'credit'; n: number }
  /** Tasks claimed or refused in the store: forget them. */
  | { kind: 'ack'; ids: number[] }
  /** Tasks handed back unclaimed, with their credit. */
  | { kind: 'requeue'; ids: number[] }
  /** Stop consuming tasks. */
  | { kind: 'cancel' }
  /** A control request for whoever runs the process; the reply counts the consumers it reached. */
  | { kind: 'control'; message: ControlMessage }
  /** Start or stop receiving control requests. */
  | { kind: 'consume-control'; on: boolean }
  /** State changes to broadcast. */
  | { kind: 'states'; events: StateBroadcast[] }
  /**
   * Start or stop receiving state changes: every one, or with `terminalOnly` those reaching an end
   * (finished, excepted, killed), all a waiting client needs (the rest cost it and the hub a write
   * and a wake-up each). Absent from older peers: every change.
   */
  | { kind: 'subscribe'; on: boolean; terminalOnly?: boolean };

/** Hub → peer. */
export type BusHubMessage =
  | { kind: 'tasks'; ids: number[] }
  | { kind: 'control'; message: ControlMessage }
  | { kind: 'states'; events: StateBroadcast[] };

/** Reply of the hub to a peer message (socket peers get it as the request's result). */
export interface BusReply {
  /** For `control`: how many control consumers the request reached. */
  delivered?: number;
}

function ids(raw: unknown, where: string): number[] {
  if (!Array.isArray(raw)) throw new ProtocolError(`${where}: ids must be an array`);
  if (raw.length > MAX_BUS_BATCH) throw new ProtocolError(`${where}: more than ${MAX_BUS_BATCH} ids in one message`);
  for (const id of raw) {
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 1) {
      throw new ProtocolError(`${where}: every id must be a positive integer, got ${JSON.stringify(id)}`);
    }
  }
  return raw as number[];
}

function count(raw: unknown, where: string, name: string, max = 1_000_000): number {
  if (typeof raw !== 'number' || !Number.isSafeInteger(raw) || raw < 0 || raw > max) {
    throw new ProtocolError(`${where}: ${name} must be an integer from 0 to ${max}, got ${JSON.stringify(raw)}`);
  }
  return raw;
}

function events(raw: unknown, where: string): StateBroadcast[] {
  if (!Array.isArray(raw)) throw new ProtocolError(`${where}: events must be an array`);
  if (raw.length > MAX_BUS_BATCH) throw new ProtocolError(`${where}: more than ${MAX_BUS_BATCH} events`);
  return raw.map((e) => {
    if (!isJsonObject(e)) throw new ProtocolError(`${where}: every event must be an object`);
    return parseStateBroadcast(e);
  });
}

function control(raw: unknown, where: string): ControlMessage {
  if (!isJsonObject(raw)) throw new ProtocolError(`${where}: message must be an object`);
  return parseControlMessage(raw);
}

function flag(raw: unknown, where: string): boolean {
  if (typeof raw !== 'boolean') throw new ProtocolError(`${where}: 'on' must be a boolean`);
  return raw;
}

/** Validates a message a peer sent to the hub. */
export function parseBusPeerMessage(raw: unknown): BusPeerMessage {
  if (!isJsonObject(raw)) throw new ProtocolError('bus message must be an object');
  const where = `bus message '${String(raw.kind)}'`;
  switch (raw.kind) {
    case 'dispatch':
      return { kind: 'dispatch', ids: ids(raw.ids, where) };
    case 'consume': {
      const w = raw.workerId;
      if (w !== null && w !== undefined && (typeof w !== 'string' || w === '' || w.length > 200)) {
        throw new ProtocolError(`${where}: workerId must be a short string or null`);
      }
      return { kind: 'consume', credit: count(raw.credit, where, 'credit'), workerId: w ?? null };
    }
    case 'credit':
      return { kind: 'credit', n: count(raw.n, where, 'n') };
    case 'ack':
      return { kind: 'ack', ids: ids(raw.ids, where) };
    case 'requeue':
      return { kind: 'requeue', ids: ids(raw.ids, where) };
    case 'cancel':
      return { kind: 'cancel' };
    case 'control':
      return { kind: 'control', message: control(raw.message, where) };
    case 'consume-control':
      return { kind: 'consume-control', on: flag(raw.on, where) };
    case 'states':
      return { kind: 'states', events: events(raw.events, where) };
    case 'subscribe': {
      const on = flag(raw.on, where);
      if (raw.terminalOnly === undefined) return { kind: 'subscribe', on };
      if (typeof raw.terminalOnly !== 'boolean') throw new ProtocolError(`${where}: 'terminalOnly' must be a boolean`);
      return { kind: 'subscribe', on, terminalOnly: raw.terminalOnly };
    }
    default:
      throw new ProtocolError(`unknown bus message kind ${JSON.stringify(raw.kind)}`);
  }
}

/** Validates a message the hub sent to a peer. */
export function parseBusHubMessage(raw: unknown): BusHubMessage {
  if (!isJsonObject(raw)) throw new ProtocolError('bus message must be an object');
  const where = `bus message '${String(raw.kind)}'`;
  switch (raw.kind) {
    case 'tasks':
      return { kind: 'tasks', ids: ids(raw.ids, where) };
    case 'control':
      return { kind: 'control', message: control(raw.message, where) };
    case 'states':
      return { kind: 'states', events: events(raw.events, where) };
    default:
      throw new ProtocolError(`unknown bus message kind ${JSON.stringify(raw.kind)}`);
  }
}

/** Splits `items` into chunks of at most {@link MAX_BUS_BATCH}. */
export function busChunks<T>(items: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += MAX_BUS_BATCH) out.push(items.slice(i, i + MAX_BUS_BATCH));
  return out;
}
