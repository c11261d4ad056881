/**
 * Following processes as they change (`drover process watch`): first the current state of each
 * watched process, read from the store, then every change in the order it happened, per process.
 *
 * State broadcasts come from several senders (the submitter, the worker running a process, the
 * worker running its parent, a client pausing or killing it), and on RabbitMQ those travel on
 * different connections: one process's broadcasts can arrive out of order (the worker's `running`
 * before the submitter's `created`), or after the state read from the store was printed. So every
 * line printed for a process has an order ({@link stateOrder}: the process's run count, which only
 * grows, then the phase within that run), and a broadcast older than what was printed for that
 * process is dropped, one equal to it (a second sender telling the same) too. Pause and play do not
 * change the order; a broadcast that differs from the last line only in `paused` is checked against
 * the store, the truth for the flag, and dropped when the store says otherwise (a worker's late word
 * about a pause that a play already undid). Why not a version column: the run count plus the state
 * orders every change but pause and play without a schema change, and those two are settled by the
 * store read, which is needed only for them.
 *
 * Broadcasts are best effort: with ids, the store is read again every {@link WATCH_POLL_MS} and after
 * a re-established subscription, and a state newer than the last printed line is printed from it, so
 * a lost broadcast never leaves a watch waiting for an end it missed.
 *
 * @module
 */
import { BrokerError } from '../errors/index.js';
import {
  ACTIVE_STATES,
  isTerminal,
  type ProcessRecord,
  type ProcessState,
  type StateBroadcast,
} from '../protocol/index.js';
import type { ProcessClient } from './processes.js';

/** How often a watch of given ids reads their state from the store (in case a broadcast was lost). */
export const WATCH_POLL_MS = 2000;

const PHASE: Record<ProcessState, number> = { created: 0, running: 1, waiting: 2, finished: 3, excepted: 3, killed: 3 };

/**
 * The order of a process's state: `runs * 4 + phase` (created 0, running 1, waiting 2, terminal 3).
 * A process goes created → running → (waiting → running)* → terminal, and every claim (the only
 * way into `running` again) increments `runs`, so the order only grows; pause and play keep it.
 * Null when the sender did not say `runs` (an older version).
 */
export function stateOrder(e: { state: ProcessState; runs?: number }): number | null {
  return e.runs === undefined ? null : e.runs * 4 + PHASE[e.state];
}

/** A record as the state line a watch prints for it (`time` is its last change in the store). */
export function recordLine(r: ProcessRecord): StateBroadcast {
  return {
    v: 1,
    kind: 'state',
    processId: r.id,
    type: r.type,
    state: r.state,
    paused: r.paused,
    parentId: r.parentId,
    exitStatus: r.exitStatus,
    time: r.mtime,
    runs: r.runs,
  };
}

/** Options of {@link watchProcesses}. */
export interface WatchOptions {
  /** Processes to follow, with their descendants; empty: every process of the profile. */
  ids: readonly number[];
  /** Called for every line, in order. */
  onLine(line: StateBroadcast): void;
  /** Called once the current states were printed and changes are followed. */
  onReady?(): void;
  /** Ends the watch. */
  signal?: AbortSignal;
}

/**
 * Prints (through `onLine`) the current state of the watched processes, then every change. With
 * ids, resolves when every one of them is terminal; without, when `signal` aborts.
 * @throws ProcessNotFoundError for an id that names no process; BrokerError when the broker cannot
 *   be reached.
 */
export async function watchProcesses(client: ProcessClient, opts: WatchOptions): Promise<void> {
  const roots = [...new Set(opts.ids)];
  const family = new Set(roots);
  const last = new Map<number, { order: number | null; state: ProcessState; paused: boolean; exit: number | null }>();
  let finish: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const allEnded = (): boolean => roots.length > 0 && roots.every((id) => isTerminal(last.get(id)?.state ?? 'created'));

  /** Prints `m` unless it is older than, or the same as, what was printed for its process. */
  const consider = async (m: StateBroadcast, fromStore: boolean): Promise<void> => {
    if (roots.length > 0) {
      if (m.parentId !== null && family.has(m.parentId)) family.add(m.processId);
      if (!family.has(m.processId)) return;
    }
    const prev = last.get(m.processId);
    const order = stateOrder(m);
    if (prev) {
      const same = prev.state === m.state && prev.paused === m.paused && prev.exit === m.exitStatus;
      if (order !== null && prev.order !== null) {
        if (order < prev.order || (order === prev.order && same)) return;
        if (order === prev.order && prev.paused !== m.paused && !fromStore) {
          const r = await client.store.getProcess(m.processId);
          if (!r || r.paused !== m.paused) return;
        }
      } else if (same) return;
    }
    last.set(m.processId, { order, state: m.state, paused: m.paused, exit: m.exitStatus });
    opts.onLine(m);
    if (allEnded()) finish();
  };

  // Every line goes through one queue, in arrival order; broadcasts wait until the current states are out.
  let release: () => void = () => undefined;
  let queue: Promise<void> = new Promise<void>((resolve) => (release = resolve));
  const enqueue = (fn: () => Promise<void>): void => {
    queue = queue.then(fn).catch(() => undefined);
  };
  const fromStore = (ids: readonly number[]): void =>
    enqueue(async () => {
      for (const id of ids) {
        const r = await client.store.getProcess(id);
        if (r) await consider(recordLine(r), true);
      }
    });

  const listening = await client.listen({
    onState: (m) => enqueue(() => consider(m, false)),
    onGap: () => fromStore([...last.keys()].filter((id) => !isTerminal(last.get(id)!.state))),
  });
  let poll: NodeJS.Timeout | undefined;
  const onAbort = (): void => finish();
  try {
    if (!listening.live) throw new BrokerError(`cannot reach the broker at ${client.profile.broker.displayUrl}`);
    // The current states, read after subscribing: a change made meanwhile is in the store or comes after.
    const current: ProcessRecord[] = [];
    if (roots.length > 0) {
      for (const id of roots) current.push(await client.getProcess(id));
      const queue = [...roots];
      while (queue.length > 0) {
        const children = await client.listProcesses({ parentId: queue.shift()!, states: ACTIVE_STATES });
        for (const c of children.sort((a, b) => a.id - b.id)) {
          if (family.has(c.id)) continue;
          family.add(c.id);
          current.push(c);
          queue.push(c.id);
        }
      }
    } else {
      current.push(...(await client.listProcesses({ states: ACTIVE_STATES })).sort((a, b) => a.id - b.id));
    }
    for (const r of current) await consider(recordLine(r), true);
    release();
    await queue;
    opts.onReady?.();
    if (opts.signal?.aborted) finish();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    if (roots.length > 0) {
      poll = setInterval(
        () => fromStore(roots.filter((id) => !isTerminal(last.get(id)?.state ?? 'created'))),
        WATCH_POLL_MS,
      );
      poll.unref();
    }
    await done;
  } finally {
    release();
    clearInterval(poll);
    opts.signal?.removeEventListener('abort', onAbort);
    listening.stop();
  }
}
