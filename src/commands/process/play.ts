import { Args, Flags } from '@oclif/core';
import { DroverCommand, formatTable } from '../../cli/base-command.js';
import { InputError } from '../../errors/index.js';
import type { ControlReply } from '../../api/control.js';

export default class ProcessPlay extends DroverCommand<typeof ProcessPlay> {
  static override summary = 'Resume paused processes.';
  static override description =
    'The reply says what happened to each id: done, already terminated, not found, unreachable (the broker ' +
    'cannot be reached to tell the worker running it) or timed out (the worker did not react within --timeout).';
  static override examples = [
    '<%= config.bin %> process play 42 43',
    '<%= config.bin %> process play --all',
    '<%= config.bin %> process play 42 --timeout 10 --json',
  ];
  static override strict = false;
  static override args = { ids: Args.integer({ min: 1, description: 'Process ids.' }) };
  static override flags = {
    all: Flags.boolean({ description: 'Act on every active process of the profile.' }),
    timeout: Flags.integer({ char: 't', min: 1, description: 'Seconds to wait for running processes to react.' }),
  };

  async run(): Promise<{ replies: ControlReply[] }> {
    const { argv } = await this.parse(ProcessPlay);
    const ids = (argv as string[]).map((a) => {
      const n = Number(a);
      if (!Number.isSafeInteger(n) || n < 1) throw new InputError(`invalid process id ${JSON.stringify(a)}`);
      return n;
    });
    if (ids.length === 0 && !this.flags.all) throw new InputError('give one or more process ids, or --all');
    if (ids.length > 0 && this.flags.all) throw new InputError('give process ids or --all, not both');
    const { ProcessClient } = await import('../../api/processes.js');
    const { playProcesses } = await import('../../api/control.js');
    const client = await ProcessClient.open(this.resolveProfile());
    try {
      const targets = this.flags.all
        ? (await client.listProcesses({ states: ['created', 'running', 'waiting'] })).map((p) => p.id)
        : ids;
      const replies = await playProcesses(client, targets, { timeoutSeconds: this.flags.timeout });
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
