/**
 * Shared shape of `drover process kill|pause|play ID… [--all] [--timeout S]`: the commands differ
 * only in their action and help text.
 *
 * @module
 */
import { Args } from './oclif.js';
import { InputError } from '../errors/index.js';
import { DroverCommand, allFlag, formatTable, timeoutFlag } from './base-command.js';
import { EXIT } from './exit-codes.js';

/** What the control API returns per id (mirrors api/control's ControlReply). */
export interface ControlReplyRow {
  id: number;
  outcome: string;
  state: string | null;
  paused: boolean;
}

/** Help text shared by the control commands. */
export const CONTROL_DESCRIPTION =
  'The reply says what happened to each id: done (it took effect; a running core.shell command is paused by ' +
  'stopping its process group, SIGSTOP, and played with SIGCONT), pausing (pause only: the worker running it ' +
  'will pause it at its next step boundary; the pause is recorded, nothing more to do), already terminated, ' +
  'not found, unreachable (the broker cannot be reached to tell the worker running it) or timed out (the worker ' +
  'did not react within --timeout). Exits with 3 when any id was unreachable, else 5 when any timed out, ' +
  'else 1 when any id names no process (pausing exits 0).';

/** Base class of the process control commands. */
export abstract class ProcessControlCommand extends DroverCommand<typeof ProcessControlCommand> {
  static override description = CONTROL_DESCRIPTION;
  static override strict = false;
  static override args = { ids: Args.integer({ min: 1, description: 'Process ids.' }) };
  static override flags = {
    all: allFlag('Act on every active process of the profile.'),
    timeout: timeoutFlag('Seconds to wait for running processes to react (default: daemon.timeout).'),
  };

  protected abstract readonly action: 'kill' | 'pause' | 'play';

  async run(): Promise<{ replies: ControlReplyRow[] }> {
    // Pass the statics explicitly: oclif spreads the options object, which drops inherited statics.
    const ctor = ProcessControlCommand;
    const { argv } = await this.parse({
      flags: ctor.flags,
      baseFlags: ctor.baseFlags,
      args: ctor.args,
      strict: false,
      enableJsonFlag: true,
    });
    const ids = (argv as string[]).map((a) => {
      const n = Number(a);
      if (!Number.isSafeInteger(n) || n < 1) throw new InputError(`invalid process id ${JSON.stringify(a)}`);
      return n;
    });
    if (ids.length === 0 && !this.flags.all) throw new InputError('give one or more process ids, or --all');
    if (ids.length > 0 && this.flags.all) throw new InputError('give process ids or --all, not both');
    const { ProcessClient } = await import('../api/processes.js');
    const { controlProcesses } = await import('../api/control.js');
    const client = await ProcessClient.open(this.resolveProfile());
    try {
      const what = this.flags.all
        ? 'every active process'
        : ids.length === 1
          ? `process ${ids[0]}`
          : `${ids.length} processes`;
      const replies = await this.withSpinner(
        `Waiting for ${what} to ${this.action === 'kill' ? 'be killed' : this.action === 'pause' ? 'pause' : 'resume'}`,
        () =>
          controlProcesses(client, this.action, this.flags.all ? 'all' : ids, { timeoutSeconds: this.flags.timeout }),
      );
      if (replies.length === 0) this.say('No active processes.');
      else
        this.say(
          formatTable(
            ['ID', 'RESULT', 'STATE'],
            replies.map((r) => [String(r.id), r.outcome, (r.state ?? '') + (r.paused ? ' (paused)' : '')]),
          ),
        );
      if (replies.some((r) => r.outcome === 'unreachable')) process.exitCode = EXIT.UNREACHABLE;
      else if (replies.some((r) => r.outcome === 'timed out')) process.exitCode = EXIT.TIMED_OUT;
      else if (replies.some((r) => r.outcome === 'not found')) process.exitCode = EXIT.FAILED;
      return { replies };
    } finally {
      await client.close();
    }
  }
}
