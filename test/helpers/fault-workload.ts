/**
 * A mixed workload for fault tests, and the count of what ran twice: `core.shell` commands that
 * log their start and end, `examples.shell_pipeline` workflows whose steps are such commands (run
 * as child processes), and `test.append_steps` processes whose journaled steps append a line each.
 * Every command and step has a tag of its own, so a repeat shows up as a tag logged twice. Quick
 * `test.record_add` processes keep the store busy with claims and completions (a transaction in
 * flight at almost any moment); each appends its id to a file when it runs.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ProcessClient } from '../../src/api/processes.js';
import type { ProcessRecord } from '../../src/index.js';
import { REPO_ROOT } from './env.js';

/** The module of `examples.shell_pipeline`, for `processes.modules`. */
export const SHELL_PIPELINE_MODULE = path.join(REPO_ROOT, 'dist', 'examples', 'shell-pipeline.js');

/** What a fault test submitted. */
export interface Workload {
  /** Directory of the run logs. */
  dir: string;
  /** Ids of the submitted top-level processes. */
  ids: number[];
}

/** A command logging `start <tag> <pid>` and `end <tag> <pid>` around a sleep. */
function loggedCommand(log: string, tag: string, seconds: number): string[] {
  return ['sh', '-c', `echo "start ${tag} $$" >> '${log}'; sleep ${seconds}; echo "end ${tag} $$" >> '${log}'`];
}

/**
 * Submits `shells` shell commands of `seconds` each, `workflows` pipelines of three shorter ones,
 * `stepped` processes of four 300 ms steps and `quick` additions; `round` keeps the tags of several
 * calls apart.
 */
export async function submitWorkload(
  client: ProcessClient,
  dir: string,
  counts: { shells: number; workflows: number; stepped: number; quick?: number; seconds?: number; round?: string },
): Promise<number[]> {
  const log = path.join(dir, 'commands.log');
  const r = counts.round ?? 'a';
  const seconds = counts.seconds ?? 1;
  const ids: number[] = [];
  ids.push(
    ...(await client.submitMany(
      'core.shell',
      Array.from({ length: counts.shells }, (_, k) => ({ command: loggedCommand(log, `${r}-shell-${k}`, seconds) })),
    )),
  );
  ids.push(
    ...(await client.submitMany(
      'examples.shell_pipeline',
      Array.from({ length: counts.workflows }, (_, k) => ({
        commands: [0, 1, 2].map((i) => loggedCommand(log, `${r}-wf-${k}-${i}`, seconds / 2)),
      })),
    )),
  );
  ids.push(
    ...(await client.submitMany(
      'test.append_steps',
      Array.from({ length: counts.stepped }, (_, k) => ({
        file: path.join(dir, `steps-${r}-${k}.log`),
        steps: 4,
        delayMs: 300,
      })),
    )),
  );
  if ((counts.quick ?? 0) > 0) {
    const file = path.join(dir, 'quick.log');
    ids.push(
      ...(await client.submitMany(
        'test.record_add',
        Array.from({ length: counts.quick! }, (_, k) => ({ x: k, y: 1, file })),
      )),
    );
  }
  return ids;
}

/** What ran more than once, and what overlapped. */
export interface RepeatCount {
  /** Commands (by tag) started more than once. */
  commandsTwice: string[];
  /** Commands (by tag) that started again before their earlier run ended. */
  commandsOverlapping: string[];
  /** Journaled steps (file:step) that ran more than once. */
  stepsTwice: string[];
  /** Quick processes (by id) that ran more than once. */
  quickTwice: number[];
  /** Commands started, in all. */
  commandStarts: number;
}

/** Reads the run logs of a workload directory. */
export function countRepeats(dir: string): RepeatCount {
  const log = path.join(dir, 'commands.log');
  const starts = new Map<string, number>();
  const open = new Map<string, number>();
  const overlapping = new Set<string>();
  let commandStarts = 0;
  const text = fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '';
  for (const line of text.split('\n')) {
    const [what, tag] = line.split(' ');
    if (tag === undefined) continue;
    if (what === 'start') {
      commandStarts++;
      starts.set(tag, (starts.get(tag) ?? 0) + 1);
      if ((open.get(tag) ?? 0) > 0) overlapping.add(tag);
      open.set(tag, (open.get(tag) ?? 0) + 1);
    } else if (what === 'end') {
      open.set(tag, (open.get(tag) ?? 1) - 1);
    }
  }
  const stepsTwice: string[] = [];
  for (const f of fs.readdirSync(dir).filter((n) => n.startsWith('steps-'))) {
    const seen = new Map<string, number>();
    for (const l of fs.readFileSync(path.join(dir, f), 'utf8').split('\n')) {
      if (l !== '') seen.set(l, (seen.get(l) ?? 0) + 1);
    }
    for (const [step, n] of seen) if (n > 1) stepsTwice.push(`${f}:${step}`);
  }
  const quick = new Map<number, number>();
  const quickLog = path.join(dir, 'quick.log');
  for (const l of fs.existsSync(quickLog) ? fs.readFileSync(quickLog, 'utf8').split('\n') : []) {
    if (l !== '') quick.set(Number(l), (quick.get(Number(l)) ?? 0) + 1);
  }
  return {
    quickTwice: [...quick].filter(([, n]) => n > 1).map(([id]) => id),
    commandsTwice: [...starts].filter(([, n]) => n > 1).map(([t]) => t),
    commandsOverlapping: [...overlapping],
    stepsTwice,
    commandStarts,
  };
}

/** Every process of the profile (children too), oldest first. */
export async function allProcesses(client: ProcessClient): Promise<ProcessRecord[]> {
  return (await client.listProcesses({})).reverse();
}
