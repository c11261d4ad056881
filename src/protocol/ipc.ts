/**
 * Messages between the daemon and its workers over the Node IPC channel of `child_process.fork`.
 *
 * A worker is started as `fork(<dist>/src/worker/main.js, [], { env: { DROVER_WORKER_ID, ... } })`
 * with the profile name in `DROVER_PROFILE` (and `DROVER_HOME` passed through). It exits by itself
 * when the IPC channel closes (the daemon died), so no worker outlives its daemon.
 *
 * @module
 */
import { ProtocolError } from '../errors/index.js';
import { isJsonObject } from './json.js';
import { parseBusHubMessage, parseBusPeerMessage, type BusHubMessage, type BusPeerMessage } from './bus.js';

/** Daemon → worker. */
export type DaemonToWorker =
  /** Stop taking work, let running processes finish within `graceSeconds`, release the rest, exit 0. */
  | { kind: 'drain'; graceSeconds: number }
  /** Re-publish every process whose dispatch is pending now (e.g. after another worker died). */
  | { kind: 'sweep' }
  /** Ask for a `stats` message. */
  | { kind: 'stats?' }
  /** A message of the local bus (the daemon is the hub; see protocol/bus.ts). */
  | { kind: 'bus'; message: BusHubMessage };

/** Worker → daemon. */
export type WorkerToDaemon =
  /** Connected to the store and broker and consuming. */
  | { kind: 'ready'; workerId: string }
  /** Sent on change and on request. */
  | { kind: 'stats'; workerId: string; running: number; processIds: number[]; slots: number }
  /** The worker cannot start or continue (bad module, unreachable broker): it will exit non-zero. */
  | { kind: 'fatal'; workerId: string; message: string }
  /**
   * The process groups the worker's runs started and that are still running (`core.shell`
   * commands), all of them, sent on change: the daemon kills them if the worker dies, before it
   * releases the worker's leases.
   */
  | { kind: 'groups'; workerId: string; pgids: number[] }
  /**
   * Messages of the local bus for the hub, in order: what the worker posted in one event-loop
   * turn, at most {@link MAX_IPC_BUS_MESSAGES}. (A worker of an earlier version sends `message`,
   * a single one: read as a list of one.)
   */
  | { kind: 'bus'; workerId: string; messages: BusPeerMessage[] };

/** Most local-bus messages in one IPC message of a worker (a sender splits). */
export const MAX_IPC_BUS_MESSAGES = 1000;

/** Validates a message received by a worker. */
export function parseDaemonToWorker(raw: unknown): DaemonToWorker {
  if (!isJsonObject(raw)) throw new ProtocolError('IPC message is not an object');
  switch (raw.kind) {
    case 'drain':
      return { kind: 'drain', graceSeconds: typeof raw.graceSeconds === 'number' ? raw.graceSeconds : 30 };
    case 'sweep':
      return { kind: 'sweep' };
    case 'stats?':
      return { kind: 'stats?' };
    case 'bus':
      return { kind: 'bus', message: parseBusHubMessage(raw.message) };
    default:
      throw new ProtocolError(`unknown IPC message kind ${JSON.stringify(raw.kind)}`);
  }
}

/** Validates a message received by the daemon. */
export function parseWorkerToDaemon(raw: unknown): WorkerToDaemon {
  if (!isJsonObject(raw) || typeof raw.workerId !== 'string') throw new ProtocolError('IPC message is not valid');
  switch (raw.kind) {
    case 'ready':
      return { kind: 'ready', workerId: raw.workerId };
    case 'stats':
      return {
        kind: 'stats',
        workerId: raw.workerId,
        running: typeof raw.running === 'number' ? raw.running : 0,
        processIds: Array.isArray(raw.processIds)
          ? raw.processIds.filter((x): x is number => typeof x === 'number')
          : [],
        slots: typeof raw.slots === 'number' ? raw.slots : 0,
      };
    case 'fatal':
      return { kind: 'fatal', workerId: raw.workerId, message: typeof raw.message === 'string' ? raw.message : '' };
    case 'groups':
      if (!Array.isArray(raw.pgids) || !raw.pgids.every((p) => Number.isSafeInteger(p) && (p as number) > 1)) {
        throw new ProtocolError('IPC groups message: pgids must be an array of integers > 1');
      }
      return { kind: 'groups', workerId: raw.workerId, pgids: raw.pgids as number[] };
    case 'bus': {
      const list = raw.messages === undefined ? [raw.message] : raw.messages;
      if (!Array.isArray(list) || list.length > MAX_IPC_BUS_MESSAGES) {
        throw new ProtocolError(`IPC bus message: messages must be an array of at most ${MAX_IPC_BUS_MESSAGES}`);
      }
      return { kind: 'bus', workerId: raw.workerId, messages: list.map(parseBusPeerMessage) };
    }
    default:
      throw new ProtocolError(`unknown IPC message kind ${JSON.stringify(raw.kind)}`);
  }
}
