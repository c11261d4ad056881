/**
 * The client ⇄ daemon control protocol, version 1.
 *
 * Transport: newline-delimited JSON over the daemon's Unix socket (`<runtimeDir>/daemon.sock`).
 * Each line is one request or one response; a connection may carry any number of requests, which
 * are answered in order. The one exception is a notification of the local bus: a `bus` request
 * without an `id` (`{"v":1,"method":"bus","params":...}`) is handled in its turn and answered with
 * nothing, because its sender (a hint, an ack, state events) has nothing to wait for, and a reply
 * per post cost the daemon a write and the sender a wake-up for each.
 *
 * ```text
 * request   {"v":1,"id":7,"method":"increaseWorkers","params":{"n":2}}
 * response  {"v":1,"id":7,"ok":true,"result":{"numberOfWorkers":3}}
 *        or {"v":1,"id":7,"ok":false,"error":{"code":"PARAMS_INVALID","message":"..."}}
 * ```
 *
 * Everything that crosses the socket is validated here, on both sides: a request that is not JSON,
 * names an unknown method, has bad params or a wrong version gets an error reply (with `id: null`
 * when no id could be read); a line longer than {@link MAX_CONTROL_LINE_BYTES} gets an error reply
 * and the connection is closed (its framing cannot be trusted any more).
 *
 * The request handling is transport-independent: a {@link ControlHandler} maps each method to its
 * result, and {@link handleControlLine} / {@link callControlHandler} wrap it with validation and
 * error mapping, so the D-Bus transport can expose exactly the same methods.
 *
 * @module
 */
import path from 'node:path';
import { ProtocolError } from '../errors/index.js';
import { isJsonObject, isJsonValue, jsonPreview, type JsonObject, type JsonValue } from './json.js';

/** Version of the control protocol this code speaks. */
export const CONTROL_PROTOCOL_VERSION = 1;

/** Longest request or response line, in bytes, not counting the newline. */
export const MAX_CONTROL_LINE_BYTES = 64 * 1024;

/** Most workers a daemon runs (same bound as the `daemon.default_workers` option). */
export const MAX_WORKERS = 256;

/** Name of the control socket in the profile's runtime directory. */
export const DAEMON_SOCKET_FILE = 'daemon.sock';
/** Name of the PID file in the profile's runtime directory. */
export const DAEMON_PID_FILE = 'daemon.pid';
/** Name of the lock file in the profile's runtime directory (never deleted). */
export const DAEMON_LOCK_FILE = 'daemon.lock';
/** Name of the file listing the daemon's live workers, in the runtime directory. */
export const DAEMON_WORKERS_FILE = 'workers.json';
/** Name of the daemon's log file in the profile's log directory. */
export const DAEMON_LOG_FILE = 'daemon.log';

/** The files of a profile's daemon (see docs/daemon.md). */
export interface DaemonFilePaths {
  /** Private (0700) directory holding the socket, PID, lock and workers files. */
  runtimeDir: string;
  socket: string;
  pidFile: string;
  lockFile: string;
  workersFile: string;
  /** Private (0700) directory of the log file. */
  logDir: string;
  logFile: string;
}

/** Paths of the daemon files, given the profile's runtime and log directories (from config/paths). */
export function daemonFilePaths(runtimeDir: string, logDir: string): DaemonFilePaths {
  return {
    runtimeDir,
    socket: path.join(runtimeDir, DAEMON_SOCKET_FILE),
    pidFile: path.join(runtimeDir, DAEMON_PID_FILE),
    lockFile: path.join(runtimeDir, DAEMON_LOCK_FILE),
    workersFile: path.join(runtimeDir, DAEMON_WORKERS_FILE),
    logDir,
    logFile: path.join(logDir, DAEMON_LOG_FILE),
  };
}

/**
 * Exit code of `drover daemon start --foreground` when another daemon of the profile holds the
 * lock. Distinct from 1 (failed) so a starter can tell "lost the race" from "crashed".
 */
export const DAEMON_EXIT_ALREADY_RUNNING = 4;

/** Every method of the protocol. */
export const CONTROL_METHODS = [
  'status',
  'daemonInfo',
  'workerInfo',
  'increaseWorkers',
  'decreaseWorkers',
  'restartWorkers',
  'stop',
] as const;
/** A method of the protocol. */
export type ControlMethod = (typeof CONTROL_METHODS)[number];

/** Stable codes of error replies. */
export const CONTROL_ERROR_CODES = [
  /** The line is not JSON or not a request object. */
  'PROTOCOL_INVALID',
  /** `v` is not a version this daemon speaks. */
  'VERSION_UNSUPPORTED',
  /** `method` is not one of {@link CONTROL_METHODS}. */
  'METHOD_UNKNOWN',
  /** `params` do not fit the method. */
  'PARAMS_INVALID',
  /** The line exceeds {@link MAX_CONTROL_LINE_BYTES}; the connection is closed. */
  'REQUEST_TOO_LARGE',
  /** Too many requests pending on one connection; the connection is closed. */
  'BUSY',
  /** The daemon is stopping and refuses changes. */
  'DAEMON_STOPPING',
  /** The daemon failed while handling the request (a bug; see its log). */
  'INTERNAL_ERROR',
] as const;
/** A stable code of an error reply. */
export type ControlErrorCode = (typeof CONTROL_ERROR_CODES)[number];

/**
 * State of the daemon:
 * - `starting`: the socket listens; not every initial worker has reported ready yet.
 * - `running`: every worker is ready or, after its start, working normally.
 * - `degraded`: at least one worker is crash-looping (see its `lastExit` and `lastError`).
 * - `stopping`: draining workers after SIGTERM/SIGINT or a `stop` request; refuses changes.
 */
export type DaemonState = 'starting' | 'running' | 'degraded' | 'stopping';
const DAEMON_STATES: readonly DaemonState[] = ['starting', 'running', 'degraded', 'stopping'];

/**
 * State of one worker slot:
 * - `starting`: forked; has not sent `ready` yet.
 * - `ready`: connected to the store and broker, taking work.
 * - `draining`: told to stop (decrease, restart, daemon stop); finishing or releasing its processes.
 * - `restarting`: exited unexpectedly; waiting for its back-off delay before being revived.
 * - `crash-looping`: died within 10 s of its start 5 times in a row; still revived, at the
 *   maximum back-off, until one instance lives longer than that.
 */
export type WorkerState = 'starting' | 'ready' | 'draining' | 'restarting' | 'crash-looping';
const WORKER_STATES: readonly WorkerState[] = ['starting', 'ready', 'draining', 'restarting', 'crash-looping'];

/** Who supervises the daemon process. */
export type DaemonSupervisor = 'self' | 'systemd' | 'launchd';
const SUPERVISORS: readonly DaemonSupervisor[] = ['self', 'systemd', 'launchd'];

/** How a worker process ended. */
export interface WorkerExit {
  /** Exit code, or null when killed by a signal. */
  code: number | null;
  /** Signal name (`SIGKILL`), or null. */
  signal: string | null;
  /** When it ended, ms since the epoch. */
  at: number;
  /** How long it had been running, in ms. */
  uptimeMs: number;
}

/** One worker (slot) as reported by the daemon. */
export interface WorkerInfo {
  /** Slot name shown to users, `w1`, `w2`, ... */
  id: string;
  /** Identity of the current worker process in the store (lease owner), or null between lives. */
  workerId: string | null;
  /** OS process id, or null while waiting to be revived. */
  pid: number | null;
  state: WorkerState;
  /** When the current process started, ms since the epoch; null between lives. */
  startedAt: number | null;
  /** How many times this slot's worker was revived after dying unexpectedly. */
  restarts: number;
  /** Resident memory in bytes (sampled about once a second), or null when unknown. */
  memoryRss: number | null;
  /** CPU use in percent of one core over the last sample interval, or null when unknown. */
  cpuPercent: number | null;
  /** Processes the worker is running now (from its last `stats` report). */
  running: number;
  /** Process slots of the worker (`daemon.worker_process_slots`), or null before its first report. */
  slots: number | null;
  /** How the previous process of this slot ended, or null. */
  lastExit: WorkerExit | null;
  /** The last `fatal` message of this slot's worker, or null. */
  lastError: string | null;
  /** The last lines the slot's worker wrote to stdout/stderr (only filled when it crash-loops or died). */
  lastLines: string[];
}

/**
 * A module the workers import (an entry of `processes.modules`) and the identity of its file when
 * they did, so a client can tell that the file changed on disk since.
 */
export interface ModuleRecord {
  /** The entry as written in `processes.modules` (an absolute path or a package name). */
  spec: string;
  /** The file it resolved to, or null when it could not be resolved (the workers fail to load it). */
  path: string | null;
  /** Modification time of that file in ms since the epoch; null when it could not be read. */
  mtimeMs: number | null;
  /** Size of that file in bytes; null when it could not be read. */
  size: number | null;
}

/**
 * What a running daemon loaded, recorded as AiiDA records a daemon's environment: its version and
 * Node.js, the configuration file and option values it started with, and the process modules its
 * workers imported, so `drover daemon status` can warn when the disk no longer matches.
 */
export interface DaemonEnvironment {
  /** Drover version of the daemon. */
  version: string;
  /** Node.js version of the daemon. */
  node: string;
  /** The configuration file the daemon read its profile from. */
  configFile: string;
  /** The profile's effective option values when the daemon started. */
  options: Record<string, JsonValue>;
  /** `processes.modules` as the workers imported them when all of them last (re)started. */
  modules: ModuleRecord[];
  /** When `modules` was recorded, ms since the epoch. */
  modulesRecordedAt: number;
}

/** Result of `status`. */
export interface DaemonStatus {
  profile: string;
  pid: number;
  /** ms since the epoch. */
  startedAt: number;
  state: DaemonState;
  supervisor: DaemonSupervisor;
  /** Number of workers the daemon keeps (draining ones excluded). */
  numberOfWorkers: number;
  /** Processes running in all workers. */
  runningProcesses: number;
  workers: WorkerInfo[];
  /** What the daemon loaded; absent from a daemon that does not report it. */
  environment?: DaemonEnvironment | null;
  /**
   * The profile's outbox as the daemon last counted it (every few seconds); null when the store
   * could not be read; absent from a daemon that does not report it.
   */
  outbox?: OutboxBacklog | null;
}

/** Processes waiting to be dispatched or claimed, from the store (see {@link DaemonStatus.outbox}). */
export interface OutboxBacklog {
  /**
   * Processes whose dispatch is pending: stored but not yet handed to RabbitMQ (the broker is down
   * or slow), or on the local bus not yet taken by a worker. Paused ones are not counted.
   */
  pending: number;
  /** RabbitMQ: processes handed to the broker and not yet claimed by a worker (queued). Local bus: 0. */
  unclaimed: number;
  /** When it was counted, ms since the epoch. */
  countedAt: number;
}

/** Result of `daemonInfo`. */
export interface DaemonInfo {
  profile: string;
  profileUuid: string;
  pid: number;
  startedAt: number;
  state: DaemonState;
  supervisor: DaemonSupervisor;
  /** Drover version of the daemon. */
  version: string;
  /** Node.js version of the daemon. */
  node: string;
  protocolVersion: number;
  runtimeDir: string;
  socket: string;
  pidFile: string;
  lockFile: string;
  logFile: string;
  /** Resident memory of the daemon process, bytes. */
  memoryRss: number;
  /** What the daemon loaded; absent from a daemon that does not report it. */
  environment?: DaemonEnvironment | null;
}

/** Params of each method. */
export interface ControlParams {
  status: Record<string, never>;
  daemonInfo: Record<string, never>;
  workerInfo: Record<string, never>;
  increaseWorkers: { n: number };
  decreaseWorkers: { n: number };
  restartWorkers: Record<string, never>;
  stop: Record<string, never>;
}

/** Result of each method. */
export interface ControlResults {
  status: DaemonStatus;
  daemonInfo: DaemonInfo;
  workerInfo: { workers: WorkerInfo[] };
  increaseWorkers: { numberOfWorkers: number };
  decreaseWorkers: { numberOfWorkers: number };
  restartWorkers: { numberOfWorkers: number; restarted: number };
  stop: { stopping: true };
}

/** A request id: whatever the client chose, echoed in the response. */
export type ControlRequestId = string | number;

/** A validated request. */
export type ControlRequest = {
  [M in ControlMethod]: { v: 1; id: ControlRequestId; method: M; params: ControlParams[M] };
}[ControlMethod];

/** An error reply's payload. */
export interface ControlErrorBody {
  code: string;
  message: string;
}

/** A response line. `id` is null when the request's id could not be read. */
export type ControlResponse =
  | { v: 1; id: ControlRequestId | null; ok: true; result: unknown }
  | { v: 1; id: ControlRequestId | null; ok: false; error: ControlErrorBody };

/**
 * What the daemon does for each method, independent of the transport (socket or D-Bus).
 * A method rejects with a {@link ControlError} (or any error with a string `code`) to send that
 * code to the client; anything else becomes `INTERNAL_ERROR`.
 */
export type ControlHandler = { [M in ControlMethod]: (params: ControlParams[M]) => Promise<ControlResults[M]> };

/** An error the daemon reports to the client with a stable code. */
export class ControlError extends ProtocolError {
  override readonly code: string;
  constructor(code: ControlErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

function isRequestId(v: unknown): v is ControlRequestId {
  return (typeof v === 'string' && v.length <= 200) || (typeof v === 'number' && Number.isSafeInteger(v));
}

function isControlMethod(v: unknown): v is ControlMethod {
  return typeof v === 'string' && (CONTROL_METHODS as readonly string[]).includes(v);
}

/**
 * Validates the params of `method`. Unknown keys are rejected, so a typo never silently does
 * something else.
 * @throws ControlError `PARAMS_INVALID` naming the method and the problem.
 */
export function validateControlParams<M extends ControlMethod>(method: M, raw: unknown): ControlParams[M] {
  const params = raw === undefined || raw === null ? {} : raw;
  if (!isJsonObject(params)) {
    throw new ControlError('PARAMS_INVALID', `${method}: params must be an object, got ${describe(raw)}`);
  }
  const keys = Object.keys(params);
  if (method === 'increaseWorkers' || method === 'decreaseWorkers') {
    const extra = keys.filter((k) => k !== 'n');
    if (extra.length > 0) throw new ControlError('PARAMS_INVALID', `${method}: unknown param '${extra[0]}'`);
    const n = params.n;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_WORKERS) {
      throw new ControlError(
        'PARAMS_INVALID',
        `${method}: param 'n' must be an integer from 1 to ${MAX_WORKERS}, got ${describe(n)}`,
      );
    }
    return { n } as ControlParams[M];
  }
  if (keys.length > 0) throw new ControlError('PARAMS_INVALID', `${method}: takes no params, got '${keys[0]}'`);
  return {} as ControlParams[M];
}

/** A short preview of a value for a message; bounded and iterative, so any value a line can hold is fine. */
function describe(v: unknown): string {
  return v === undefined ? 'nothing' : jsonPreview(v, 60);
}

/**
 * Parses and validates one request (already JSON-decoded).
 * @throws ControlError with the code to reply with; its `requestId` is the id when one was readable.
 */
export function parseControlRequest(raw: unknown): ControlRequest {
  if (!isJsonObject(raw))
    throw new ControlError('PROTOCOL_INVALID', `a request must be a JSON object, got ${describe(raw)}`);
  if (!isRequestId(raw.id)) {
    throw new ControlError(
      'PROTOCOL_INVALID',
      `'id' must be a string (up to 200 chars) or an integer, got ${describe(raw.id)}`,
    );
  }
  if (raw.v !== CONTROL_PROTOCOL_VERSION) {
    throw new ControlError(
      'VERSION_UNSUPPORTED',
      `protocol version ${describe(raw.v)} is not supported (this daemon speaks v${CONTROL_PROTOCOL_VERSION})`,
    );
  }
  if (!isControlMethod(raw.method)) {
    throw new ControlError(
      'METHOD_UNKNOWN',
      `unknown method ${describe(raw.method)}; known methods: ${CONTROL_METHODS.join(', ')}`,
    );
  }
  const extra = Object.keys(raw).filter((k) => !['v', 'id', 'method', 'params'].includes(k));
  if (extra.length > 0) throw new ControlError('PROTOCOL_INVALID', `unknown request field '${extra[0]}'`);
  const params = validateControlParams(raw.method, raw.params);
  return { v: 1, id: raw.id, method: raw.method, params } as ControlRequest;
}

/** Encodes a request as one line (with the trailing newline). */
export function encodeControlRequest<M extends ControlMethod>(
  id: ControlRequestId,
  method: M,
  params: ControlParams[M],
): string {
  return JSON.stringify({ v: CONTROL_PROTOCOL_VERSION, id, method, params }) + '\n';
}

/** Encodes a response as one line (with the trailing newline). */
export function encodeControlResponse(response: ControlResponse): string {
  return JSON.stringify(response) + '\n';
}

/** An error reply. */
export function controlErrorResponse(id: ControlRequestId | null, code: string, message: string): ControlResponse {
  return { v: 1, id, ok: false, error: { code, message } };
}

/** Why the hub refused a bus message: a malformed one is the sender's fault, not an internal error. */
function busErrorBody(err: unknown): ControlErrorBody {
  const b = errorBody(err);
  return b.code === 'PROTOCOL_INVALID' ? { code: 'PARAMS_INVALID', message: b.message } : b;
}

/** The code and message to send for an error thrown by a handler. */
function errorBody(err: unknown): ControlErrorBody {
  if (err instanceof Error && typeof (err as { code?: unknown }).code === 'string') {
    return { code: (err as unknown as { code: string }).code, message: err.message };
  }
  return { code: 'INTERNAL_ERROR', message: err instanceof Error ? err.message : String(err) };
}

/**
 * Calls the handler for an already validated method and params, turning a rejection into an
 * error body. For transports that carry method and params themselves (D-Bus).
 */
export async function callControlHandler<M extends ControlMethod>(
  handler: ControlHandler,
  method: M,
  params: ControlParams[M],
): Promise<{ ok: true; result: ControlResults[M] } | { ok: false; error: ControlErrorBody }> {
  try {
    const fn = handler[method] as (p: ControlParams[M]) => Promise<ControlResults[M]>;
    return { ok: true, result: await fn.call(handler, params) };
  } catch (err) {
    return { ok: false, error: errorBody(err) };
  }
}

/**
 * The method of the local message bus (see protocol/bus.ts). It is carried by the socket only, not
 * by D-Bus: its peers keep a connection open and receive pushed lines `{"v":1,"bus":...}`.
 */
export const BUS_METHOD = 'bus';

/**
 * Handles the `bus` method for one connection: gets the params (validated by the handler, which
 * throws a ControlError or ProtocolError for bad ones) and returns the result.
 */
export type BusMethodHandler = (params: unknown) => unknown;

/**
 * Handles one request line end to end: JSON decoding, validation, the handler call and error
 * mapping. Never rejects: every outcome is a response, except for a bus notification (a
 * {@link BUS_METHOD} request without an `id`), which gets none: null, and a notification the hub
 * refused is handed to `onRefused` (the daemon logs it; its sender expects no answer). `bus`
 * handles the {@link BUS_METHOD} (absent: that method is unknown).
 */
export async function handleControlLine(
  handler: ControlHandler,
  line: string,
  bus?: BusMethodHandler,
  onRefused?: (error: ControlErrorBody) => void,
): Promise<ControlResponse | null> {
  const decoded = decodeControlLine(line);
  return 'error' in decoded ? decoded.error : handleDecodedLine(handler, decoded.raw, bus, onRefused);
}

/** A request line decoded from JSON (not validated yet), or the error reply to a line that is not JSON. */
export function decodeControlLine(line: string): { raw: unknown } | { error: ControlResponse } {
  try {
    return { raw: JSON.parse(line) as unknown };
  } catch {
    return { error: controlErrorResponse(null, 'PROTOCOL_INVALID', `request is not valid JSON: ${describe(line)}`) };
  }
}

/** True for a bus notification: a {@link BUS_METHOD} request without an `id`, answered with nothing. */
export function isBusNotification(raw: unknown): raw is JsonObject {
  return isJsonObject(raw) && raw.method === BUS_METHOD && !('id' in raw) && raw.v === CONTROL_PROTOCOL_VERSION;
}

/** {@link handleControlLine} for a line already decoded by {@link decodeControlLine}. */
export async function handleDecodedLine(
  handler: ControlHandler,
  raw: unknown,
  bus?: BusMethodHandler,
  onRefused?: (error: ControlErrorBody) => void,
): Promise<ControlResponse | null> {
  if (bus && isBusNotification(raw)) {
    try {
      await bus(raw.params);
    } catch (err) {
      onRefused?.(busErrorBody(err));
    }
    return null;
  }
  const id = isJsonObject(raw) && isRequestId(raw.id) ? raw.id : null;
  if (bus && isJsonObject(raw) && raw.method === BUS_METHOD && id !== null && raw.v === CONTROL_PROTOCOL_VERSION) {
    try {
      return { v: 1, id, ok: true, result: (await bus(raw.params)) ?? {} };
    } catch (err) {
      const b = busErrorBody(err);
      return controlErrorResponse(id, b.code, b.message);
    }
  }
  let request: ControlRequest;
  try {
    request = parseControlRequest(raw);
  } catch (err) {
    return controlErrorResponse(id, ...codeAndMessage(err));
  }
  const outcome = await callControlHandler(handler, request.method, request.params);
  return outcome.ok
    ? { v: 1, id: request.id, ok: true, result: outcome.result }
    : { v: 1, id: request.id, ok: false, error: outcome.error };
}

function codeAndMessage(err: unknown): [string, string] {
  const b = errorBody(err);
  return [b.code, b.message];
}

/**
 * Parses a response line (client side).
 * @throws ProtocolError when the line is not a valid response.
 */
export function parseControlResponse(line: string): ControlResponse {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    throw new ProtocolError(`daemon reply is not valid JSON: ${describe(line)}`);
  }
  if (!isJsonObject(raw)) throw new ProtocolError('daemon reply is not a JSON object');
  if (raw.v !== CONTROL_PROTOCOL_VERSION) {
    throw new ProtocolError(`daemon replied with protocol version ${describe(raw.v)}; this client speaks v1`);
  }
  const id = raw.id === null ? null : isRequestId(raw.id) ? raw.id : undefined;
  if (id === undefined) throw new ProtocolError(`daemon reply has an invalid id ${describe(raw.id)}`);
  if (raw.ok === true) return { v: 1, id, ok: true, result: raw.result as JsonValue };
  if (raw.ok === false && isJsonObject(raw.error)) {
    const { code, message } = raw.error;
    if (typeof code === 'string' && typeof message === 'string')
      return { v: 1, id, ok: false, error: { code, message } };
  }
  throw new ProtocolError('daemon reply has neither a result nor a valid error');
}

// ---- result validation (client side): a daemon of another version must not be trusted blindly ----

type Checker<T> = (v: unknown, where: string) => T;

function fail(where: string, expected: string, got: unknown): never {
  throw new ProtocolError(`daemon reply: ${where} must be ${expected}, got ${describe(got)}`);
}
const num: Checker<number> = (v, w) => (typeof v === 'number' && Number.isFinite(v) ? v : fail(w, 'a number', v));
const str: Checker<string> = (v, w) => (typeof v === 'string' ? v : fail(w, 'a string', v));
const nullable =
  <T>(c: Checker<T>): Checker<T | null> =>
  (v, w) =>
    v === null || v === undefined ? null : c(v, w);
const oneOf =
  <T extends string>(choices: readonly T[]): Checker<T> =>
  (v, w) =>
    typeof v === 'string' && (choices as readonly string[]).includes(v) ? (v as T) : fail(w, choices.join('|'), v);
function obj(v: unknown, w: string): Record<string, unknown> {
  return isJsonObject(v) ? v : fail(w, 'an object', v);
}

function parseWorkerExit(v: unknown, w: string): WorkerExit | null {
  if (v === null || v === undefined) return null;
  const o = obj(v, w);
  return {
    code: nullable(num)(o.code, `${w}.code`),
    signal: nullable(str)(o.signal, `${w}.signal`),
    at: num(o.at, `${w}.at`),
    uptimeMs: num(o.uptimeMs, `${w}.uptimeMs`),
  };
}

/** Validates a {@link WorkerInfo} received from the daemon. */
export function parseWorkerInfo(v: unknown, w = 'worker'): WorkerInfo {
  const o = obj(v, w);
  const lines = Array.isArray(o.lastLines) ? o.lastLines.filter((x): x is string => typeof x === 'string') : [];
  return {
    id: str(o.id, `${w}.id`),
    workerId: nullable(str)(o.workerId, `${w}.workerId`),
    pid: nullable(num)(o.pid, `${w}.pid`),
    state: oneOf(WORKER_STATES)(o.state, `${w}.state`),
    startedAt: nullable(num)(o.startedAt, `${w}.startedAt`),
    restarts: num(o.restarts, `${w}.restarts`),
    memoryRss: nullable(num)(o.memoryRss, `${w}.memoryRss`),
    cpuPercent: nullable(num)(o.cpuPercent, `${w}.cpuPercent`),
    running: num(o.running, `${w}.running`),
    slots: nullable(num)(o.slots, `${w}.slots`),
    lastExit: parseWorkerExit(o.lastExit, `${w}.lastExit`),
    lastError: nullable(str)(o.lastError, `${w}.lastError`),
    lastLines: lines,
  };
}

function parseWorkers(v: unknown, w: string): WorkerInfo[] {
  if (!Array.isArray(v)) fail(w, 'an array', v);
  return (v as unknown[]).map((x, i) => parseWorkerInfo(x, `${w}[${i}]`));
}

function parseModuleRecord(v: unknown, w: string): ModuleRecord {
  const o = obj(v, w);
  return {
    spec: str(o.spec, `${w}.spec`),
    path: nullable(str)(o.path, `${w}.path`),
    mtimeMs: nullable(num)(o.mtimeMs, `${w}.mtimeMs`),
    size: nullable(num)(o.size, `${w}.size`),
  };
}

/**
 * Validates a {@link DaemonEnvironment}; absent (a daemon that does not report one) is null.
 * @throws ProtocolError naming the field that does not fit.
 */
export function parseDaemonEnvironment(v: unknown, w = 'environment'): DaemonEnvironment | null {
  if (v === undefined || v === null) return null;
  const o = obj(v, w);
  const options = obj(o.options, `${w}.options`);
  for (const [k, x] of Object.entries(options)) if (!isJsonValue(x)) fail(`${w}.options.${k}`, 'a JSON value', x);
  if (!Array.isArray(o.modules)) fail(`${w}.modules`, 'an array', o.modules);
  return {
    version: str(o.version, `${w}.version`),
    node: str(o.node, `${w}.node`),
    configFile: str(o.configFile, `${w}.configFile`),
    options: options as Record<string, JsonValue>,
    modules: (o.modules as unknown[]).map((m, i) => parseModuleRecord(m, `${w}.modules[${i}]`)),
    modulesRecordedAt: num(o.modulesRecordedAt, `${w}.modulesRecordedAt`),
  };
}

/** The `environment` field of a result: left out when the daemon did not report one. */
function withEnvironment(environment: DaemonEnvironment | null): { environment?: DaemonEnvironment } {
  return environment === null ? {} : { environment };
}

/** Validates {@link DaemonStatus.outbox}: absent stays absent, null stays null. */
function withOutbox(v: unknown, w: string): { outbox?: OutboxBacklog | null } {
  if (v === undefined) return {};
  if (v === null) return { outbox: null };
  const o = obj(v, w);
  const count = (x: unknown, name: string): number => {
    const n = num(x, `${w}.${name}`);
    return Number.isSafeInteger(n) && n >= 0 ? n : fail(`${w}.${name}`, 'a count', x);
  };
  return {
    outbox: {
      pending: count(o.pending, 'pending'),
      unclaimed: count(o.unclaimed, 'unclaimed'),
      countedAt: num(o.countedAt, `${w}.countedAt`),
    },
  };
}

/** Validates a {@link DaemonStatus} received from the daemon. */
export function parseDaemonStatus(v: unknown): DaemonStatus {
  const o = obj(v, 'status');
  return {
    profile: str(o.profile, 'status.profile'),
    pid: num(o.pid, 'status.pid'),
    startedAt: num(o.startedAt, 'status.startedAt'),
    state: oneOf(DAEMON_STATES)(o.state, 'status.state'),
    supervisor: oneOf(SUPERVISORS)(o.supervisor, 'status.supervisor'),
    numberOfWorkers: num(o.numberOfWorkers, 'status.numberOfWorkers'),
    runningProcesses: num(o.runningProcesses, 'status.runningProcesses'),
    workers: parseWorkers(o.workers, 'status.workers'),
    ...withEnvironment(parseDaemonEnvironment(o.environment, 'status.environment')),
    ...withOutbox(o.outbox, 'status.outbox'),
  };
}

/** Validates a {@link DaemonInfo} received from the daemon. */
export function parseDaemonInfo(v: unknown): DaemonInfo {
  const o = obj(v, 'daemonInfo');
  const s = (k: string): string => str(o[k], `daemonInfo.${k}`);
  const n = (k: string): number => num(o[k], `daemonInfo.${k}`);
  return {
    profile: s('profile'),
    profileUuid: s('profileUuid'),
    pid: n('pid'),
    startedAt: n('startedAt'),
    state: oneOf(DAEMON_STATES)(o.state, 'daemonInfo.state'),
    supervisor: oneOf(SUPERVISORS)(o.supervisor, 'daemonInfo.supervisor'),
    version: s('version'),
    node: s('node'),
    protocolVersion: n('protocolVersion'),
    runtimeDir: s('runtimeDir'),
    socket: s('socket'),
    pidFile: s('pidFile'),
    lockFile: s('lockFile'),
    logFile: s('logFile'),
    memoryRss: n('memoryRss'),
    ...withEnvironment(parseDaemonEnvironment(o.environment, 'daemonInfo.environment')),
  };
}

/** Validates the result of `method` received from the daemon. */
export function parseControlResult<M extends ControlMethod>(method: M, v: unknown): ControlResults[M] {
  switch (method) {
    case 'status':
      return parseDaemonStatus(v) as ControlResults[M];
    case 'daemonInfo':
      return parseDaemonInfo(v) as ControlResults[M];
    case 'workerInfo':
      return { workers: parseWorkers(obj(v, 'workerInfo').workers, 'workerInfo.workers') } as ControlResults[M];
    case 'increaseWorkers':
    case 'decreaseWorkers':
      return { numberOfWorkers: num(obj(v, method).numberOfWorkers, `${method}.numberOfWorkers`) } as ControlResults[M];
    case 'restartWorkers': {
      const o = obj(v, method);
      return {
        numberOfWorkers: num(o.numberOfWorkers, 'restartWorkers.numberOfWorkers'),
        restarted: num(o.restarted, 'restartWorkers.restarted'),
      } as ControlResults[M];
    }
    case 'stop':
      return { stopping: true } as ControlResults[M];
    default:
      throw new ProtocolError(`unknown method ${describe(method)}`);
  }
}

// ---- framing ----

/**
 * Splits a byte stream into lines, enforcing a maximum line length while reading (an endless
 * line without a newline is detected as soon as it passes the limit, not after it was buffered
 * whole). Lines are decoded as UTF-8; a trailing `\r` is dropped.
 */
export class LineSplitter {
  private parts: Buffer[] = [];
  private size = 0;
  private overflowed = false;

  constructor(private readonly maxLineBytes: number = MAX_CONTROL_LINE_BYTES) {}

  /** True once a line exceeded the limit; the splitter returns nothing after that. */
  get overflow(): boolean {
    return this.overflowed;
  }

  /** Feeds a chunk; returns the complete lines in it. Check {@link overflow} afterwards. */
  push(chunk: Buffer): string[] {
    if (this.overflowed) return [];
    const lines: string[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl === -1) break;
      const piece = chunk.subarray(start, nl);
      if (this.size + piece.length > this.maxLineBytes) {
        this.overflowed = true;
        this.parts = [];
        return lines;
      }
      this.parts.push(piece);
      let line = Buffer.concat(this.parts).toString('utf8');
      if (line.endsWith('\r')) line = line.slice(0, -1);
      lines.push(line);
      this.parts = [];
      this.size = 0;
      start = nl + 1;
    }
    const rest = chunk.subarray(start);
    if (rest.length > 0) {
      if (this.size + rest.length > this.maxLineBytes) {
        this.overflowed = true;
        this.parts = [];
        return lines;
      }
      // Copy: the caller's buffer may be reused.
      this.parts.push(Buffer.from(rest));
      this.size += rest.length;
    }
    return lines;
  }

  /** Bytes of an incomplete line held. */
  get pendingBytes(): number {
    return this.size;
  }
}

// ---- PID file ----

/** Content of `<runtimeDir>/daemon.pid` (JSON, written atomically, 0600). */
export interface DaemonPidFile {
  v: 1;
  pid: number;
  /** Start identity of the daemon process (see util/proc processStartIdentity): detects PID reuse. */
  start: string;
  profile: string;
  /** ms since the epoch. */
  startedAt: number;
}

/** Parses a PID file; returns null for anything that is not a valid one (a torn or foreign file). */
export function parseDaemonPidFile(text: string): DaemonPidFile | null {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isJsonObject(raw) || raw.v !== 1) return null;
  const { pid, start, profile, startedAt } = raw;
  if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid <= 0) return null;
  if (typeof start !== 'string' || typeof profile !== 'string' || typeof startedAt !== 'number') return null;
  return { v: 1, pid, start, profile, startedAt };
}

/** One entry of `<runtimeDir>/workers.json`: a worker process of the daemon and its store identity. */
export interface WorkerRecord {
  workerId: string;
  pid: number;
  start: string;
}

/** Parses `workers.json`; returns [] for anything invalid. */
export function parseWorkerRecords(text: string): WorkerRecord[] {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return [];
  }
  if (!isJsonObject(raw) || !Array.isArray(raw.workers)) return [];
  const out: WorkerRecord[] = [];
  for (const w of raw.workers) {
    if (!isJsonObject(w)) continue;
    if (typeof w.workerId === 'string' && typeof w.pid === 'number' && typeof w.start === 'string') {
      out.push({ workerId: w.workerId, pid: w.pid, start: w.start });
    }
  }
  return out;
}
