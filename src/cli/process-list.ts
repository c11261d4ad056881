/**
 * `drover process list`, shared by the oclif command (src/commands/process/list.ts) and the fast
 * path of bin/drover.js: the most used command after `daemon status`, so it answers without oclif
 * too and loads only the profile's own store adapter (no broker, no other driver).
 *
 * @module
 */
import { resolveProfile, type Profile } from '../config/config.js';
import { applySharedOptions, keepsSharedOptions } from '../config/options.js';
import { ACTIVE_STATES, PROCESS_STATES, type ProcessState } from '../protocol/process.js';
import { EXIT, type ExitCode } from './exit-codes.js';
import { parseFastArgv, type FastFlags, type ParsedFastFlags } from './fast-flags.js';
import { ago, formatTable } from './format.js';
import { jsonText, printError, writeOut } from './output.js';

/** The flags of `drover process list` (besides -p and --json). */
export const PROCESS_LIST_FLAGS = {
  all: { kind: 'boolean', char: 'a', description: 'Show processes in every state.' },
  state: { kind: 'string', char: 'S', multiple: true, options: PROCESS_STATES, description: 'Only these states.' },
  type: { kind: 'string', char: 'T', description: 'Only processes of this type.' },
  limit: { kind: 'integer', char: 'l', min: 1, description: 'At most this many, newest first.' },
  'past-days': { kind: 'integer', char: 'd', min: 1, description: 'Only processes created in the last N days.' },
} as const satisfies FastFlags;

/** Parsed flags of `drover process list`. */
export type ProcessListFlags = ParsedFastFlags<typeof PROCESS_LIST_FLAGS>;

/** One row of `drover process list --json`. */
export interface ProcessListRow {
  id: number;
  type: string;
  label: string | null;
  state: ProcessState;
  paused: boolean;
  exitStatus: number | null;
  ctime: number;
  workerId: string | null;
}

/** Result of `drover process list --json`. */
export interface ProcessListResult {
  processes: ProcessListRow[];
  slots: {
    active: number;
    workers: number | null;
    slotsPerWorker: number;
    capacity: number | null;
    percent: number | null;
  };
  warning: string | null;
}

/** Lists the processes of `profile` and the slot usage of its daemons (every live one, on every host). */
export async function collectProcessList(profile: Profile, f: ProcessListFlags): Promise<ProcessListResult> {
  const { ProcessClient } = await import('../api/processes.js');
  const { localDaemonWorkers } = await import('../api/daemon-info.js');
  const { clusterDaemons, otherLiveWorkers } = await import('../api/cluster.js');
  const client = await ProcessClient.open(profile);
  try {
    const states: ProcessState[] | undefined =
      f.state === undefined ? (f.all ? undefined : [...ACTIVE_STATES]) : (f.state as ProcessState[]);
    const [procs, counts, local, daemons] = await Promise.all([
      client.listProcesses({ states, type: f.type, limit: f.limit, pastDays: f['past-days'] }),
      client.store.countByState(),
      localDaemonWorkers(profile),
      // Other hosts' daemons (and a store written by an older drover, without a registry: none).
      clusterDaemons(client.store).catch(() => []),
    ]);
    const others = otherLiveWorkers(daemons, local?.pid ?? null);
    const workers = local === null && others === 0 ? null : (local?.workers ?? 0) + others;
    const processes: ProcessListRow[] = procs.map((p) => ({
      id: p.id,
      type: p.type,
      label: p.label,
      state: p.state,
      paused: p.paused,
      exitStatus: p.exitStatus,
      ctime: p.ctime,
      workerId: p.workerId,
    }));
    const active = counts.created + counts.running + counts.waiting;
    // A PostgreSQL profile's slots are a shared option, in the store every daemon read it from.
    const shared = keepsSharedOptions(profile.storage) ? await client.store.getSharedOptions().catch(() => ({})) : {};
    const per = applySharedOptions(profile.options, shared)['daemon.worker_process_slots'];
    const capacity = workers === null ? null : workers * per;
    const percent =
      capacity === null ? null : capacity === 0 ? (active > 0 ? 100 : 0) : Math.round((active / capacity) * 100);
    const warning =
      percent !== null && percent > 90
        ? `${percent}% of the available worker slots are in use; increase the number of workers with 'drover daemon incr'.`
        : null;
    return { processes, slots: { active, workers, slotsPerWorker: per, capacity, percent }, warning };
  } finally {
    await client.close();
  }
}

/** The text of `drover process list`: `out` for stdout, `err` for stderr (the slot warning). */
export function renderProcessList(r: ProcessListResult): { out: string[]; err: string[] } {
  const out: string[] = [];
  if (r.processes.length === 0) out.push('No processes match.');
  else
    out.push(
      formatTable(
        ['ID', 'AGE', 'STATE', 'EXIT', 'TYPE', 'LABEL'],
        r.processes
          .slice()
          .reverse()
          .map((p) => [
            String(p.id),
            ago(p.ctime),
            p.state + (p.paused ? ' (paused)' : ''),
            p.exitStatus === null ? '' : String(p.exitStatus),
            p.type,
            p.label ?? '',
          ]),
      ),
    );
  out.push('', `Total results: ${r.processes.length}`);
  const s = r.slots;
  if (s.capacity === null) {
    out.push(`${s.active} active process(es); no daemon of the profile is running, so no worker slots are available.`);
  } else {
    out.push(
      `Report: ${s.active} active process(es) use ${s.percent}% of ${s.capacity} slots (${s.workers} worker(s) × ${s.slotsPerWorker}).`,
    );
  }
  return { out, err: r.warning === null ? [] : [`Warning: ${r.warning}`] };
}

/**
 * The fast path: runs `drover process list ARGV` without oclif and resolves with the exit code, or
 * with null when ARGV is not for it (see cli/fast-flags.ts).
 */
export async function fastProcessList(argv: readonly string[]): Promise<ExitCode | null> {
  const f = parseFastArgv(argv, PROCESS_LIST_FLAGS);
  if (f === null) return null;
  try {
    // As every command: on first use (no configuration file) the profile is created, with a notice.
    const profile = resolveProfile(f.profile, { onCreate: (m) => process.stderr.write(m + '\n') });
    const result = await collectProcessList(profile, f);
    if (f.json) writeOut(process.stdout, jsonText(result));
    else {
      const { out, err } = renderProcessList(result);
      writeOut(process.stdout, out.map((l) => l + '\n').join(''));
      if (err.length > 0) writeOut(process.stderr, err.map((l) => l + '\n').join(''));
    }
    return EXIT.OK;
  } catch (err) {
    return printError(err, f.json);
  }
}
