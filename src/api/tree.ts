/**
 * The call tree of a process (`drover process tree`, as `verdi process status`): the process and
 * its descendants, each with its state, exit status and time.
 *
 * @module
 */
import { isTerminal, type ProcessRecord, type ProcessState } from '../protocol/index.js';
import type { ProcessClient } from './processes.js';

/** One process of a tree. */
export interface ProcessTreeNode {
  id: number;
  type: string;
  label: string | null;
  state: ProcessState;
  paused: boolean;
  exitStatus: number | null;
  /** Seconds from creation to the end, or to now while active. */
  seconds: number;
  children: ProcessTreeNode[];
}

function node(p: ProcessRecord, now: number): ProcessTreeNode {
  return {
    id: p.id,
    type: p.type,
    label: p.label,
    state: p.state,
    paused: p.paused,
    exitStatus: p.exitStatus,
    seconds: Math.max(0, ((isTerminal(p.state) ? p.mtime : now) - p.ctime) / 1000),
    children: [],
  };
}

/** The tree rooted at `id`, children in id order (the order they were submitted). */
export async function processTree(client: ProcessClient, id: number): Promise<ProcessTreeNode> {
  const now = Date.now();
  const root = node(await client.getProcess(id), now);
  const queue = [root];
  for (let n = queue.shift(); n !== undefined; n = queue.shift()) {
    const kids = await client.listProcesses({ parentId: n.id });
    n.children = kids.sort((a, b) => a.id - b.id).map((k) => node(k, now));
    queue.push(...n.children);
  }
  return root;
}

/** Number of processes in each state in a tree, the root included. */
export function treeCounts(root: ProcessTreeNode): Partial<Record<ProcessState, number>> {
  const out: Partial<Record<ProcessState, number>> = {};
  const walk = (n: ProcessTreeNode): void => {
    out[n.state] = (out[n.state] ?? 0) + 1;
    n.children.forEach(walk);
  };
  walk(root);
  return out;
}
