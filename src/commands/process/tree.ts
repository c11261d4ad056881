import { Args, Flags } from '../../cli/oclif.js';
import { DroverCommand } from '../../cli/base-command.js';
import type { ProcessTreeNode } from '../../api/tree.js';

function line(n: ProcessTreeNode): string {
  const state = n.state + (n.paused ? ' (paused)' : '') + (n.exitStatus !== null ? ` [${n.exitStatus}]` : '');
  const label = n.label ? ` (${n.label})` : '';
  const time =
    n.seconds < 60 ? `${n.seconds.toFixed(1)}s` : `${Math.floor(n.seconds / 60)}m${Math.round(n.seconds % 60)}s`;
  return `${n.id} ${n.type}${label}  ${state}  ${time}`;
}

/** The tree drawn with box characters, one process a line. */
function renderTree(root: ProcessTreeNode, maxChildren: number): string[] {
  const out = [line(root)];
  const walk = (n: ProcessTreeNode, prefix: string): void => {
    const shown = n.children.slice(0, maxChildren);
    const hidden = n.children.length - shown.length;
    shown.forEach((c, i) => {
      const last = i === shown.length - 1 && hidden === 0;
      out.push(`${prefix}${last ? '└── ' : '├── '}${line(c)}`);
      walk(c, prefix + (last ? '    ' : '│   '));
    });
    if (hidden > 0) out.push(`${prefix}└── … ${hidden} more (--max-children to show them)`);
  };
  walk(root, '');
  return out;
}

export default class ProcessTree extends DroverCommand<typeof ProcessTree> {
  static override summary = "Show a process's call tree: every descendant with its state, exit status and time.";
  static override description =
    'As `verdi process status`: the workflow and the processes it submitted, recursively, in the order they ' +
    'were submitted; the time is from creation to the end (or to now while active).';
  static override examples = [
    '<%= config.bin %> process tree 42',
    '<%= config.bin %> process tree 42 --max-children 10',
    '<%= config.bin %> process tree 42 --json',
  ];
  static override args = { id: Args.integer({ required: true, min: 1, description: 'Process id.' }) };
  static override flags = {
    'max-children': Flags.integer({
      min: 1,
      default: 1000,
      description: 'Show at most this many children of each process (the rest is counted).',
    }),
  };

  async run(): Promise<ProcessTreeNode> {
    const { args } = await this.parse(ProcessTree);
    const { ProcessClient } = await import('../../api/processes.js');
    const { processTree } = await import('../../api/tree.js');
    const client = await ProcessClient.open(this.resolveProfile());
    try {
      const root = await processTree(client, args.id);
      for (const l of renderTree(root, this.flags['max-children'])) this.say(l);
      return root;
    } finally {
      await client.close();
    }
  }
}
