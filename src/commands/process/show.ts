import { Args } from '../../cli/oclif.js';
import { DroverCommand } from '../../cli/base-command.js';
import { ago } from '../../cli/format.js';
import type { ProcessRecord } from '../../protocol/index.js';

export default class ProcessShow extends DroverCommand<typeof ProcessShow> {
  static override summary = 'Show one process: state, inputs, outputs, exit status, exception.';
  static override description =
    'A workflow with more than 10 children shows their number per state (`process tree` lists them; --json ' +
    'gives every id).';
  static override examples = ['<%= config.bin %> process show 42', '<%= config.bin %> process show 42 --json'];
  static override args = { id: Args.integer({ required: true, min: 1, description: 'Process id.' }) };

  async run(): Promise<ProcessRecord & { children: number[] }> {
    const { args } = await this.parse(ProcessShow);
    const { ProcessClient } = await import('../../api/processes.js');
    const client = await ProcessClient.open(this.resolveProfile());
    try {
      const p = await client.getProcess(args.id);
      const kids = await client.listProcesses({ parentId: p.id });
      const children = kids.map((c) => c.id).sort((a, b) => a - b);
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
        // Worker ids are `<host>:<...>`: the host it ran (or runs) on.
        ['host', p.workerId === null ? '' : p.workerId.slice(0, Math.max(0, p.workerId.indexOf(':')))],
        ['runs', String(p.runs)],
        ['parent', p.parentId === null ? '' : String(p.parentId)],
        ['children', describeChildren(p.id, children, kids)],
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

/** How many children a workflow shows by id; past that, counts per state. */
const LISTED_CHILDREN = 10;

function describeChildren(id: number, ids: number[], kids: ProcessRecord[]): string {
  if (ids.length <= LISTED_CHILDREN) return ids.join(', ');
  const counts = new Map<string, number>();
  for (const k of kids) counts.set(k.state, (counts.get(k.state) ?? 0) + 1);
  const parts = [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([state, n]) => `${n} ${state}`);
  return `${ids.length} (${parts.join(', ')}); drover process tree ${id} lists them`;
}
