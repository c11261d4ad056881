/**
 * The exit codes every drover command follows (docs/commands.md has the same table for users).
 * oclif-free, so the fast paths in bin/drover.js use the very same codes.
 *
 * | code | name              | meaning                                                                 |
 * | ---- | ----------------- | ----------------------------------------------------------------------- |
 * | 0    | `OK`              | done                                                                    |
 * | 1    | `FAILED`          | the command failed; `Error: ...` on stderr says why                     |
 * | 2    | `USAGE`           | unknown command or flag, missing or invalid argument                    |
 * | 3    | `UNREACHABLE`     | the daemon is not running, or the store or broker cannot be reached     |
 * | 4    | `ALREADY_RUNNING` | `daemon start`: the profile's daemon is already running                 |
 * | 5    | `TIMED_OUT`       | the daemon did not answer, or a process did not react, within the timeout |
 * | 6    | `PROCESS_FAILED`  | a waited-for process finished with a non-zero exit status               |
 * | 7    | `PROCESS_EXCEPTED`| a waited-for process excepted or was killed                             |
 *
 * 4 is also the exit code of the daemon process itself when another daemon holds the profile
 * (`DAEMON_EXIT_ALREADY_RUNNING`, which the systemd unit's `RestartPreventExitStatus=4` names).
 *
 * @module
 */
import {
  BrokerError,
  DaemonAlreadyRunningException,
  DaemonNotRunningException,
  DaemonTimeoutException,
  WaitTimeoutError,
} from '../errors/index.js';

/** The exit codes of drover commands. */
export const EXIT = {
  OK: 0,
  FAILED: 1,
  USAGE: 2,
  UNREACHABLE: 3,
  ALREADY_RUNNING: 4,
  TIMED_OUT: 5,
  PROCESS_FAILED: 6,
  PROCESS_EXCEPTED: 7,
} as const;

/** One of {@link EXIT}. */
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** Exit code used when something the command checks is not reachable or not running. */
export const EXIT_UNREACHABLE = EXIT.UNREACHABLE;

/** Exit code of usage errors (unknown flag, missing argument), as oclif uses it. */
export const EXIT_USAGE = EXIT.USAGE;

/** The exit code a command ends with when `err` escapes it (a usage error is the caller's to map). */
export function exitCodeOf(err: unknown): ExitCode {
  if (err instanceof DaemonNotRunningException || err instanceof BrokerError) return EXIT.UNREACHABLE;
  if (err instanceof DaemonTimeoutException || err instanceof WaitTimeoutError) return EXIT.TIMED_OUT;
  if (err instanceof DaemonAlreadyRunningException) return EXIT.ALREADY_RUNNING;
  return EXIT.FAILED;
}

/**
 * The exit code of a wait for processes (`process submit --wait`, `process wait`) from how each
 * ended (api/wait's ProcessVerdict): the worst wins, an exception or a kill over a non-zero exit
 * status. Strings rather than the type so that the fast paths need not load the process API.
 */
export function exitCodeOfVerdicts(verdicts: readonly string[]): ExitCode {
  if (verdicts.some((v) => v === 'excepted' || v === 'killed')) return EXIT.PROCESS_EXCEPTED;
  if (verdicts.some((v) => v === 'failed')) return EXIT.PROCESS_FAILED;
  return EXIT.OK;
}
