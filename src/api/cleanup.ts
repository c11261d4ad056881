/**
 * Deleting terminated processes (`drover process delete`): by id, or every terminated one last
 * changed more than so many days ago. A process goes with its descendants, journal, reports and
 * output log (the one on this host: a process that ran on another host left its log there); an
 * active one, or one an active workflow still needs, is kept and said why.
 *
 * @module
 */
import fs from 'node:fs';
import { processLogPaths } from '../config/index.js';
import { InputError } from '../errors/index.js';
import { TERMINAL_STATES, isTerminal, type ProcessState } from '../protocol/index.js';
import type { DeleteResult } from '../store/types.js';
import type { ProcessClient } from './processes.js';

/** What to delete: ids, or the terminated processes older than a number of days (in `states`). */
export type DeleteSelection = { ids: readonly number[] } | { olderThanDays: number; states?: readonly ProcessState[] };

/** Result of {@link deleteProcesses}: the store's, plus the ids the selection named. */
export interface DeleteProcessesResult extends DeleteResult {
  selected: number[];
  dryRun: boolean;
}

const DAY_MS = 86_400_000;

/** Deletes (or with `dryRun` only says what it would delete) the selected processes. */
export async function deleteProcesses(
  client: ProcessClient,
  sel: DeleteSelection,
  opts: { dryRun?: boolean } = {},
): Promise<DeleteProcessesResult> {
  const dryRun = opts.dryRun === true;
  let selected: number[];
  if ('ids' in sel) {
    selected = [...sel.ids];
  } else {
    const days = sel.olderThanDays;
    if (typeof days !== 'number' || !Number.isFinite(days) || days < 0) {
      throw new InputError(`older-than must be a number of days >= 0, got ${JSON.stringify(days)}`);
    }
    const states = sel.states ?? TERMINAL_STATES;
    const active = states.filter((s) => !isTerminal(s));
    if (active.length > 0) {
      throw new InputError(
        `only terminated processes can be deleted (${TERMINAL_STATES.join(', ')}); ${active.join(', ')} ` +
          `${active.length === 1 ? 'is' : 'are'} active`,
      );
    }
    const old = await client.listProcesses({ states, modifiedBefore: Date.now() - days * DAY_MS });
    selected = old.map((p) => p.id);
  }
  // Ascending: a parent (always the older id) takes its children along before they come up.
  selected.sort((a, b) => a - b);
  const r = await client.store.deleteProcesses(selected, { dryRun });
  if (!dryRun) {
    for (const id of r.deleted) {
      for (const f of processLogPaths(client.profile.name, id)) fs.rmSync(f, { force: true });
    }
  }
  return { ...r, selected, dryRun };
}
