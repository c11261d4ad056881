/**
 * Logging. A {@link Logger} writes one line per record, `TIME LEVEL [scope] message`, to one or more
 * sinks. Under systemd (stdout connected to the journal) lines carry `<N>` syslog priority prefixes
 * instead of the time and level, so `journalctl -p warning` works.
 *
 * @module
 */
import fs from 'node:fs';

/** Log levels, least to most severe. */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
/** A log level. */
export type LogLevel = (typeof LOG_LEVELS)[number];

const severity: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };
const syslogPriority: Record<LogLevel, number> = { debug: 7, info: 6, warn: 4, error: 3 };

/** Somewhere log lines go. */
export interface LogSink {
  write(level: LogLevel, scope: string, message: string, time: Date): void;
}

/** The logging interface used everywhere in Drover. */
export interface Logger {
  readonly level: LogLevel;
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
  /** A logger that writes to the same sinks with `scope` appended to this one's. */
  child(scope: string): Logger;
  /** True when a record at `level` would be written. */
  enabled(level: LogLevel): boolean;
}

function formatLine(level: LogLevel, scope: string, message: string, time: Date): string {
  const scopePart = scope === '' ? '' : `[${scope}] `;
  return `${time.toISOString()} ${level.toUpperCase().padEnd(5)} ${scopePart}${message}\n`;
}

/** True when stdout is connected to the systemd journal (systemd sets JOURNAL_STREAM). */
export function stdoutIsJournal(): boolean {
  const js = process.env.JOURNAL_STREAM;
  if (js === undefined || js === '') return false;
  try {
    const st = fs.fstatSync(1);
    const [dev, ino] = js.split(':');
    return String(st.dev) === dev && String(st.ino) === ino;
  } catch {
    return false;
  }
}

/** Streams that failed (see {@link streamSink}). */
const brokenStreams = new WeakSet<NodeJS.WritableStream>();
const watchedStreams = new WeakSet<NodeJS.WritableStream>();

/**
 * Makes a failure of `stream` harmless: its `'error'` (EPIPE when the reading end of a pipe died,
 * e.g. the daemon whose stdout pipe a worker writes to) is caught instead of killing the process,
 * and {@link streamBroken} tells from then on. Safe to call more than once per stream.
 */
export function guardStream(stream: NodeJS.WritableStream): void {
  if (watchedStreams.has(stream)) return;
  watchedStreams.add(stream);
  stream.on('error', () => brokenStreams.add(stream));
}

/** True once `stream` failed (after {@link guardStream}). */
export function streamBroken(stream: NodeJS.WritableStream): boolean {
  return brokenStreams.has(stream);
}

/**
 * A sink writing to a stream (stdout by default); with `journal`, lines get `<N>` prefixes. A
 * failing stream never takes the process down (see {@link guardStream}): records from then on go
 * to `fallback`, or nowhere.
 */
export function streamSink(
  stream: NodeJS.WritableStream = process.stdout,
  journal = false,
  fallback?: LogSink,
): LogSink {
  guardStream(stream);
  return {
    write(level, scope, message, time) {
      if (brokenStreams.has(stream)) {
        fallback?.write(level, scope, message, time);
        return;
      }
      if (journal) {
        const scopePart = scope === '' ? '' : `[${scope}] `;
        const lines = message.split('\n').map((l) => `<${syslogPriority[level]}>${scopePart}${l}\n`);
        stream.write(lines.join(''));
      } else {
        stream.write(formatLine(level, scope, message, time));
      }
    },
  };
}

/** A sink appending to a file (created 0600). Writes are synchronous so nothing is lost on a crash. */
export function fileSink(file: string): LogSink {
  const fd = fs.openSync(file, 'a', 0o600);
  return {
    write(level, scope, message, time) {
      try {
        fs.writeSync(fd, formatLine(level, scope, message, time));
      } catch {
        // A full disk must not crash the daemon; the record is lost.
      }
    },
  };
}

class SinkLogger implements Logger {
  constructor(
    readonly level: LogLevel,
    private readonly sinks: LogSink[],
    private readonly scope: string,
  ) {}

  enabled(level: LogLevel): boolean {
    return severity[level] >= severity[this.level];
  }

  private log(level: LogLevel, message: string): void {
    if (!this.enabled(level)) return;
    const time = new Date();
    for (const sink of this.sinks) sink.write(level, this.scope, message, time);
  }

  debug(message: string): void {
    this.log('debug', message);
  }
  info(message: string): void {
    this.log('info', message);
  }
  warn(message: string): void {
    this.log('warn', message);
  }
  error(message: string): void {
    this.log('error', message);
  }
  child(scope: string): Logger {
    return new SinkLogger(this.level, this.sinks, this.scope === '' ? scope : `${this.scope}:${scope}`);
  }
}

/** Creates a logger writing records at `level` and above to `sinks`. */
export function createLogger(options: { level?: LogLevel; sinks?: LogSink[]; scope?: string } = {}): Logger {
  return new SinkLogger(options.level ?? 'info', options.sinks ?? [streamSink()], options.scope ?? '');
}

/** A logger that drops everything. */
export const silentLogger: Logger = createLogger({ sinks: [] });
