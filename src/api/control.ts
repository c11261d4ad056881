/**
 * Process control (kill, pause, play) and waiting on processes.
 *
 * Control requests go to the store first, which is the truth: a process that no live worker
 * holds (created, waiting, paused, released) is changed right there; for a process that a worker
 * is running, the request is also broadcast on the profile's control exchange and the worker
 * running it acts (kill aborts `ctx.signal` and kills `core.shell` commands; pause stops a
 * `core.shell` command's process group in place with SIGSTOP, and play continues it with SIGCONT;
 * any other running process pauses at its next step boundary). The reply says what happened to
 * each id (see {@link ControlOutcome}).
 *
 * Whoever changes the paused flag in the store (this module) broadcasts the process's state after
 * the change, so `process watch` shows every pause and play; the worker's own broadcasts of how it
 * acted (`control` set: `stopped`, `pausing`, `continued`) tell a waiting pause when it is done.
 *
 * Waiting uses the state broadcasts with a store check after subscribing (and a slow store poll
 * as a safety net), so a state change that happens before the subscription is never missed.
 *
 * @module
 */
import { InputError, ProcessNotFoundError, WaitTimeoutError } from '../errors/index.js';
import { isTerminal, type ControlEffect, type ProcessRecord, type StateBroadcast } from '../protocol/index.js';
import type { ProcessClient } from './processes.js';

/**
 * What happened to one id of a control request:
 * - `done`: it took effect (killed; paused: not started, stopped in place, or released at a step
 *   boundary; played);
 * - `pausing`: pause only: the worker running it acknowledged, and it pauses at its next step
 *   boundary (a step under way is finished first); the paused flag is set already;
 * - `already terminated`, `not found`;
 * - `unreachable`: the broker cannot be reached to tell the worker running it;
 * - `timed out`: the worker running it did not react within the timeout.
 */
export type ControlOutcome = 'done' | 'pausing' | 'already terminated' | 'not found' | 'unreachable' | 'timed out';

/**
 * How long a pause the worker answered with `pausing` waits for the step boundary before it replies
 * `pausing` (a workflow between short steps gets `done`).
 */
export const PAUSE_GRACE_MS = 1000;

/** One line of a control reply. */
export interface ControlReply {
  id: number;
  outcome: ControlOutcome;
  /** State after the request (null when not found). */
  state: string | null;
  paused: boolean;
}

/** Options of control requests. */
export interface ControlOptions {
  /** Seconds to wait for a running process to react (default: the profile's daemon.timeout). */
  timeoutSeconds?: number;
  message?: string;
}

/** Most processes one store read of a wait asks for. */
const WAIT_READ_BATCH = 1000;

function checkIds(ids: readonly number[]): void {
  for (const id of ids) {
    if (!Number.isSafeInteger(id) || id <= 0) throw new InputError(`invalid process id ${JSON.stringify(id)}`);
  }
}

/**
 * Waits until every process in `ids` has terminated and returns their records in order.
 * @throws WaitTimeoutError when `timeoutSeconds` passes first (saying which are still active).
 */
export async function waitForProcesses(
  client: ProcessClient,
  ids: readonly number[],
  opts: { timeoutSeconds?: number; until?: (p: ProcessRecord) => boolean; onState?: (m: StateBroadcast) => void } = {},
): Promise<ProcessRecord[]> {
  checkIds(ids);
  const until = opts.until ?? ((p: ProcessRecord) => isTerminal(p.state));
  const pending = new Set(ids);
  const records = new Map<number, ProcessRecord>();
  let wake: () => void = () => undefined;
  /** A store read that failed (a process deleted meanwhile, the store away): the wait fails with it. */
  let failure: unknown = null;
  /** Reads `list` from the store, {@link WAIT_READ_BATCH} at a time, and settles those that are done. */
  const check = async (list: readonly number[]): Promise<void> => {
    for (let i = 0; i < list.length; i += WAIT_READ_BATCH) {
      const chunk = list.slice(i, i + WAIT_READ_BATCH);
      const found = new Set<number>();
      for (const p of await client.store.listProcesses({ ids: chunk })) {
        found.add(p.id);
        if (until(p)) {
          records.set(p.id, p);
          pending.delete(p.id);
        }
      }
      const missing = chunk.find((id) => !found.has(id));
      if (missing !== undefined) {
        throw new ProcessNotFoundError(`no process with id ${missing} in profile '${client.profile.name}'`);
      }
    }
  };
  // The processes the events of this event-loop turn named, read in one go (a bulk run's
  // thousands of ends a second are a few reads, not one each).
  let toCheck = new Set<number>();
  const checkSoon = (id: number): void => {
    if (toCheck.size === 0) {
      setImmediate(() => {
        const list = [...toCheck].filter((x) => pending.has(x));
        toCheck = new Set();
        check(list).then(
          () => wake(),
          (err: unknown) => {
            failure ??= err;
            wake();
          },
        );
      });
    }
    toCheck.add(id);
  };
  // One subscription per client, shared by every wait: nothing to set up or tear down per call.
  const listening = await client.listen({
    // Waiting for the end (the default) with nobody to tell of each change, the others are not needed.
    terminalOnly: opts.until === undefined && opts.onState === undefined,
    onState: (m) => {
      opts.onState?.(m);
      if (!pending.has(m.processId)) return;
      // An end that carries the record as stored settles the wait without a store read.
      if (m.record !== undefined && until(m.record)) {
        records.set(m.processId, m.record);
        pending.delete(m.processId);
        wake();
        return;
      }
      // Waiting for the end (the default), a change to a state that is not an end cannot be it:
      // no store read for `created` and `running`.
      if (opts.until !== undefined || isTerminal(m.state)) checkSoon(m.processId);
    },
    // The subscription was re-established: what changed in between is only in the store.
    onGap: () => {
      for (const id of pending) checkSoon(id);
    },
  });
  const unsubscribe = listening.live ? async () => listening.stop() : null;
  if (!listening.live) listening.stop();
  const deadline = opts.timeoutSeconds !== undefined ? Date.now() + opts.timeoutSeconds * 1000 : Infinity;
  try {
    await check([...pending]);
    let lastPoll = Date.now();
    while (pending.size > 0) {
      if (failure !== null) throw failure;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new WaitTimeoutError(
          `timed out after ${opts.timeoutSeconds} s waiting for process(es) ${[...pending].join(', ')}`,
        );
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, Math.min(left, unsubscribe ? 2000 : 250)).unref();
      });
      if (Date.now() - lastPoll >= (unsubscribe ? 2000 : 250)) {
        lastPoll = Date.now();
        await check([...pending]);
      }
    }
  } finally {
    await unsubscribe?.();
  }
  return ids.map((id) => records.get(id)!);
}

/**
 * Runs `act` for each id that names an active process; replies for missing and terminated ones
 * are made here.
 */
async function forEachActive(
  client: ProcessClient,
  ids: readonly number[],
  act: (p: ProcessRecord) => Promise<ControlOutcome>,
): Promise<ControlReply[]> {
  checkIds(ids);
  const replies: ControlReply[] = [];
  for (const id of ids) {
    const p = await client.store.getProcess(id);
    if (!p) {
      replies.push({ id, outcome: 'not found', state: null, paused: false });
      continue;
    }
    if (isTerminal(p.state)) {
      replies.push({ id, outcome: 'already terminated', state: p.state, paused: p.paused });
      continue;
    }
    const outcome = await act(p);
    const after = await client.getProcess(id);
    replies.push({ id, outcome, state: after.state, paused: after.paused });
  }
  return replies;
}

/** A control action. */
export type ControlAction = 'kill' | 'pause' | 'play';

/**
 * Applies `action` to `ids`, or with `'all'` to every active process of the profile (for kill:
 * every active process whose parent is not active too, since children are killed with their parent).
 */
export async function controlProcesses(
  client: ProcessClient,
  action: ControlAction,
  target: readonly number[] | 'all',
  opts: ControlOptions = {},
): Promise<ControlReply[]> {
  let ids: readonly number[];
  if (target === 'all') {
    const active = await client.listProcesses({ states: ['created', 'running', 'waiting'] });
    const activeIds = new Set(active.map((p) => p.id));
    ids = active
      .filter((p) => action !== 'kill' || p.parentId === null || !activeIds.has(p.parentId))
      .map((p) => p.id)
      .sort((a, b) => a - b);
  } else {
    ids = target;
  }
  const fn = action === 'kill' ? killProcesses : action === 'pause' ? pauseProcesses : playProcesses;
  return fn(client, ids, opts);
}

async function descendants(client: ProcessClient, id: number): Promise<number[]> {
  const out: number[] = [];
  const queue = [id];
  while (queue.length > 0) {
    const parent = queue.shift()!;
    const children = await client.listProcesses({ parentId: parent, states: ['created', 'running', 'waiting'] });
    for (const c of children) {
      out.push(c.id);
      queue.push(c.id);
    }
  }
  return out;
}

/**
 * Kills processes (and the active descendants of each). Works on created, running, waiting and
 * paused processes.
 */
export async function killProcesses(
  client: ProcessClient,
  ids: readonly number[],
  opts: ControlOptions = {},
): Promise<ControlReply[]> {
  const timeout = opts.timeoutSeconds ?? client.profile.options['daemon.timeout'];
  const message = opts.message ?? 'killed on request';
  return forEachActive(client, ids, async (p) => {
    const targets = [p.id, ...(await descendants(client, p.id))];
    const running: number[] = [];
    const woken: number[] = [];
    for (const t of targets) {
      const r = await client.store.requestKillDetailed(t, message);
      if (r.result === 'running') running.push(t);
      else if (r.result === 'killed') await announce(client, await client.store.getProcess(t));
      if (r.wokenParentId !== null) woken.push(r.wokenParentId);
    }
    if (woken.length > 0) {
      // Killing the last awaited child of a waiting workflow wakes it: dispatch it now (else the sweep will).
      await dispatchNow(client, woken);
    }
    if (running.length === 0) return 'done';
    const bus = await client.bus();
    if (!bus) return 'unreachable';
    try {
      for (const t of running)
        await bus.publishControl({ v: 1, kind: 'control', action: 'kill', processId: t, message });
    } catch {
      return 'unreachable';
    }
    try {
      await waitForProcesses(client, running, { timeoutSeconds: timeout });
      return 'done';
    } catch {
      return 'timed out';
    }
  });
}

/** Dispatches processes that became ready (woken, played) at once; the outbox has them anyway. */
async function dispatchNow(client: ProcessClient, ids: number[]): Promise<void> {
  const bus = await client.bus();
  if (!bus) return;
  const markedBy = Date.now();
  try {
    await bus.publishContinue(ids);
    if (bus.dispatch === 'publish') await client.store.markDispatched(ids, markedBy);
  } catch {
    // Still pending in the store: a sweep or the hub dispatches them.
  }
}

/** Broadcasts the state of `p` as the store has it now (best effort). */
async function announce(client: ProcessClient, p: ProcessRecord | null): Promise<void> {
  if (!p) return;
  const b = await client.bus();
  b?.publishState({
    v: 1,
    kind: 'state',
    processId: p.id,
    type: p.type,
    state: p.state,
    paused: p.paused,
    parentId: p.parentId,
    exitStatus: p.exitStatus,
    time: Date.now(),
    runs: p.runs,
  });
}

/**
 * Pauses processes: queued and waiting ones will not start; a running `core.shell` command is
 * stopped in place (SIGSTOP to its process group; it keeps its slot) and continues when played; any
 * other running process stops at its next step boundary (its slot is freed) and resumes from its
 * journal when played. The reply is `done` once it took effect, `pausing` when the worker said it
 * will at the next step boundary (and that did not come within {@link PAUSE_GRACE_MS}).
 */
export async function pauseProcesses(
  client: ProcessClient,
  ids: readonly number[],
  opts: ControlOptions = {},
): Promise<ControlReply[]> {
  const timeout = opts.timeoutSeconds ?? client.profile.options['daemon.timeout'];
  return forEachActive(client, ids, async (p) => {
    await client.store.setPaused([p.id], true);
    let outcome: ControlOutcome = 'done';
    const live = p.leaseOwner !== null && (p.leaseExpiresAt ?? 0) > Date.now();
    if (live) outcome = await pauseRunning(client, p, timeout);
    await announce(client, await client.getProcess(p.id));
    return outcome;
  });
}

/**
 * Tells the worker running `p` to pause it and waits for the effect: the worker's answer
 * `stopped` (a command stopped in place), or the lease released (paused at a step boundary) or the
 * process ended; after the answer `pausing`, for at most {@link PAUSE_GRACE_MS} more.
 */
async function pauseRunning(client: ProcessClient, p: ProcessRecord, timeoutSeconds: number): Promise<ControlOutcome> {
  const bus = await client.bus();
  if (!bus) return 'unreachable';
  let effect: ControlEffect | null = null;
  let wake: () => void = () => undefined;
  // Listening before the request is published: the answer cannot come before we hear it.
  const listening = await client.listen({
    onState: (m) => {
      if (m.processId !== p.id) return;
      if (m.control === 'stopped' || m.control === 'pausing') effect ??= m.control;
      wake();
    },
  });
  try {
    try {
      await bus.publishControl({ v: 1, kind: 'control', action: 'pause', processId: p.id });
    } catch {
      return 'unreachable';
    }
    const deadline = Date.now() + timeoutSeconds * 1000;
    let graceEnd = Infinity;
    for (;;) {
      if (effect === 'stopped') return 'done';
      const r = await client.store.getProcess(p.id);
      // Nobody claims a paused process, so the lease can only have been released (or the run ended).
      if (!r || isTerminal(r.state) || r.leaseOwner !== p.leaseOwner) return 'done';
      if (effect === 'pausing' && graceEnd === Infinity) graceEnd = Date.now() + PAUSE_GRACE_MS;
      const left = Math.min(deadline, graceEnd) - Date.now();
      if (left <= 0) return effect === 'pausing' ? 'pausing' : 'timed out';
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, Math.min(left, 100)).unref();
      });
    }
  } finally {
    listening.stop();
  }
}

/** Resumes paused processes. */
export async function playProcesses(
  client: ProcessClient,
  ids: readonly number[],
  _opts: ControlOptions = {},
): Promise<ControlReply[]> {
  return forEachActive(client, ids, async (p) => {
    const changed = await client.store.setPaused([p.id], false);
    // A paused process that was released is dispatched now (it is pending in the store anyway).
    if (changed.length > 0) await dispatchNow(client, [p.id]);
    // A pause that has not yet taken effect is cancelled in the worker running the process.
    const live = p.leaseOwner !== null && (p.leaseExpiresAt ?? 0) > Date.now();
    let outcome: ControlOutcome = 'done';
    if (live) {
      const bus = await client.bus();
      const sent =
        bus !== null &&
        (await bus.publishControl({ v: 1, kind: 'control', action: 'play', processId: p.id }).then(
          () => true,
          () => false,
        ));
      if (!sent) outcome = 'unreachable';
    }
    await announce(client, await client.getProcess(p.id));
    return outcome;
  });
}
