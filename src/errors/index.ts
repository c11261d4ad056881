/**
 * Errors of Drover. Every error is a class with a stable `code` string (match on `code` or
 * `instanceof`, never on message text) and an optional `cause`.
 *
 * @module
 */

/** Options accepted by every Drover error. */
export interface DroverErrorOptions {
  cause?: unknown;
}

/** Base class of all errors Drover throws on purpose. */
export class DroverError extends Error {
  /** A stable, machine-readable identifier of the kind of error. */
  readonly code: string = 'DROVER_ERROR';

  constructor(message: string, options: DroverErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
  }
}

/** The configuration file or an option value is invalid. Nothing was changed. */
export class ConfigError extends DroverError {
  override readonly code: string = 'CONFIG_INVALID';
}

/** A profile name is not allowed, or the profile does not exist. */
export class ProfileError extends DroverError {
  override readonly code: string = 'PROFILE_INVALID';
}

/** The named profile does not exist. */
export class ProfileNotFoundError extends ProfileError {
  override readonly code: string = 'PROFILE_NOT_FOUND';
}

/** Input given by a user (flags, process inputs, a process type) is invalid. */
export class InputError extends DroverError {
  override readonly code: string = 'INPUT_INVALID';
}

/**
 * A JSON value (process inputs, outputs, a step result) nests deeper or is larger than Drover's
 * limits (see docs/processes.md); the message names the limit.
 */
export class JsonLimitError extends InputError {
  override readonly code: string = 'JSON_LIMIT_EXCEEDED';
}

/** A message that crossed a boundary (socket, IPC, broker) does not match the protocol. */
export class ProtocolError extends DroverError {
  override readonly code: string = 'PROTOCOL_INVALID';
}

/**
 * A file or directory Drover would trust (the runtime directory, a process module) could have been
 * planted or replaced by another local user; nothing was used or changed. The message names the
 * path, what is wrong and what to do.
 */
export class UnsafePathError extends DroverError {
  override readonly code: string = 'PATH_UNSAFE';
}

/** The process store failed or is unreachable. */
export class StoreError extends DroverError {
  override readonly code: string = 'STORE_ERROR';
}

/** Options of {@link StoreUnavailableError}. */
export interface StoreUnavailableErrorOptions extends DroverErrorOptions {
  /** See {@link StoreUnavailableError.maybeApplied}; default false. */
  maybeApplied?: boolean;
}

/**
 * The store could not do an operation for a reason that passes: the database server is down,
 * restarting or refusing connections, the connection broke, the file stayed locked past the busy
 * timeout, or an I/O error occurred. The input was fine: the same call may succeed later. Callers
 * tell "retry" from "your input is wrong" by this class (or its `code`), never by the message.
 *
 * The adapters already retry, for a while, every call that is safe to repeat; this error means
 * that time ran out, or that repeating the call could apply it twice (see `maybeApplied`).
 */
export class StoreUnavailableError extends StoreError {
  override readonly code: string = 'STORE_UNAVAILABLE';
  /** Always true: the operation may be retried. */
  readonly retryable = true;
  /**
   * True when the connection broke after a write was sent and before its result came back, so the
   * write may have been committed. A caller that repeats such a write must make sure that applying
   * it twice does no harm. False when nothing was written.
   */
  readonly maybeApplied: boolean;

  constructor(message: string, options: StoreUnavailableErrorOptions = {}) {
    super(message, options);
    this.maybeApplied = options.maybeApplied ?? false;
  }
}

/**
 * The store's disk (or the database server's) is full. Nothing was written; retry once space has
 * been freed.
 */
export class StoreFullError extends StoreUnavailableError {
  override readonly code: string = 'STORE_DISK_FULL';
}

/** True when `err` is a store error worth retrying later ({@link StoreUnavailableError}). */
export function isRetryableStoreError(err: unknown): err is StoreUnavailableError {
  return err instanceof StoreUnavailableError;
}

/** The store's schema was written by a newer version of Drover. */
export class StoreVersionError extends StoreError {
  override readonly code: string = 'STORE_VERSION';
}

/**
 * The store belongs to another profile (it records the uuid of the profile that first consumed
 * it): a daemon or worker of this profile refuses to consume from it. The message names the store,
 * both profiles and what to do.
 */
export class StoreProfileMismatchError extends StoreError {
  override readonly code: string = 'STORE_PROFILE_MISMATCH';
}

/** The broker failed or is unreachable. */
export class BrokerError extends DroverError {
  override readonly code: string = 'BROKER_ERROR';
}

/** No process with the given id exists. */
export class ProcessNotFoundError extends DroverError {
  override readonly code: string = 'PROCESS_NOT_FOUND';
}

/** A process type is not registered with the worker or the submitter. */
export class UnknownProcessTypeError extends InputError {
  override readonly code: string = 'PROCESS_TYPE_UNKNOWN';
}

/** A replayed process took a different path than its journal records. */
export class NonDeterminismError extends DroverError {
  override readonly code: string = 'NON_DETERMINISTIC_REPLAY';
}

/** Raised when a call to the daemon fails. Base class of the daemon errors. */
export class DaemonException extends DroverError {
  override readonly code: string = 'DAEMON_ERROR';
}

/** The daemon of the profile is not running; raised at once, without waiting for a timeout. */
export class DaemonNotRunningException extends DaemonException {
  override readonly code: string = 'DAEMON_NOT_RUNNING';
}

/** The daemon did not answer within the timeout. */
export class DaemonTimeoutException extends DaemonException {
  override readonly code: string = 'DAEMON_TIMEOUT';
}

/** `startDaemon` found the profile's daemon already running (or lost the race to start it). */
export class DaemonAlreadyRunningException extends DaemonException {
  override readonly code: string = 'DAEMON_ALREADY_RUNNING';
}

/** A wait for processes (to terminate, to react to a request) ran out of time; nothing was undone. */
export class WaitTimeoutError extends DroverError {
  override readonly code: string = 'WAIT_TIMEOUT';
}

/** The service manager (systemd, launchd) failed or is not available. */
export class ServiceError extends DroverError {
  override readonly code: string = 'SERVICE_ERROR';
}

/** Returns the message of any thrown value. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * The caller no longer holds the lease on a process it tried to change (its lease expired and was
 * taken over, or was released): it must stop running the process. Nothing was written.
 */
export class LeaseLostError extends StoreError {
  override readonly code: string = 'STORE_LEASE_LOST';
}
