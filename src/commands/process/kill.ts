import { Args, Flags } from '@oclif/core';
import { DroverCommand, formatTable } from '../../cli/base-command.js';
import { InputError } from '../../errors/index.js';
import type { ControlReply } from '../../api/control.js';

export default class ProcessKill extends DroverCommand<typeof ProcessKill> {
  static override summary = 'Kill processes (and their active children): created, running, waiting or paused.';
  static override description =
    'The reply says what happened to each id: done, already terminated, not found, unreachable (the broker ' +
    'cannot be reached to tell the worker running it) or timed out (the worker did not react within --timeout).';
  static override examples = [
    '<%= config.bin %> process kill 42 43',
    '<%= config.bin %> process kill --all',
    '<%= config.bin %> process kill 42 --timeout 10 --json',
  ];
  static override strict = false;
  static override args = { ids: Args.integer({ min: 1, description: 'Process ids.' }) };
  static override flags = {
    all: Flags.boolean({ description: 'Act on every active process of the profile.' }),
    timeout: Flags.integer({ char: 't', min: 1, description: 'Seconds to wait for running processes to react.' }),
  };

  async run(): Promise<{ replies: ControlReply[] }> {
    const { argv } = await this.parse(ProcessKill);
    const ids = (argv as string[]).map((a) => {
      const n = Number(a);
      if (!Number.isSafeInteger(n) || n < 1) throw new InputError(`invalid process id ${JSON.stringify(a)}`);
      return n;
    });
    if (ids.length === 0 && !this.flags.all) throw new InputError('give one or more process ids, or --all');
    if (ids.length > 0 && this.flags.all) throw new InputError('give process ids or --all, not both');
    const { ProcessClient } = await import('../../api/processes.js');
    const { killProcesses } = await import('../../api/control.js');
    const client = await ProcessClient.open(this.resolveProfile());
    try {
      const active = this.flags.all ? await client.listProcesses({ states: ['created', 'running', 'waiting'] }) : [];
      const activeIds = new Set(active.map((p) => p.id));
      // Children of an active process are killed with it.
      const targets = this.flags.all
        ? active.filter((p) => p.parentId === null || !activeIds.has(p.parentId)).map((p) => p.id)
        : ids;
      const replies = await killProcesses(client, targets, { timeoutSeconds: this.flags.timeout });
      if (replies.length === 0) this.say('No active processes.');
      else
        this.say(
          formatTable(
            ['ID', 'RESULT', 'STATE'],
            replies.map((r) => [String(r.id), r.outcome, (r.state ?? '') + (r.paused ? ' (paused)' : '')]),
          ),
        );
      if (replies.some((r) => r.outcome === 'unreachable' || r.outcome === 'timed out')) process.exitCode = 1;
      return { replies };
    } finally {
      await client.close();
    }
  }
}
