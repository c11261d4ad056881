/**
 * Argument checks and small helpers shared by the store adapters. Every public store method checks
 * its arguments here first, so bad input is refused with an {@link InputError} that names the method
 * and the argument, before anything is written.
 *
 * @module
 */
import { InputError } from '../errors/index.js';
import {
  INPUT_LIMITS,
  PROCESS_STATES,
  RESULT_LIMITS,
  checkJsonValue,
  isTerminal,
  jsonPreview,
  type JournalEntry,
  type JsonValue,
  type ProcessOutcome,
  type ProcessState,
} from '../protocol/index.js';
import type {
  ClaimResult,
  DaemonRegistration,
  NewProcess,
  ProcessFilter,
  ReportPosition,
  RunClaim,
  StoreOwner,
  StoredOutcome,
} from './types.js';

/** Milliseconds in a day, for {@link ProcessFilter.pastDays}. */
export const DAY_MS = 86_400_000;

/** A zero count for every state, in {@link PROCESS_STATES} order. */
export function emptyCounts(): Record<ProcessState, number> {
  const out = {} as Record<ProcessState, number>;
  for (const s of PROCESS_STATES) out[s] = 0;
  return out;
}

/** Checks that `id` is a positive safe integer (a process id). */
export function checkId(id: unknown, where: string): number {
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 1) {
    throw new InputError(`${where}: process id must be a positive integer, got ${JSON.stringify(id)}`);
  }
  return id;
}

/** Checks a list of process ids; returns it deduplicated, in first-seen order. */
export function checkIds(ids: unknown, where: string): number[] {
  if (!Array.isArray(ids)) throw new InputError(`${where}: ids must be an array of process ids`);
  const seen = new Set<number>();
  for (const id of ids) seen.add(checkId(id, where));
  return [...seen];
}

/** Checks a lease owner (a worker id). */
export function checkOwner(owner: unknown, where: string): string {
  if (typeof owner !== 'string' || owner === '') {
    throw new InputError(`${where}: owner must be a non-empty string, got ${JSON.stringify(owner)}`);
  }
  return owner;
}

/** Checks a claim's fencing token (see {@link ClaimResult}): a positive integer. */
export function checkClaim(claim: unknown, where: string): number {
  if (typeof claim !== 'number' || !Number.isSafeInteger(claim) || claim < 1) {
    throw new InputError(`${where}: claim must be a positive integer (a claim's token), got ${JSON.stringify(claim)}`);
  }
  return claim;
}

/** Checks a list of {@link RunClaim}s; returns it without repeats, in first-seen order. */
export function checkRunClaims(runs: unknown, where: string): RunClaim[] {
  if (!Array.isArray(runs)) throw new InputError(`${where}: runs must be an array of {id, claim}`);
  const seen = new Map<string, RunClaim>();
  for (const r of runs as unknown[]) {
    if (typeof r !== 'object' || r === null) throw new InputError(`${where}: a run must be an object {id, claim}`);
    const { id, claim } = r as Partial<RunClaim>;
    const run = { id: checkId(id, where), claim: checkClaim(claim, `${where}: process ${String(id)}`) };
    const key = `${run.id}:${run.claim}`;
    if (!seen.has(key)) seen.set(key, run);
  }
  return [...seen.values()];
}

/** Checks a list of lease owners; returns it deduplicated. */
export function checkOwners(owners: unknown, where: string): string[] {
  if (!Array.isArray(owners)) throw new InputError(`${where}: owners must be an array of worker ids`);
  return [...new Set(owners.map((o) => checkOwner(o, where)))];
}

/** Checks a duration in milliseconds (a lease length or an age). */
export function checkMs(ms: unknown, where: string, name: string): number {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
    throw new InputError(`${where}: ${name} must be a non-negative number of milliseconds, got ${JSON.stringify(ms)}`);
  }
  return Math.round(ms);
}

/** Checks a row limit. */
export function checkLimit(limit: unknown, where: string): number {
  if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1) {
    throw new InputError(`${where}: limit must be a positive integer, got ${JSON.stringify(limit)}`);
  }
  return limit;
}

/** A checked {@link NewProcess} with its JSON already serialized. */
export interface CheckedNewProcess {
  type: string;
  label: string | null;
  parentId: number | null;
  /** `inputs` as JSON text. */
  inputsJson: string;
}

/** Checks a process to create and serializes its inputs. */
export function checkNewProcess(spec: unknown, where: string): CheckedNewProcess {
  if (typeof spec !== 'object' || spec === null) throw new InputError(`${where}: a process spec must be an object`);
  const s = spec as Partial<NewProcess>;
  if (typeof s.type !== 'string' || s.type === '') {
    throw new InputError(`${where}: process type must be a non-empty string, got ${jsonPreview(s.type)}`);
  }
  if (s.label !== undefined && s.label !== null && typeof s.label !== 'string') {
    throw new InputError(`${where}: label of a '${s.type}' process must be a string or null`);
  }
  const parentId = s.parentId === undefined || s.parentId === null ? null : checkId(s.parentId, `${where}: parentId`);
  const inputsJson = checkJsonValue(s.inputs, `${where}: inputs of a '${s.type}' process`, INPUT_LIMITS);
  return { type: s.type, label: s.label ?? null, parentId, inputsJson };
}

/** The columns an outcome writes. */
export interface OutcomeColumns {
  state: 'finished' | 'excepted' | 'killed';
  /** JSON text, or null. */
  outputsJson: string | null;
  exitStatus: number | null;
  exitMessage: string | null;
  exception: string | null;
}

/** Checks an outcome and turns it into column values. */
export function checkOutcome(outcome: unknown, where: string): OutcomeColumns {
  if (typeof outcome !== 'object' || outcome === null) throw new InputError(`${where}: outcome must be an object`);
  const o = outcome as ProcessOutcome;
  const msg = (v: unknown, name: string): string | null => {
    if (v === undefined || v === null) return null;
    if (typeof v !== 'string') throw new InputError(`${where}: ${name} must be a string or null`);
    return v;
  };
  switch (o.state) {
    case 'finished': {
      if (typeof o.exitStatus !== 'number' || !Number.isSafeInteger(o.exitStatus)) {
        throw new InputError(`${where}: exitStatus must be an integer, got ${jsonPreview(o.exitStatus)}`);
      }
      const outputs = o.outputs === undefined ? null : o.outputs;
      const outputsJson = checkJsonValue(outputs, `${where}: outputs`, RESULT_LIMITS);
      return {
        state: 'finished',
        outputsJson: outputs === null ? null : outputsJson,
        exitStatus: o.exitStatus,
        exitMessage: msg(o.exitMessage, 'exitMessage'),
        exception: null,
      };
    }
    case 'excepted':
      if (typeof o.exception !== 'string') throw new InputError(`${where}: exception must be a string`);
      return { state: 'excepted', outputsJson: null, exitStatus: null, exitMessage: null, exception: o.exception };
    case 'killed':
      return {
        state: 'killed',
        outputsJson: null,
        exitStatus: null,
        exitMessage: msg(o.exitMessage, 'exitMessage'),
        exception: null,
      };
    default:
      throw new InputError(
        `${where}: outcome state must be finished, excepted or killed, got ${jsonPreview((o as { state?: unknown }).state)}`,
      );
  }
}

/** Checks a journal entry; returns it with its result serialized. */
export function checkJournalEntry(entry: unknown, where: string): JournalEntry & { resultJson: string } {
  if (typeof entry !== 'object' || entry === null) throw new InputError(`${where}: journal entry must be an object`);
  const e = entry as JournalEntry;
  if (typeof e.seq !== 'number' || !Number.isSafeInteger(e.seq) || e.seq < 0) {
    throw new InputError(`${where}: journal seq must be a non-negative integer, got ${jsonPreview(e.seq)}`);
  }
  if (e.kind !== 'step' && e.kind !== 'submit') {
    throw new InputError(`${where}: journal kind must be 'step' or 'submit', got ${jsonPreview(e.kind)}`);
  }
  if (typeof e.name !== 'string') throw new InputError(`${where}: journal name must be a string`);
  const result = e.result === undefined ? null : e.result;
  const resultJson = checkJsonValue(result, `${where}: the journal result at seq ${e.seq}`, RESULT_LIMITS, false);
  return { seq: e.seq, kind: e.kind, name: e.name, result, resultJson };
}

/** Checks a message (kill message) that may be null. */
export function checkMessage(message: unknown, where: string): string | null {
  if (message === undefined || message === null) return null;
  if (typeof message !== 'string') throw new InputError(`${where}: message must be a string or null`);
  return message;
}

/** A checked {@link ProcessFilter}. */
export interface CheckedFilter {
  ids: number[] | null;
  states: ProcessState[] | null;
  type: string | null;
  parentId: number | null;
  pastDays: number | null;
  modifiedBefore: number | null;
  limit: number | null;
}

/** Checks a {@link ProcessFilter}. */
export function checkFilter(filter: unknown, where: string): CheckedFilter {
  if (filter === undefined || filter === null) {
    return { ids: null, states: null, type: null, parentId: null, pastDays: null, modifiedBefore: null, limit: null };
  }
  if (typeof filter !== 'object') throw new InputError(`${where}: filter must be an object`);
  const f = filter as ProcessFilter;
  let states: ProcessState[] | null = null;
  if (f.states !== undefined) {
    if (!Array.isArray(f.states)) throw new InputError(`${where}: states must be an array`);
    for (const s of f.states) {
      if (!(PROCESS_STATES as readonly unknown[]).includes(s)) {
        throw new InputError(`${where}: unknown state ${JSON.stringify(s)}; states are ${PROCESS_STATES.join(', ')}`);
      }
    }
    states = [...f.states];
  }
  if (f.type !== undefined && typeof f.type !== 'string') throw new InputError(`${where}: type must be a string`);
  const parentId = f.parentId === undefined ? null : checkId(f.parentId, `${where}: parentId`);
  let pastDays: number | null = null;
  if (f.pastDays !== undefined) {
    if (typeof f.pastDays !== 'number' || !Number.isFinite(f.pastDays) || f.pastDays <= 0) {
      throw new InputError(`${where}: pastDays must be a positive number, got ${JSON.stringify(f.pastDays)}`);
    }
    pastDays = f.pastDays;
  }
  let modifiedBefore: number | null = null;
  if (f.modifiedBefore !== undefined) {
    if (typeof f.modifiedBefore !== 'number' || !Number.isFinite(f.modifiedBefore)) {
      throw new InputError(`${where}: modifiedBefore must be a time in ms, got ${JSON.stringify(f.modifiedBefore)}`);
    }
    modifiedBefore = f.modifiedBefore;
  }
  const limit = f.limit === undefined ? null : checkLimit(f.limit, where);
  const ids = f.ids === undefined ? null : checkIds(f.ids, `${where}: ids`);
  return { ids, states, type: f.type ?? null, parentId, pastDays, modifiedBefore, limit };
}

/** The lease columns a claim decision needs. */
export interface LeaseFacts {
  state: ProcessState;
  waiting_on: number;
  lease_owner: string | null;
  lease_expires_at: number | null;
}

/** True when someone holds a lease on the row that has not expired at `now` (ms). */
export function leaseIsLive(r: Pick<LeaseFacts, 'lease_owner' | 'lease_expires_at'>, now: number): boolean {
  return r.lease_owner !== null && r.lease_expires_at !== null && r.lease_expires_at > now;
}

/**
 * Why a claim failed, for a process whose conditional update matched no row (`row` undefined
 * when the process does not exist). The order matters: terminal before leased before waiting;
 * what is left is a paused process.
 */
export function claimRefusal(row: LeaseFacts | undefined, now: number): ClaimResult & { claimed: false } {
  if (row === undefined) return { claimed: false, reason: 'not-found' };
  if (isTerminal(row.state)) return { claimed: false, reason: 'terminal' };
  if (leaseIsLive(row, now)) return { claimed: false, reason: 'leased' };
  if (row.waiting_on > 0) return { claimed: false, reason: 'waiting' };
  return { claimed: false, reason: 'paused' };
}

/** A checked item of `completeMany`. */
export interface CheckedCompletion {
  id: number;
  owner: string;
  claim: number;
  o: OutcomeColumns;
  /** {@link Completion.parentId}: undefined when not given. */
  parentId: number | null | undefined;
}

/** The outcome `o` as stored at `mtime`, its outputs as a read gives them back (see `CompleteResult.stored`). */
export function storedOutcome(o: OutcomeColumns, outputs: JsonValue | null, mtime: number): StoredOutcome {
  return {
    state: o.state,
    outputs,
    exitStatus: o.exitStatus,
    exitMessage: o.exitMessage,
    exception: o.exception,
    mtime,
  };
}

/** Checks the items of `completeMany`. */
export function checkCompletions(items: unknown): CheckedCompletion[] {
  if (!Array.isArray(items)) throw new InputError('completeMany: items must be an array');
  return items.map((it: { id?: unknown; owner?: unknown; claim?: unknown; outcome?: unknown; parentId?: unknown }) => ({
    id: checkId(it.id, 'complete'),
    owner: checkOwner(it.owner, `complete(${String(it.id)})`),
    claim: checkClaim(it.claim, `complete(${String(it.id)})`),
    o: checkOutcome(it.outcome, `complete(${String(it.id)})`),
    parentId:
      it.parentId === undefined || it.parentId === null
        ? it.parentId
        : checkId(it.parentId, `complete(${String(it.id)}): parentId`),
  }));
}

/** The `requestedUpTo` of each id of a `markDispatched` call (see ProcessStore.markDispatched). */
export function checkUpTo(ids: readonly number[], requestedUpTo: unknown, where: string): number[] {
  if (requestedUpTo === undefined) return ids.map(() => Number.MAX_SAFE_INTEGER);
  if (Array.isArray(requestedUpTo)) {
    if (requestedUpTo.length !== ids.length) {
      throw new InputError(`${where}: requestedUpTo has ${requestedUpTo.length} times for ${ids.length} ids`);
    }
    return requestedUpTo.map((t) => checkMs(t, where, 'requestedUpTo'));
  }
  const t = checkMs(requestedUpTo, where, 'requestedUpTo');
  return ids.map(() => t);
}

/**
 * Whether a process may be deleted with its tree (the ids to delete, children before parents) or
 * why not: an active process, or one an active workflow still needs, is never deleted.
 */
export function deleteRefusal(
  row: { id: number; state: ProcessState },
  parent: { id: number; state: ProcessState } | undefined,
  tree: ReadonlyArray<{ id: number; state: ProcessState }>,
): string | number[] {
  if (!isTerminal(row.state)) return `it is ${row.state}`;
  if (parent !== undefined && !isTerminal(parent.state)) {
    return `its parent ${parent.id} is ${parent.state} and still needs its result`;
  }
  const active = tree.find((t) => !isTerminal(t.state));
  if (active !== undefined) return `its descendant ${active.id} is ${active.state}`;
  return tree.map((t) => t.id).reverse();
}

/** Checks a {@link DaemonRegistration}; returns a copy holding only its known fields. */
export function checkRegistration(reg: unknown): DaemonRegistration {
  const where = 'registerDaemon';
  if (typeof reg !== 'object' || reg === null) throw new InputError(`${where}: the registration must be an object`);
  const r = reg as Record<string, unknown>;
  for (const k of ['id', 'host', 'version', 'state'] as const) {
    if (typeof r[k] !== 'string' || r[k] === '' || (r[k] as string).length > 512) {
      throw new InputError(`${where}: ${k} must be a non-empty string of at most 512 characters`);
    }
  }
  for (const k of ['pid', 'startedAt'] as const) {
    if (!Number.isSafeInteger(r[k]) || (r[k] as number) < 0)
      throw new InputError(`${where}: ${k} must be an integer >= 0`);
  }
  if (!Array.isArray(r.workers)) throw new InputError(`${where}: workers must be an array`);
  const workers = (r.workers as unknown[]).map((w, i) => {
    const x = w as Record<string, unknown>;
    if (typeof x !== 'object' || x === null || typeof x.id !== 'string') {
      throw new InputError(`${where}: workers[${i}] must be an object with a string id`);
    }
    for (const k of ['pid', 'slots', 'running'] as const) {
      if (!Number.isSafeInteger(x[k]) || (x[k] as number) < 0) {
        throw new InputError(`${where}: workers[${i}].${k} must be an integer >= 0`);
      }
    }
    return { id: x.id, pid: x.pid as number, slots: x.slots as number, running: x.running as number };
  });
  return {
    id: r.id as string,
    host: r.host as string,
    pid: r.pid as number,
    version: r.version as string,
    state: r.state as string,
    startedAt: r.startedAt as number,
    workers,
  };
}

/** Checks the message and optional {@link ReportPosition} of `addReport`. */
export function checkReport(
  id: number,
  message: unknown,
  at: unknown,
): { message: string; position: number | null; index: number | null } {
  if (typeof message !== 'string') throw new InputError(`addReport(${id}): message must be a string`);
  if (at === undefined || at === null) return { message, position: null, index: null };
  if (typeof at !== 'object')
    throw new InputError(`addReport(${id}): the position must be an object {position, index}`);
  const a = at as Partial<ReportPosition>;
  for (const k of ['position', 'index'] as const) {
    const v = a[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 2_147_483_647) {
      throw new InputError(`addReport(${id}): ${k} must be an integer from 0 to 2147483647, got ${jsonPreview(v)}`);
    }
  }
  return { message, position: a.position!, index: a.index! };
}

/** Checks the name of a shared option (the store does not know the options; config checks values). */
export function checkOptionKey(key: unknown): string {
  if (typeof key !== 'string' || !/^[a-z][a-z0-9_.]{0,99}$/.test(key)) {
    throw new InputError(
      `setSharedOption: the option name must be like 'daemon.lease_seconds', got ${jsonPreview(key)}`,
    );
  }
  return key;
}

/** A row of `store_meta`. */
export interface MetaRow {
  key: string;
  value: string;
  set_at: number | string;
}

/** The store's owner from its `profile_uuid` and `profile_name` rows, or null without the first. */
export function ownerFromRows(rows: readonly MetaRow[]): StoreOwner | null {
  const uuid = rows.find((r) => r.key === 'profile_uuid');
  if (!uuid) return null;
  const name = rows.find((r) => r.key === 'profile_name');
  return { uuid: uuid.value, name: name?.value ?? null, since: Number(uuid.set_at) };
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Checks the arguments of {@link ProcessStore.adoptProfile}. */
export function checkAdoptArgs(uuid: unknown, name: unknown): void {
  if (typeof uuid !== 'string' || !UUID_RE.test(uuid)) {
    throw new InputError(`adoptProfile: uuid must be a UUID string, got ${JSON.stringify(uuid)}`);
  }
  if (typeof name !== 'string' || name === '') {
    throw new InputError(`adoptProfile: name must be a non-empty string, got ${JSON.stringify(name)}`);
  }
}
