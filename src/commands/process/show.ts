import { Args } from '@oclif/core';
import { DroverCommand } from '../../cli/base-command.js';
import { ago } from '../../cli/format.js';
import type { ProcessRecord } from '../../protocol/index.js';

export default class ProcessShow extends DroverCommand<typeof ProcessShow> {
  static override summary = 'Show one process: state, inputs, outputs, exit status, exception.';
  static override examples = ['<%= config.bin %> process show 42', '<%= config.bin %> process show 42 --json'];
  static override args = { id: Args.integer({ required: true, min: 1, description: 'Process id.' }) };

  async run(): Promise<ProcessRecord & { children: number[] }> {
    const { args } = await this.parse(ProcessShow);
    const { ProcessClient } = await import('../../api/processes.js');
    const client = await ProcessClient.open(this.resolveProfile());
    try {
      const p = await client.getProcess(args.id);
      const children = (await client.listProcesses({ parentId: p.id })).map((c) => c.id).sort((a, b) => a - b);
      const rows: Array<[string, string]> = [
        ['id', `${p.id} (${p.uuid})`],
        ['type', p.type],
        ['label', p.label ?? ''],
        ['state', p.state + (p.paused ? ' (paused)' : '') + (p.killRequested ? ' (kill requested)' : '')],
        ['exit status', p.exitStatus === null ? '' : String(p.exitStatus)],
        ['exit message', p.exitMessage ?? ''],
        ['created', `${new Date(p.ctime).toISOString()} (${ago(p.ctime)})`],
        ['modified', `${new Date(p.mtime).toISOString()} (${ago(p.mtime)})`],
        ['worker', p.workerId ?? ''],
        ['runs', String(p.runs)],
        ['parent', p.parentId === null ? '' : String(p.parentId)],
        ['children', children.join(', ')],
        ['inputs', JSON.stringify(p.inputs)],
        ['outputs', p.outputs === null ? '' : JSON.stringify(p.outputs)],
      ];
      for (const [k, v] of rows) this.say(`${k.padEnd(13)} ${v}`);
      if (p.exception) this.say(`exception\n${p.exception}`);
      return { ...p, children };
    } finally {
      await client.close();
    }
  }
}
