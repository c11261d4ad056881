/**
 * `drover daemon status`, shared by the oclif command (src/commands/daemon/status.ts) and the fast
 * path of bin/drover.js, which answers without loading oclif: people put this command in prompts,
 * scripts and monitoring, so it must start about as fast as node itself. Nothing here imports
 * oclif, the store drivers, amqplib or D-Bus; the service layer beyond a look for the unit file is
 * loaded only when the profile has a unit or plist.
 *
 * Per profile it asks the daemon for its status (one request, bounded by `-t`/`daemon.timeout`),
 * and meanwhile probes the store and the broker cheaply (client/reachability.ts) and checks the
 * installed unit. A running daemon's environment record is compared with the disk: options,
 * process modules and drover version that changed since it loaded them give "restart to pick up"
 * warnings.
 *
 * @module
 */
import { Config, LOCAL_BROKER_DISPLAY, resolveProfile, type Profile } from '../config/config.js';
import { DaemonNotRunningException, DaemonTimeoutException } from '../errors/index.js';
import type { DaemonStatus } from '../protocol/control.js';
import { DaemonClient } from '../client/daemon-client.js';
import { daemonSummary, workerProblems, workerTable } from '../client/format.js';
import { probeBroker, probeStore, type ReachabilityCheck } from '../client/reachability.js';
import { environmentDrift, formatDrift, type EnvironmentDrift } from '../client/environment-drift.js';
import { unitFileExists } from '../service/unit-paths.js';
import { droverPackage } from '../service/package-root.js';
import type { InstalledUnitCheck } from '../service/supervisor.js';
import { EXIT, type ExitCode } from './exit-codes.js';
import { formatTable } from './format.js';
import { jsonText, printError, writeOut } from './output.js';
import { parseFastArgv, type FastFlags } from './fast-flags.js';

/**
 * How the daemon answered: with its status, not at all because it is not running, or not within
 * the timeout (a hung or stopped daemon; `running` then says whether its process lives).
 */
export type DaemonAnswer = 'status' | 'not-running' | 'timed-out';

/** Status of one profile's daemon in `drover daemon status --json`. */
export interface DaemonStatusEntry {
  profile: string;
  /** The daemon process is alive (its PID file names a live process). */
  running: boolean;
  answer: DaemonAnswer;
  /** Why there is no status: not running, or not answering. */
  message: string | null;
  status: DaemonStatus | null;
  /** The profile's store, probed from here (SQLite file, or a connection to the server). */
  store: ReachabilityCheck;
  /** The profile's broker, probed from here (a connection to the server). */
  broker: ReachabilityCheck;
  /** What the running daemon loaded that differs from the disk now (empty when not running). */
  drift: EnvironmentDrift[];
  /**
   * The profile's systemd unit or launchd agent, present only when one is installed: enabled,
   * state, the node and CLI it runs, and problems (a node or CLI that no longer exists, another
   * DROVER_HOME).
   */
  service?: InstalledUnitCheck;
}

/** Result of `drover daemon status --json`: one entry, or one per profile with --all. */
export interface DaemonStatusResult {
  profiles: DaemonStatusEntry[];
}

/** The flags of `drover daemon status` (besides -p and --json), shared by the oclif command and the fast path. */
export const DAEMON_STATUS_FLAGS = {
  all: { kind: 'boolean', char: 'a', description: 'Show the daemons of every profile.' },
  timeout: {
    kind: 'timeout',
    char: 't',
    description: 'Seconds to wait for each daemon to answer (default: daemon.timeout).',
  },
} as const satisfies FastFlags;

/** Flags of `drover daemon status`. */
export interface DaemonStatusOptions {
  /** `-p`: the profile (default: DROVER_PROFILE, else the default profile). */
  profile?: string;
  /** `-a`: every profile of the configuration. */
  all?: boolean;
  /** `-t`: seconds to wait for each daemon (default: its profile's `daemon.timeout`). */
  timeout?: number;
}

/** The installed unit of `name`, when there is one; a failed check only leaves it out. */
async function serviceOf(name: string): Promise<{ service?: InstalledUnitCheck }> {
  if (!unitFileExists(name)) return {};
  const { checkInstalledUnit } = await import('../service/supervisor.js');
  const check = await checkInstalledUnit(name).catch(() => null);
  return check?.installed ? { service: check } : {};
}

async function entryOf(profile: Profile, timeout: number | undefined, version: string): Promise<DaemonStatusEntry> {
  const client = new DaemonClient(profile);
  const seconds = timeout ?? profile.options['daemon.timeout'];
  const probes = Promise.all([
    probeStore(profile.storage, seconds * 1000),
    probeBroker(profile.broker, seconds * 1000),
    serviceOf(profile.name),
  ]);
  let status: DaemonStatus | null = null;
  let answer: DaemonAnswer = 'status';
  let message: string | null = null;
  try {
    status = await client.getStatus({ timeout: seconds });
  } catch (err) {
    if (err instanceof DaemonNotRunningException) {
      answer = 'not-running';
      message = `The daemon of profile '${profile.name}' is not running.`;
    } else if (err instanceof DaemonTimeoutException) {
      answer = 'timed-out';
      message = err.message;
    } else {
      throw err;
    }
  }
  const [store, broker, service] = await probes;
  return {
    profile: profile.name,
    running: status !== null || (answer === 'timed-out' && client.isDaemonRunning),
    answer,
    message,
    status,
    store,
    broker,
    drift: status?.environment ? environmentDrift(status.environment, profile, version) : [],
    ...service,
  };
}

/** Asks the daemon of each profile (in parallel) and probes what it depends on. */
export async function collectDaemonStatus(opts: DaemonStatusOptions = {}): Promise<DaemonStatusResult> {
  let profiles: Profile[];
  if (opts.all) {
    const config = Config.load();
    profiles = config.profileNames.map((name) => config.getProfile(name));
  } else {
    profiles = [resolveProfile(opts.profile)];
  }
  const version = droverPackage().version;
  return { profiles: await Promise.all(profiles.map((p) => entryOf(p, opts.timeout, version))) };
}

/** The exit code: 3 when a daemon is not running, else 5 when one did not answer in time, else 0. */
export function daemonStatusExitCode(result: DaemonStatusResult): ExitCode {
  if (result.profiles.some((e) => e.answer === 'not-running')) return EXIT.UNREACHABLE;
  if (result.profiles.some((e) => e.answer === 'timed-out')) return EXIT.TIMED_OUT;
  return EXIT.OK;
}

function reachLine(label: string, c: ReachabilityCheck): string {
  // The local bus is the daemon itself: nothing to reach, whether it runs is said above.
  if (c.target === LOCAL_BROKER_DISPLAY) return `${label.padEnd(8)}local: ${c.detail}`;
  return `${label.padEnd(8)}${c.target} (${c.reachable ? 'reachable' : `UNREACHABLE: ${c.detail}`})`;
}

/**
 * The text of `drover daemon status`: `out` for stdout, `err` for stderr (warnings: problems of the
 * installed unit, and what the running daemon must be restarted to pick up).
 */
export async function renderDaemonStatus(result: DaemonStatusResult): Promise<{ out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const needsUnitFormat = result.profiles.some((e) => e.service);
  const formatUnitCheck = needsUnitFormat ? (await import('../service/format.js')).formatUnitCheck : () => null;
  result.profiles.forEach((e, i) => {
    if (i > 0) out.push('');
    for (const p of e.service?.problems ?? []) err.push(`Warning: ${p}`);
    const unitLine = e.service ? formatUnitCheck(e.service) : null;
    const deps = [reachLine('Store:', e.store), reachLine('Broker:', e.broker)];
    if (e.status === null) {
      out.push(e.message ?? '');
      if (unitLine !== null) out.push(unitLine);
      out.push(...deps);
      return;
    }
    const s = e.status;
    for (const d of e.drift) err.push(`Warning: ${formatDrift(d, s.supervisor)}`);
    out.push(daemonSummary(s));
    if (unitLine !== null) {
      out.push(unitLine);
      if (s.supervisor === 'self' && e.service!.problems.length === 0) {
        out.push(
          `Note: this daemon was started outside ${e.service!.unit}; \`drover daemon stop\` stops it directly, ` +
            'and the service manager starts the next one.',
        );
      }
    }
    out.push(...deps);
    if (s.workers.length > 0) {
      const t = workerTable(s.workers);
      out.push('', formatTable(t.headers, t.rows));
    }
    const problems = workerProblems(s.workers);
    if (problems.length > 0) out.push('', ...problems);
  });
  return { out, err };
}

/** Prints the result as the command does (text, or JSON with `json`); returns the exit code. */
export async function printDaemonStatus(result: DaemonStatusResult, json: boolean): Promise<ExitCode> {
  if (json) {
    writeOut(process.stdout, jsonText(result));
  } else {
    const { out, err } = await renderDaemonStatus(result);
    if (err.length > 0) writeOut(process.stderr, err.map((l) => l + '\n').join(''));
    writeOut(process.stdout, out.map((l) => l + '\n').join(''));
  }
  return daemonStatusExitCode(result);
}

/**
 * The flags of `drover daemon status` when `argv` (after `daemon status`) holds only flags this
 * fast path understands, with valid values; null otherwise (see cli/fast-flags.ts).
 */
export function parseDaemonStatusArgv(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): (DaemonStatusOptions & { json: boolean }) | null {
  const f = parseFastArgv(argv, DAEMON_STATUS_FLAGS, env);
  return f === null ? null : { profile: f.profile, all: f.all, timeout: f.timeout, json: f.json };
}

/**
 * The fast path: runs `drover daemon status ARGV` without oclif and resolves with the exit code,
 * or with null when ARGV is not for it (see {@link parseDaemonStatusArgv}).
 */
export async function fastDaemonStatus(argv: readonly string[]): Promise<number | null> {
  const opts = parseDaemonStatusArgv(argv);
  if (opts === null) return null;
  try {
    return await printDaemonStatus(await collectDaemonStatus(opts), opts.json);
  } catch (err) {
    return printError(err, opts.json);
  }
}
