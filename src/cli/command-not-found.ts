/**
 * oclif's `command_not_found` hook: "did you mean ...?" for a mistyped command, as
 * @oclif/plugin-not-found does, with two differences. The distance counts a swap of two adjacent
 * letters as one edit (optimal string alignment), so `daemon stauts` suggests `daemon status`
 * rather than `daemon start` (plain Levenshtein ties them and picks the first); and the suggestion
 * is printed when nobody can answer a prompt (a script, CI), not only offered on a terminal. On a
 * terminal it asks, and runs the suggested command with the same arguments on yes. Exits 2 (a
 * usage error, see cli/exit-codes.ts) otherwise.
 *
 * @module
 */
import readline from 'node:readline/promises';
import { toConfiguredId, type Hook } from './oclif.js';
import { EXIT } from './exit-codes.js';

/** Edit distance with insertions, deletions, substitutions and swaps of adjacent characters, each 1. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The command id closest to `id` (ids use `:` between topic and verb), or null when none is close
 * enough to be a typo of it (at most a third of its length, and at least 2, edits away). Ties go to
 * the id that keeps the typed topic.
 */
export function closestCommand(id: string, ids: readonly string[]): string | null {
  const topic = id.includes(':') ? id.slice(0, id.indexOf(':')) : null;
  let best: { id: string; d: number } | null = null;
  for (const candidate of ids) {
    const d = editDistance(id, candidate);
    const sameTopic = topic !== null && candidate.startsWith(`${topic}:`);
    if (best === null || d < best.d || (d === best.d && sameTopic && !best.id.startsWith(`${topic}:`))) {
      best = { id: candidate, d };
    }
  }
  if (best === null || best.d > Math.max(2, Math.floor(id.length / 3))) return null;
  return best.id;
}

async function confirm(question: string): Promise<boolean> {
  const rl = readline.createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = (await rl.question(`${question} [Y/n] `)).trim();
    return answer === '' || /^y(es)?$/i.test(answer);
  } finally {
    rl.close();
  }
}

const hook: Hook<'command_not_found'> = async function (opts) {
  const { config } = opts;
  const hidden = new Set(config.commands.filter((c) => c.hidden).map((c) => c.id));
  const ids = [...config.commandIDs, ...config.commands.flatMap((c) => c.aliases)].filter((id) => !hidden.has(id));
  const topic = opts.id.split(':')[0]!;
  const help = `${config.bin} help${config.findTopic(topic) ? ` ${toConfiguredId(topic, config)}` : ''}`;
  this.warn(`${toConfiguredId(opts.id, config)} is not a ${config.bin} command.`);
  const suggestion = closestCommand(opts.id, ids);
  if (suggestion !== null) {
    const shown = `${config.bin} ${toConfiguredId(suggestion, config)}`;
    if (process.stdin.isTTY && process.stderr.isTTY) {
      if (await confirm(`Did you mean ${shown}?`)) {
        // The words after the mistyped id are the arguments of the suggested command.
        const argv = opts.argv ?? [];
        return config.runCommand(suggestion, argv);
      }
    } else {
      process.stderr.write(`Did you mean ${shown}?\n`);
    }
  }
  this.error(`Run ${help} for a list of available commands.`, { exit: EXIT.USAGE });
};

export default hook;
