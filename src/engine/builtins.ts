/**
 * Built-in process types:
 * - `core.arithmetic.add` {x, y} → {sum}: for tests, demos and benchmarks.
 * - `core.sleep` {seconds} → {slept}: sleeps; ends early, killed, when the process is killed.
 * - `core.shell` {command: string[], cwd?, env?, timeoutSeconds?, maxOutputBytes?} →
 *   {exitCode, signal, stdout, stderr, stdoutTruncated, stderrTruncated}: runs a real OS command
 *   without a shell, in its own process group (so a kill reaches its children too), which is killed
 *   if the worker dies (see process-groups.ts: it never outlives its worker). Each of stdout
 *   and stderr keeps at most `maxOutputBytes` (default 1 MiB, at most 16 MiB); past that the rest
 *   is counted but dropped and `...Truncated` is true. A non-zero exit finishes the process with
 *   that exit status (a signal gives 128 + its number, a timeout 124); a command that cannot be
 *   started (not found, not executable, bad cwd) excepts with a message saying why. While it runs,
 *   stdout and stderr are also streamed, interleaved as they arrive, to the process's output log
 *   (`ctx.output`, `drover process logs ID`).
 *   A pause stops the command's process group where it is (SIGSTOP; the run keeps its slot), play continues it.
 *
 * @module
 */
import { spawn } from 'node:child_process';
import os from 'node:os';
import type { JsonValue } from '../protocol/index.js';
import { isJsonObject } from '../protocol/index.js';
import { sleep } from '../util/index.js';
import { defineProcess, ExitCode, type ProcessDefinition } from './definition.js';
import { processGroups } from './process-groups.js';

export const addProcess = defineProcess<{ x: number; y: number }, { sum: number }>({
  name: 'core.arithmetic.add',
  description: 'Adds two numbers: {x, y} → {sum}.',
  validateInputs(inputs) {
    if (!isJsonObject(inputs)) return 'expected an object {x: number, y: number}';
    for (const k of ['x', 'y']) {
      if (typeof inputs[k] !== 'number') return `'${k}' must be a number, got ${JSON.stringify(inputs[k] ?? null)}`;
    }
    return null;
  },
  run(_ctx, { x, y }) {
    return { sum: x + y };
  },
});

export const sleepProcess = defineProcess<{ seconds: number }, { slept: number }>({
  name: 'core.sleep',
  description: 'Sleeps for {seconds} (at most a week) → {slept}.',
  validateInputs(inputs) {
    if (!isJsonObject(inputs)) return 'expected an object {seconds: number}';
    const s = inputs.seconds;
    if (typeof s !== 'number' || !(s >= 0) || s > 7 * 24 * 3600) return `'seconds' must be a number from 0 to 604800`;
    return null;
  },
  async run(ctx, { seconds }) {
    await sleep(seconds * 1000, ctx.signal);
    return { slept: seconds };
  },
});

/** Inputs of `core.shell`. */
export interface ShellInputs {
  command: string[];
  cwd?: string;
  env?: { [key: string]: string };
  timeoutSeconds?: number;
  maxOutputBytes?: number;
}

const DEFAULT_MAX_OUTPUT = 1024 * 1024;

class BoundedBuffer {
  private chunks: Buffer[] = [];
  kept = 0;
  total = 0;
  constructor(private readonly max: number) {}
  push(b: Buffer): void {
    this.total += b.length;
    const room = this.max - this.kept;
    if (room <= 0) return;
    const part = b.length <= room ? b : b.subarray(0, room);
    this.chunks.push(part);
    this.kept += part.length;
  }
  get truncated(): boolean {
    return this.total > this.kept;
  }
  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

export const shellProcess = defineProcess<ShellInputs>({
  name: 'core.shell',
  description: 'Runs an OS command without a shell: {command: [file, ...args], cwd?, env?, timeoutSeconds?}.',
  validateInputs(inputs) {
    if (!isJsonObject(inputs)) return 'expected an object {command: string[]}';
    const c = inputs.command;
    if (!Array.isArray(c) || c.length === 0 || !c.every((x) => typeof x === 'string') || c[0] === '') {
      return '\'command\' must be a non-empty array of strings, e.g. ["ls", "-l"]';
    }
    if (inputs.cwd !== undefined && typeof inputs.cwd !== 'string') return "'cwd' must be a string";
    if (inputs.env !== undefined) {
      if (!isJsonObject(inputs.env) || !Object.values(inputs.env).every((v) => typeof v === 'string')) {
        return "'env' must be an object of strings";
      }
    }
    const t = inputs.timeoutSeconds;
    if (t !== undefined && (typeof t !== 'number' || !(t > 0))) return "'timeoutSeconds' must be a positive number";
    const m = inputs.maxOutputBytes;
    if (m !== undefined && (typeof m !== 'number' || !Number.isInteger(m) || m < 0 || m > 16 * 1024 * 1024)) {
      return "'maxOutputBytes' must be an integer from 0 to 16777216";
    }
    return null;
  },
  run(ctx, inputs) {
    const [file, ...args] = inputs.command;
    const max = inputs.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
    return new Promise<JsonValue | ExitCode>((resolve, reject) => {
      const child = spawn(file!, args, {
        cwd: inputs.cwd,
        env: inputs.env ? { ...process.env, ...inputs.env } : process.env,
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true, // own process group: a kill reaches the command's children as well
      });
      const pgid = child.pid;
      if (pgid !== undefined) processGroups.started(pgid, ctx.processId);
      const out = new BoundedBuffer(max);
      const err = new BoundedBuffer(max);
      // Also streamed, as they arrive, to the process's output log (`drover process logs`).
      child.stdout.on('data', (b: Buffer) => {
        out.push(b);
        ctx.output.write(b);
      });
      child.stderr.on('data', (b: Buffer) => {
        err.push(b);
        ctx.output.write(b);
      });
      let why: 'killed' | 'timeout' | null = null;
      let forceTimer: NodeJS.Timeout | undefined;
      // Through processGroups: a group stopped by a pause is continued after the SIGTERM, or it could not act on it.
      const killGroup = (sig: NodeJS.Signals): void => {
        if (child.pid !== undefined) processGroups.signal(child.pid, sig);
      };
      const terminate = (reason: 'killed' | 'timeout'): void => {
        if (why !== null) return;
        why = reason;
        killGroup('SIGTERM');
        forceTimer = setTimeout(() => killGroup('SIGKILL'), 2000);
        forceTimer.unref();
      };
      const onAbort = (): void => terminate('killed');
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      if (ctx.signal.aborted) terminate('killed');
      const timeout =
        inputs.timeoutSeconds !== undefined
          ? setTimeout(() => terminate('timeout'), inputs.timeoutSeconds * 1000)
          : undefined;
      const cleanup = (): void => {
        ctx.signal.removeEventListener('abort', onAbort);
        clearTimeout(timeout);
        clearTimeout(forceTimer);
      };
      child.on('error', (e: NodeJS.ErrnoException) => {
        cleanup();
        if (pgid !== undefined) processGroups.ended(pgid);
        const what =
          e.code === 'ENOENT'
            ? `command not found: '${file}' (or cwd ${JSON.stringify(inputs.cwd ?? process.cwd())} does not exist)`
            : e.code === 'EACCES'
              ? `permission denied running '${file}'`
              : `cannot run '${file}': ${e.message}`;
        reject(new Error(what));
      });
      child.on('close', (code, signal) => {
        cleanup();
        if (pgid !== undefined) processGroups.ended(pgid);
        if (why === 'killed') {
          reject(ctx.signal.reason ?? new Error('killed'));
          return;
        }
        const outputs: JsonValue = {
          exitCode: code,
          signal,
          stdout: out.text(),
          stderr: err.text(),
          stdoutTruncated: out.truncated,
          stderrTruncated: err.truncated,
          stdoutBytes: out.total,
          stderrBytes: err.total,
        };
        if (why === 'timeout') {
          resolve(new ExitCode(124, `command timed out after ${inputs.timeoutSeconds} s and was killed`, outputs));
        } else if (signal !== null) {
          const n = os.constants.signals[signal] ?? 0;
          resolve(new ExitCode(128 + n, `command was killed by ${signal}`, outputs));
        } else if (code !== 0) {
          resolve(new ExitCode(code ?? 1, `command exited with status ${code}`, outputs));
        } else {
          resolve(outputs);
        }
      });
    });
  },
});

/** All built-in process types. */
export const BUILTIN_PROCESSES: readonly ProcessDefinition[] = [
  addProcess as unknown as ProcessDefinition,
  sleepProcess as unknown as ProcessDefinition,
  shellProcess as unknown as ProcessDefinition,
];
