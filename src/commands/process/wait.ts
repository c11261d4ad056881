import { Args } from '../../cli/oclif.js';
import { DroverCommand, timeoutFlag } from '../../cli/base-command.js';
import { EXIT, exitCodeOfVerdicts } from '../../cli/exit-codes.js';
import { describeEnd } from '../../cli/format.js';
import { InputError } from '../../errors/index.js';
import type { ProcessRecord } from '../../protocol/index.js';

/** One process of `drover process wait --json`. */
export interface WaitResultRow {
  id: number;
  state: string;
  exitStatus: number | null;
  exitMessage: string | null;
  /** How it ended (api/wait's ProcessVerdict): succeeded, failed, excepted or killed. */
  verdict: string;
}

export default class ProcessWait extends DroverCommand<typeof ProcessWait> {
  static override summary = 'Wait for processes to terminate; exit 0 only if every one succeeded.';
  static override description =
    'Prints how each process ended once all have terminated, and exits 0 only when every one finished with exit ' +
    `status 0; ${EXIT.PROCESS_FAILED} when one finished with another exit status, ${EXIT.PROCESS_EXCEPTED} when ` +
    `one excepted or was killed (the worst wins), ${EXIT.TIMED_OUT} when --timeout passed first (the processes go on), ` +
    '1 when an id names no process of the profile. When no daemon is there to run them, a warning on stderr says so.';
  static override examples = [
    '<%= config.bin %> process wait 42',
    '<%= config.bin %> process wait 42 43 --timeout 600 && echo all succeeded',
    '<%= config.bin %> process wait 42 --json',
  ];
  static override strict = false;
  static override args = { ids: Args.integer({ min: 1, description: 'Process ids.' }) };
  static override flags = {
    timeout: timeoutFlag('Give up after this many seconds (exit 5; the processes go on).'),
  };

  async run(): Promise<{ processes: WaitResultRow[] }> {
    const { argv } = await this.parse(ProcessWait);
    const ids = (argv as string[]).map((a) => {
      const n = Number(a);
      if (!Number.isSafeInteger(n) || n < 1) throw new InputError(`invalid process id ${JSON.stringify(a)}`);
      return n;
    });
    if (ids.length === 0) throw new InputError('give one or more process ids');
    const { ProcessClient } = await import('../../api/processes.js');
    const { waitForProcesses } = await import('../../api/control.js');
    const { nobodyToRun, verdictOf } = await import('../../api/wait.js');
    const client = await ProcessClient.open(this.resolveProfile());
    try {
      // Unknown ids fail before anything is waited for.
      const current = await Promise.all(ids.map((id) => client.getProcess(id)));
      if (current.some((p) => verdictOf(p) === null)) {
        const warning = await nobodyToRun(client, ids.length);
        if (warning !== null) this.notice(`Warning: ${warning}`);
      }
      const what = ids.length === 1 ? `process ${ids[0]}` : `${ids.length} processes`;
      const ended: ProcessRecord[] = await this.withSpinner(`Waiting for ${what} to terminate`, () =>
        waitForProcesses(client, ids, { timeoutSeconds: this.flags.timeout }),
      );
      const rows = ended.map((p) => ({
        id: p.id,
        state: p.state,
        exitStatus: p.exitStatus,
        exitMessage: p.exitMessage,
        verdict: verdictOf(p)!,
      }));
      for (const p of ended) this.say(describeEnd(p));
      process.exitCode = exitCodeOfVerdicts(rows.map((r) => r.verdict));
      return { processes: rows };
    } finally {
      await client.close();
    }
  }
}
