/**
 * `drover process submit`, shared by the oclif command (src/commands/process/submit.ts) and the fast
 * path of bin/drover.js: scripts submit in loops, so a plain submit (no `--wait`) answers without
 * oclif, which is a third of what the command costs to start. `--wait` (its spinner is oclif's),
 * flags before the type and anything else the fast path does not fully understand go to oclif.
 *
 * @module
 */
import type { Profile } from '../config/config.js';
import { resolveProfile } from '../config/config.js';
import { InputError } from '../errors/index.js';
import type { JsonValue } from '../protocol/index.js';
import type { ProcessClient } from '../api/processes.js';
import { EXIT, type ExitCode } from './exit-codes.js';
import { parseFastArgv, type FastFlags, type ParsedFastFlags } from './fast-flags.js';
import { parseKeyValues } from './format.js';
import { jsonText, printError, writeOut } from './output.js';

/** The flags of `drover process submit` (besides -p and --json). */
export const PROCESS_SUBMIT_FLAGS = {
  inputs: { kind: 'string', description: 'Inputs as one JSON value.', exclusive: ['input'] },
  input: { kind: 'string', char: 'i', multiple: true, description: 'An input as key=value (repeatable).' },
  label: { kind: 'string', description: 'A label to find the process by.' },
  wait: { kind: 'boolean', description: 'Wait until the process terminates and print its outcome.' },
  timeout: {
    kind: 'timeout',
    char: 't',
    description: 'With --wait: give up waiting after this many seconds (exit 5; the process goes on).',
  },
} as const satisfies FastFlags;

/** Parsed flags of `drover process submit`. */
export type ProcessSubmitFlags = ParsedFastFlags<typeof PROCESS_SUBMIT_FLAGS>;

/** The inputs given by `--inputs JSON` or `-i key=value...` (none: `{}`); an {@link InputError} if bad. */
export function submissionInputs(f: Pick<ProcessSubmitFlags, 'inputs' | 'input'>): JsonValue {
  if (f.inputs !== undefined) {
    try {
      return JSON.parse(f.inputs) as JsonValue;
    } catch (err) {
      throw new InputError(`--inputs is not valid JSON: ${(err as Error).message}`);
    }
  }
  if (f.input) {
    try {
      return parseKeyValues(f.input) as JsonValue;
    } catch (err) {
      throw new InputError((err as Error).message);
    }
  }
  return {};
}

/**
 * Submits one process of `type` to `profile`, warns (through `notice`) when no daemon is there to
 * run it, then runs `then` with the open client and the new id, and closes the client. The client's
 * own warnings (an unreachable broker: the process is stored, its dispatch pending) are the user's
 * to see, once each, through `notice` too.
 */
export async function submitFromCli<R>(
  profile: Profile,
  type: string,
  inputs: JsonValue,
  label: string | undefined,
  notice: (line: string) => void,
  then: (client: ProcessClient, id: number) => Promise<R>,
): Promise<R> {
  const { ProcessClient } = await import('../api/processes.js');
  const { createLogger } = await import('../logging/index.js');
  const logger = createLogger({
    level: 'warn',
    sinks: [{ write: (_level, _scope, message) => notice(`Warning: ${message}`) }],
  });
  const client = await ProcessClient.open(profile, { logger });
  try {
    const id = await client.submit(type, inputs, { label });
    const { nobodyToRun } = await import('../api/wait.js');
    const warning = await nobodyToRun(client);
    if (warning !== null) notice(`Warning: ${warning}`);
    return await then(client, id);
  } finally {
    await client.close();
  }
}

/**
 * The fast path: runs `drover process submit ARGV` without oclif and resolves with the exit code,
 * or with null when ARGV is not for it (see cli/fast-flags.ts): the type must come first, and
 * `--wait` goes to oclif.
 */
export async function fastProcessSubmit(argv: readonly string[]): Promise<ExitCode | null> {
  const [type, ...rest] = argv;
  if (type === undefined || type.startsWith('-')) return null;
  const f = parseFastArgv(rest, PROCESS_SUBMIT_FLAGS);
  if (f === null || f.wait || f.timeout !== undefined) return null;
  const notice = (line: string): void => writeOut(process.stderr, line + '\n');
  try {
    const inputs = submissionInputs(f);
    // As every command: on first use (no configuration file) the profile is created, with a notice.
    const profile = resolveProfile(f.profile, { onCreate: notice });
    const id = await submitFromCli(profile, type, inputs, f.label, notice, async (_client, id) => id);
    writeOut(process.stdout, f.json ? jsonText({ id, type }) : `Submitted ${type} as process ${id}.\n`);
    return EXIT.OK;
  } catch (err) {
    return printError(err, f.json);
  }
}
