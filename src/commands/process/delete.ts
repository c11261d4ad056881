import { Args, Flags } from '../../cli/oclif.js';
import { DroverCommand } from '../../cli/base-command.js';
import { EXIT } from '../../cli/exit-codes.js';
import { InputError } from '../../errors/index.js';
import { TERMINAL_STATES, type ProcessState } from '../../protocol/index.js';
import type { DeleteProcessesResult } from '../../api/cleanup.js';

export default class ProcessDelete extends DroverCommand<typeof ProcessDelete> {
  static override summary = 'Delete terminated processes with their descendants, journals and reports.';
  static override description =
    'Give ids, or --older-than DAYS for every terminated process last changed that long ago (--state narrows ' +
    'it to finished, excepted or killed). A workflow goes with its descendants. An active process is never ' +
    'deleted, nor one whose parent is still active (the parent needs its result); they are listed with the ' +
    'reason, and when they were named by id the command exits 1 (also for an id that names no process). ' +
    '--dry-run says what would be deleted and changes nothing.';
  static override examples = [
    '<%= config.bin %> process delete 42 43',
    '<%= config.bin %> process delete --older-than 30 --state finished --dry-run',
    '<%= config.bin %> process delete --older-than 0 --json',
  ];
  static override strict = false;
  static override args = { ids: Args.integer({ min: 1, description: 'Process ids.' }) };
  static override flags = {
    'older-than': Flags.custom<number>({
      description: 'Every terminated process last changed more than this many days ago (0: all of them).',
      helpValue: '<days>',
      parse: async (input: string) => {
        const n = Number(input);
        if (input.trim() === '' || !Number.isFinite(n) || n < 0) {
          throw new InputError(`--older-than must be a number of days >= 0, got '${input}'`);
        }
        return n;
      },
    })(),
    state: Flags.string({
      multiple: true,
      options: [...TERMINAL_STATES],
      description: 'With --older-than: only processes in this state (repeatable; default: every terminated one).',
    }),
    'dry-run': Flags.boolean({ description: 'Say what would be deleted; change nothing.' }),
  };

  async run(): Promise<DeleteProcessesResult> {
    const { argv } = await this.parse(ProcessDelete);
    const f = this.flags;
    const ids = (argv as string[]).map((a) => {
      const n = Number(a);
      if (!Number.isSafeInteger(n) || n < 1) throw new InputError(`invalid process id ${JSON.stringify(a)}`);
      return n;
    });
    const olderThan = f['older-than'];
    if (ids.length === 0 && olderThan === undefined) throw new InputError('give process ids or --older-than DAYS');
    if (ids.length > 0 && olderThan !== undefined) throw new InputError('give process ids or --older-than, not both');
    if (f.state !== undefined && olderThan === undefined) throw new InputError('--state goes with --older-than');
    const { ProcessClient } = await import('../../api/processes.js');
    const { deleteProcesses } = await import('../../api/cleanup.js');
    const client = await ProcessClient.open(this.resolveProfile());
    try {
      const r = await deleteProcesses(
        client,
        olderThan === undefined ? { ids } : { olderThanDays: olderThan, states: f.state as ProcessState[] | undefined },
        { dryRun: f['dry-run'] },
      );
      const n = r.deleted.length;
      const extra = n - r.selected.filter((id) => r.deleted.includes(id)).length;
      this.say(
        `${r.dryRun ? 'Would delete' : 'Deleted'} ${n} process${n === 1 ? '' : 'es'}` +
          (extra > 0 ? ` (${extra} of them descendants)` : '') +
          (r.dryRun ? '; nothing was changed.' : '.'),
      );
      for (const k of r.refused) this.say(`  kept ${k.id}: ${k.reason}`);
      for (const id of r.notFound) this.say(`  not found: ${id}`);
      if (ids.length > 0 && (r.refused.length > 0 || r.notFound.length > 0)) process.exitCode = EXIT.FAILED;
      return r;
    } finally {
      await client.close();
    }
  }
}
