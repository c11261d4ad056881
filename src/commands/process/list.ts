import { Flags } from '@oclif/core';
import { DroverCommand, formatTable } from '../../cli/base-command.js';
import { ago } from '../../cli/format.js';
import { PROCESS_STATES, ACTIVE_STATES, type ProcessState } from '../../protocol/index.js';

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

export default class ProcessList extends DroverCommand<typeof ProcessList> {
  static override summary = 'List processes (by default the active ones: created, running, waiting).';
  static override description =
    'The last line shows the slot usage, as AiiDA does: active processes against workers × slots per worker ' +
    '(`daemon.worker_process_slots`), with a warning above 90%.';
  static override examples = [
    '<%= config.bin %> process list',
    '<%= config.bin %> process list --all --limit 20',
    '<%= config.bin %> process list --state finished --state excepted --past-days 1',
    '<%= config.bin %> process list --type core.shell --json',
  ];
  static override flags = {
    all: Flags.boolean({ char: 'a', description: 'Show processes in every state.' }),
    state: Flags.option({ char: 'S', multiple: true, options: PROCESS_STATES, description: 'Only these states.' })(),
    type: Flags.string({ char: 'T', description: 'Only processes of this type.' }),
    limit: Flags.integer({ char: 'l', min: 1, description: 'At most this many, newest first.' }),
    'past-days': Flags.integer({ char: 'd', min: 1, description: 'Only processes created in the last N days.' }),
  };

  async run(): Promise<ProcessListResult> {
    const f = this.flags;
    const profile = this.resolveProfile();
    const { ProcessClient } = await import('../../api/processes.js');
    const { workerCount } = await import('../../api/daemon-info.js');
    const client = await ProcessClient.open(profile);
    try {
      const states: ProcessState[] | undefined = f.state ?? (f.all ? undefined : [...ACTIVE_STATES]);
      const [procs, counts, workers] = await Promise.all([
        client.listProcesses({ states, type: f.type, limit: f.limit, pastDays: f['past-days'] }),
        client.store.countByState(),
        workerCount(profile),
      ]);
      const rows: ProcessListRow[] = procs.map((p) => ({
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
      const per = profile.options['daemon.worker_process_slots'];
      const capacity = workers === null ? null : workers * per;
      const percent =
        capacity === null ? null : capacity === 0 ? (active > 0 ? 100 : 0) : Math.round((active / capacity) * 100);
      if (rows.length === 0) this.say('No processes match.');
      else
        this.say(
          formatTable(
            ['ID', 'AGE', 'STATE', 'EXIT', 'TYPE', 'LABEL'],
            rows
              .slice()
              .reverse()
              .map((r) => [
                String(r.id),
                ago(r.ctime),
                r.state + (r.paused ? ' (paused)' : ''),
                r.exitStatus === null ? '' : String(r.exitStatus),
                r.type,
                r.label ?? '',
              ]),
          ),
        );
      this.say();
      this.say(`Total results: ${rows.length}`);
      let warning: string | null = null;
      if (capacity === null) {
        this.say(`${active} active process(es); the daemon is not running, so no worker slots are available.`);
      } else {
        this.say(
          `Report: ${active} active process(es) use ${percent}% of ${capacity} slots (${workers} worker(s) × ${per}).`,
        );
        if ((percent ?? 0) > 90) {
          warning = `${percent}% of the available worker slots are in use; increase the number of workers with 'drover daemon incr'.`;
          this.logToStderr(`Warning: ${warning}`);
        }
      }
      return { processes: rows, slots: { active, workers, slotsPerWorker: per, capacity, percent }, warning };
    } finally {
      await client.close();
    }
  }
}
