/**
 * Waiting for processes from a script, and what their end means to one: the library's
 * {@link waitFor}, the {@link verdictOf} that `drover process submit --wait` and `drover process
 * wait` turn into exit codes, and {@link nobodyToRun}, the warning that nothing will run a
 * submitted process yet.
 *
 * @module
 */
import type { ProcessRecord } from '../protocol/index.js';
import { errorMessage } from '../errors/index.js';
import { waitForProcesses } from './control.js';
import { withClient, type ProcessClient, type ProfileOption } from './processes.js';

/**
 * How a terminated process ended, as a script sees it:
 * - `succeeded`: `finished` with exit status 0;
 * - `failed`: `finished` with a non-zero exit status (an expected failure the process reported);
 * - `excepted`: its code threw, or it was refused (bad inputs, unknown type, a diverging replay);
 * - `killed`: someone killed it.
 */
export type ProcessVerdict = 'succeeded' | 'failed' | 'excepted' | 'killed';

/** The verdict on a terminated process; null while it is still active. */
export function verdictOf(p: Pick<ProcessRecord, 'state' | 'exitStatus'>): ProcessVerdict | null {
  switch (p.state) {
    case 'finished':
      return (p.exitStatus ?? 0) === 0 ? 'succeeded' : 'failed';
    case 'excepted':
      return 'excepted';
    case 'killed':
      return 'killed';
    default:
      return null;
  }
}

/** Options of {@link waitFor}. */
export interface WaitOptions extends ProfileOption {
  /** Seconds to wait at most; then a WaitTimeoutError (the processes go on). Default: no limit. */
  timeout?: number;
}

/**
 * Waits until the process (or every one of the processes) has terminated, and returns its record
 * (their records, in the order given). It does not tell success from failure: look at `state` and
 * `exitStatus`, or at {@link verdictOf}.
 *
 * @example
 * const id = await submit('core.arithmetic.add', { x: 1, y: 2 }, { profile: 'work' });
 * const p = await waitFor(id, { profile: 'work', timeout: 60 });
 * if (verdictOf(p) !== 'succeeded') process.exitCode = 1;
 *
 * @throws WaitTimeoutError when `timeout` passes first (naming the processes still active).
 * @throws ProcessNotFoundError when an id names no process of the profile.
 */
export function waitFor(id: number, opts?: WaitOptions): Promise<ProcessRecord>;
export function waitFor(ids: readonly number[], opts?: WaitOptions): Promise<ProcessRecord[]>;
export async function waitFor(
  ids: number | readonly number[],
  opts: WaitOptions = {},
): Promise<ProcessRecord | ProcessRecord[]> {
  const list = typeof ids === 'number' ? [ids] : ids;
  const records = await withClient(opts.profile, (c) => waitForProcesses(c, list, { timeoutSeconds: opts.timeout }));
  return typeof ids === 'number' ? records[0]! : records;
}

/**
 * Why nothing will run a process submitted now to the client's profile, or null when something
 * will (as far as can be seen from here). On the local bus only the profile's daemon on this
 * machine runs processes; on RabbitMQ any machine's workers may, so it is said only when the task
 * queue has no consumer at all. Processes submitted anyway are stored and run once a daemon starts.
 */
export async function nobodyToRun(client: ProcessClient, count = 1): Promise<string | null> {
  const profile = client.profile;
  const stored = count === 1 ? 'the process is stored and runs' : 'the processes are stored and run';
  // The module itself, not the client index (log reader, service manager): a lazy import, kept small.
  const { DaemonClient } = await import('../client/daemon-client.js');
  if (new DaemonClient(profile).isDaemonRunning) return null;
  const start = `drover daemon start --profile ${profile.name}`;
  if (profile.broker.kind === 'local') {
    return `no daemon of profile '${profile.name}' is running: ${stored} when one starts (${start})`;
  }
  try {
    const bus = await client.bus();
    const queue = bus ? await bus.taskQueueState() : null;
    if (queue === null || queue.consumers > 0) return null;
  } catch (err) {
    return `no daemon of profile '${profile.name}' runs here and the broker could not say whether another machine's does (${errorMessage(err)})`;
  }
  return (
    `no worker of profile '${profile.name}' is consuming its tasks (no daemon here, none on another machine): ` +
    `${stored} when one starts (${start})`
  );
}
