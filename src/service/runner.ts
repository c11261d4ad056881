/**
 * Running the service manager's tools (`systemctl`, `loginctl`, `launchctl`). Installers take a
 * {@link CommandRunner} so tests can record or fake the commands; the default runs them for real.
 *
 * @module
 */
import { execFile } from 'node:child_process';
import { ServiceError } from '../errors/index.js';

/** Outcome of one command; `status` is the exit code (127 when the program was not found). */
export interface CommandResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs `file` with `args` and resolves with its outcome; never rejects for a non-zero exit. */
export type CommandRunner = (file: string, args: readonly string[]) => Promise<CommandResult>;

/** Runs commands for real, with `env` (default `process.env`) and a timeout (default 120 s). */
export function execRunner(env: NodeJS.ProcessEnv = process.env, timeoutMs = 120_000): CommandRunner {
  return (file, args) =>
    new Promise((resolve) => {
      execFile(file, [...args], { env, timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
        if (err === null) return resolve({ status: 0, stdout, stderr });
        const e = err as NodeJS.ErrnoException & { code?: unknown; killed?: boolean; signal?: string };
        if (e.code === 'ENOENT') return resolve({ status: 127, stdout: '', stderr: `${file}: command not found` });
        const status = typeof e.code === 'number' ? e.code : 1;
        const extra = e.killed ? `\n${file}: killed after ${timeoutMs} ms` : '';
        resolve({ status, stdout: stdout ?? '', stderr: (stderr ?? '') + extra });
      });
    });
}

/** Quotes one word for a POSIX shell, only when needed (for the "equivalent manual commands"). */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_/.:=@%+,-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** An argv as a copy-pasteable shell command line. */
export function shellCommand(argv: readonly string[]): string {
  return argv.map(shellQuote).join(' ');
}

/** One command an installer ran (or would run, with --dry-run). */
export interface CommandRecord {
  argv: string[];
  /** The exit code; absent when the command was not run (dry run). */
  status?: number;
  /** Why a failure did not matter (e.g. "not loaded"), when it did not. */
  ignored?: string;
}

/**
 * Runs `argv` with `run`, records it in `log`, and throws a ServiceError that quotes the command
 * and its stderr when it fails, unless `okIf` accepts the result (then the reason is recorded).
 */
export async function runStep(
  run: CommandRunner,
  log: CommandRecord[],
  argv: string[],
  okIf?: (r: CommandResult) => string | null | Promise<string | null>,
  hint?: string,
): Promise<CommandResult> {
  const r = await run(argv[0]!, argv.slice(1));
  const rec: CommandRecord = { argv, status: r.status };
  log.push(rec);
  if (r.status === 0) return r;
  const reason = okIf ? await okIf(r) : null;
  if (reason !== null) {
    rec.ignored = reason;
    return r;
  }
  const detail = (r.stderr.trim() || r.stdout.trim()).split('\n').slice(-5).join('\n');
  throw new ServiceError(
    `\`${shellCommand(argv)}\` failed with exit code ${r.status}${detail ? `: ${detail}` : ''}${hint ? `\n${hint}` : ''}`,
  );
}

/** What a file step of an install or uninstall did (or would do, with --dry-run). */
export interface FileAction {
  path: string;
  action: 'write' | 'remove' | 'keep';
  /** The rendered content, for writes. */
  content?: string;
  /** Why a file was kept or what it is. */
  reason?: string;
}

/** Result of installing or uninstalling a profile's service (`--json` output of the commands). */
export interface ServiceActionResult {
  init: 'systemd' | 'launchd';
  action: 'install' | 'uninstall';
  profile: string;
  /** The systemd instance unit (`drover@<escaped>.service`) or the launchd label. */
  unit: string;
  dryRun: boolean;
  files: FileAction[];
  commands: CommandRecord[];
  /** Shell commands a user could type to do the same by hand (after writing the files). */
  manualCommands: string[];
  warnings: string[];
  /** What to do next, for the user. */
  notes: string[];
}
