/**
 * How drover commands print JSON and errors, without oclif (the fast paths in bin/drover.js use
 * it; the oclif base command wraps it).
 *
 * @module
 */
import { DroverError, errorMessage } from '../errors/index.js';
import { exitCodeOf, type ExitCode } from './exit-codes.js';

/**
 * Largest JSON text (in UTF-16 code units) that is worth colorizing on a terminal. oclif's
 * colorizer runs one regular expression per token over the whole text and overflows the regexp
 * stack on a string of a few MiB (Drover allows 16 MiB outputs), so anything larger is printed
 * plain.
 */
export const MAX_COLORIZED_JSON = 256 * 1024;

/** `value` as the JSON a command prints: two-space indented, one trailing newline. */
export function jsonText(value: unknown): string {
  return JSON.stringify(value, null, 2) + '\n';
}

/** Writes `text` to a stream; a closed pipe (`drover ... | head`) ends the output quietly. */
export function writeOut(stream: NodeJS.WriteStream, text: string): void {
  try {
    stream.write(text);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPIPE') throw err;
  }
}

/** What a command reports when `err` escapes it: the `code` and `message` of its JSON error object. */
export interface ErrorReport {
  code: string;
  message: string;
  exit: ExitCode;
}

/**
 * The report of an error that escaped a command: a Drover error's own code, `INTERNAL` for
 * anything else (a bug: the stack is printed when DEBUG is set).
 */
export function errorReport(err: unknown): ErrorReport {
  const code = err instanceof DroverError ? err.code : 'INTERNAL';
  return { code, message: errorMessage(err).trim(), exit: exitCodeOf(err) };
}

/**
 * Prints an error as commands do: with `json`, `{"error": {"code", "message"}}` on stdout;
 * otherwise `Error: <message>` on stderr. Returns the exit code to end with.
 */
export function printError(err: unknown, json: boolean): ExitCode {
  const r = errorReport(err);
  if (json) writeOut(process.stdout, jsonText({ error: { code: r.code, message: r.message } }));
  else {
    if (r.code === 'INTERNAL' && process.env.DEBUG && err instanceof Error && err.stack) {
      writeOut(process.stderr, err.stack + '\n');
    }
    writeOut(process.stderr, `Error: ${r.message}\n`);
  }
  return r.exit;
}
