/**
 * Renders the systemd template unit `drover@.service` (from `units/drover@.service`) and the
 * per-profile drop-in, and parses an installed unit back (to find the node and CLI paths it runs).
 * Everything here is pure: no process is run and nothing is written.
 *
 * Quoting: unit files have their own syntax (systemd.syntax(7), systemd.service(5)). A path is
 * written as one double-quoted word with C-style escapes (`\\`, `\"`); `%` is a specifier there,
 * so it is doubled, and in command lines `$` starts a variable, so it is doubled too. Control
 * characters are refused: no path that needs them is worth supporting in a unit file.
 *
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';
import { InputError, ServiceError } from '../errors/index.js';
import { droverPackage, packageFile } from './package-root.js';

/** Seconds added to the shutdown grace for TimeoutStopSec: workers exit, leases are released. */
export const DEFAULT_STOP_MARGIN_SECONDS = 15;
/** Default WatchdogSec; the daemon pings at half of it. */
export const DEFAULT_WATCHDOG_SECONDS = 30;
/** Default RestartSec. */
export const DEFAULT_RESTART_SECONDS = 2;
/** Default TimeoutStartSec: connecting workers to a slow broker may take a while. */
export const DEFAULT_START_TIMEOUT_SECONDS = 90;
/** Default StartLimitIntervalSec. */
export const DEFAULT_START_LIMIT_INTERVAL_SECONDS = 300;
/** Default StartLimitBurst. */
export const DEFAULT_START_LIMIT_BURST = 5;

/** Options of {@link renderSystemdUnit}. */
export interface SystemdUnitOptions {
  /** Absolute path of the node binary (usually `process.execPath`). */
  nodePath: string;
  /** Absolute path of drover's `bin/drover.js`. */
  cliPath: string;
  /** `DROVER_HOME` for the daemon, when the user runs with one; absolute. */
  droverHome?: string | null;
  /** Further environment variables for the daemon (names `[A-Za-z_][A-Za-z0-9_]*`). */
  environment?: Readonly<Record<string, string>>;
  /** The profile's `daemon.shutdown_grace` (seconds); TimeoutStopSec covers it plus a margin. */
  shutdownGraceSeconds: number;
  /** Added to the grace for TimeoutStopSec; default {@link DEFAULT_STOP_MARGIN_SECONDS}. */
  stopMarginSeconds?: number;
  /**
   * NotifyAccess: `main` (default) when the daemon sends its notifications itself (the native
   * sd-notify module), `all` when it sends them through the `systemd-notify` program, whose
   * messages come from another process of the unit.
   */
  notifyAccess?: 'main' | 'all';
  /** WatchdogSec (whole seconds, 0 turns the watchdog off); default {@link DEFAULT_WATCHDOG_SECONDS}. */
  watchdogSeconds?: number;
  /** RestartSec; default {@link DEFAULT_RESTART_SECONDS}. */
  restartSeconds?: number;
  /** TimeoutStartSec; default {@link DEFAULT_START_TIMEOUT_SECONDS}. */
  startTimeoutSeconds?: number;
  /** StartLimitIntervalSec; default {@link DEFAULT_START_LIMIT_INTERVAL_SECONDS}. */
  startLimitIntervalSeconds?: number;
  /** StartLimitBurst; default {@link DEFAULT_START_LIMIT_BURST}. */
  startLimitBurst?: number;
  /** Version named in the header comment; default this package's version. */
  droverVersion?: string;
  /** Template text; default the package's `units/drover@.service`. */
  template?: string;
}

/** Options of {@link renderSystemdDropIn}. */
export interface SystemdDropInOptions {
  profile: string;
  /** The profile's `daemon.shutdown_grace` (seconds). */
  shutdownGraceSeconds: number;
  stopMarginSeconds?: number;
  droverVersion?: string;
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Throws an InputError unless `p` is an absolute path without control characters. */
export function checkUnitPath(what: string, p: string): void {
  if (typeof p !== 'string' || p === '' || !path.isAbsolute(p)) {
    throw new InputError(`${what} must be an absolute path, got ${JSON.stringify(p)}`);
  }
  if (CONTROL.test(p)) throw new InputError(`${what} ${JSON.stringify(p)} contains a control character`);
}

function checkSeconds(what: string, v: number, min: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > 86400) {
    throw new InputError(`${what} must be a number of seconds from ${min} to 86400, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** Where a quoted word goes: the program of a command line, one of its arguments, or an assignment. */
export type UnitWordKind = 'executable' | 'argument' | 'assignment';

/**
 * Quotes one word of a unit file setting: double quotes, `\` and `"` escaped, `%` doubled (a
 * specifier otherwise) and, in command-line arguments, `$` doubled (a variable otherwise; systemd
 * does not expand variables in the program path, so there a `$` stays single).
 * @throws InputError on control characters, and on `"` or `\` in a program path, which systemd
 * refuses there ("Executable name contains special characters").
 */
export function quoteUnitWord(text: string, kind: UnitWordKind): string {
  if (CONTROL.test(text)) throw new InputError(`${JSON.stringify(text)} contains a control character`);
  if (kind === 'executable' && /["\\]/.test(text)) {
    throw new InputError(
      `systemd cannot run a program whose path contains '"' or '\\': ${JSON.stringify(text)}; ` +
        'use a symlink without them',
    );
  }
  let out = '';
  for (const ch of text) {
    if (ch === '\\' || ch === '"') out += '\\' + ch;
    else if (ch === '%') out += '%%';
    else if (ch === '$' && kind === 'argument') out += '$$';
    else out += ch;
  }
  return `"${out}"`;
}

/** TimeoutStopSec for a shutdown grace: the grace plus a margin, in whole seconds. */
export function stopTimeoutSeconds(shutdownGraceSeconds: number, margin = DEFAULT_STOP_MARGIN_SECONDS): number {
  checkSeconds('shutdown grace', shutdownGraceSeconds, 0);
  checkSeconds('stop margin', margin, 0);
  return Math.ceil(shutdownGraceSeconds + margin);
}

let templateCache: string | undefined;

/** The text of the package's `units/drover@.service` template. */
export function loadUnitTemplate(): string {
  if (templateCache === undefined) {
    const file = packageFile('units', 'drover@.service');
    try {
      templateCache = fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw new ServiceError(`cannot read the unit template ${file}: ${(err as Error).message}`, { cause: err });
    }
  }
  return templateCache;
}

/**
 * Replaces `@NAME@` placeholders. A line consisting only of a placeholder is replaced by the
 * value's lines, or dropped when the value is empty (optional settings such as Environment=).
 */
export function fillTemplate(template: string, values: Readonly<Record<string, string>>): string {
  const valueOf = (name: string): string => {
    const v = values[name];
    if (v === undefined) throw new ServiceError(`template placeholder @${name}@ has no value`);
    return v;
  };
  // One pass per line, so a value that happens to contain "@X@" is never substituted again.
  return template
    .split('\n')
    .flatMap((line) => {
      const whole = /^@([A-Z_]+)@$/.exec(line.trim());
      if (whole) {
        const v = valueOf(whole[1]!);
        return v === '' ? [] : [v];
      }
      return [line.replace(/@([A-Z_]+)@/g, (_m, name: string) => valueOf(name))];
    })
    .join('\n');
}

/** Renders the template unit `drover@.service`. @throws InputError on a bad path or number. */
export function renderSystemdUnit(opts: SystemdUnitOptions): string {
  checkUnitPath('node path', opts.nodePath);
  checkUnitPath('CLI path', opts.cliPath);
  const env: Array<[string, string]> = [];
  if (opts.droverHome != null && opts.droverHome !== '') {
    checkUnitPath('DROVER_HOME', opts.droverHome);
    env.push(['DROVER_HOME', opts.droverHome]);
  }
  for (const [k, v] of Object.entries(opts.environment ?? {}).sort(([a], [b]) => a.localeCompare(b))) {
    if (!ENV_NAME.test(k)) throw new InputError(`environment variable name ${JSON.stringify(k)} is not valid`);
    if (k === 'DROVER_HOME') throw new InputError('set DROVER_HOME with the droverHome option');
    env.push([k, v]);
  }
  const watchdog = checkSeconds('watchdog', opts.watchdogSeconds ?? DEFAULT_WATCHDOG_SECONDS, 0);
  if (opts.notifyAccess !== undefined && opts.notifyAccess !== 'main' && opts.notifyAccess !== 'all') {
    throw new InputError(`notifyAccess must be 'main' or 'all', got ${JSON.stringify(opts.notifyAccess)}`);
  }
  const values: Record<string, string> = {
    DROVER_VERSION: opts.droverVersion ?? droverPackage().version,
    // JSON quoting keeps odd paths on one readable comment line.
    NODE_PATH_COMMENT: JSON.stringify(opts.nodePath),
    CLI_PATH_COMMENT: JSON.stringify(opts.cliPath),
    EXEC_START: [
      quoteUnitWord(opts.nodePath, 'executable'),
      quoteUnitWord(opts.cliPath, 'argument'),
      'daemon start --foreground --profile %I',
    ].join(' '),
    NOTIFY_ACCESS: opts.notifyAccess ?? 'main',
    ENVIRONMENT: env.map(([k, v]) => `Environment=${quoteUnitWord(`${k}=${v}`, 'assignment')}`).join('\n'),
    TIMEOUT_START_SEC: String(
      Math.ceil(checkSeconds('start timeout', opts.startTimeoutSeconds ?? DEFAULT_START_TIMEOUT_SECONDS, 1)),
    ),
    TIMEOUT_STOP_SEC: String(stopTimeoutSeconds(opts.shutdownGraceSeconds, opts.stopMarginSeconds)),
    RESTART_SEC: String(checkSeconds('restart delay', opts.restartSeconds ?? DEFAULT_RESTART_SECONDS, 0)),
    WATCHDOG_SEC: String(Math.ceil(watchdog)),
    START_LIMIT_INTERVAL_SEC: String(
      Math.ceil(
        checkSeconds('start limit interval', opts.startLimitIntervalSeconds ?? DEFAULT_START_LIMIT_INTERVAL_SECONDS, 1),
      ),
    ),
    START_LIMIT_BURST: String(
      Math.ceil(checkSeconds('start limit burst', opts.startLimitBurst ?? DEFAULT_START_LIMIT_BURST, 1)),
    ),
  };
  return fillTemplate(opts.template ?? loadUnitTemplate(), values);
}

/**
 * Renders the per-profile drop-in `drover@<escaped>.service.d/drover.conf`. The template is
 * shared by all profiles, but TimeoutStopSec depends on each profile's shutdown grace, so it is
 * set here; the drop-in also marks the profile as installed.
 */
export function renderSystemdDropIn(opts: SystemdDropInOptions): string {
  const version = opts.droverVersion ?? droverPackage().version;
  return [
    `# Generated by drover ${version} for profile ${JSON.stringify(opts.profile)}; removed by \`drover daemon uninstall\`.`,
    "# TimeoutStopSec covers this profile's daemon.shutdown_grace plus a margin for the drain.",
    '[Service]',
    `TimeoutStopSec=${stopTimeoutSeconds(opts.shutdownGraceSeconds, opts.stopMarginSeconds)}`,
    '',
  ].join('\n');
}

/** A unit file as sections of key/value pairs in file order (a key may repeat). */
export type UnitFile = Map<string, Array<[string, string]>>;

/** Parses unit file text: sections, `Key=Value`, comments, and lines continued with `\`. */
export function parseUnitFile(text: string): UnitFile {
  const out: UnitFile = new Map();
  let section = '';
  const raw = text.split('\n');
  for (let i = 0; i < raw.length; i++) {
    let line = raw[i]!.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    while (line.endsWith('\\') && i + 1 < raw.length) {
      line = line.slice(0, -1) + ' ' + raw[++i]!.trim();
    }
    const sec = /^\[(.+)\]$/.exec(line);
    if (sec) {
      section = sec[1]!;
      if (!out.has(section)) out.set(section, []);
      continue;
    }
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    if (!out.has(section)) out.set(section, []);
    out.get(section)!.push([line.slice(0, eq).trim(), line.slice(eq + 1).trim()]);
  }
  return out;
}

const C_ESCAPES: Record<string, string> = {
  a: '\x07',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  s: ' ',
  t: '\t',
  v: '\v',
  '\\': '\\',
  '"': '"',
  "'": "'",
};

/**
 * Splits a setting's value into words the way systemd does: whitespace separates words, single
 * and double quotes group, C escapes are decoded, `%%` becomes `%` and, for command lines, `$$`
 * becomes `$` in the arguments (not in the program path, where systemd expands no variables).
 * Other specifiers (`%I`) are kept as written.
 */
export function splitUnitWords(value: string, exec: boolean): string[] {
  const words: string[] = [];
  let i = 0;
  const n = value.length;
  while (i < n) {
    while (i < n && /\s/.test(value[i]!)) i++;
    if (i >= n) break;
    let word = '';
    let quote: string | null = null;
    while (i < n) {
      const ch = value[i]!;
      if (quote === null && /\s/.test(ch)) break;
      if (quote === null && (ch === '"' || ch === "'")) {
        quote = ch;
        i++;
        continue;
      }
      if (quote !== null && ch === quote) {
        quote = null;
        i++;
        continue;
      }
      if (ch === '\\' && i + 1 < n) {
        const next = value[i + 1]!;
        const hex = /^x([0-9a-fA-F]{2})/.exec(value.slice(i + 1));
        const oct = /^([0-7]{3})/.exec(value.slice(i + 1));
        if (hex) {
          word += String.fromCharCode(parseInt(hex[1]!, 16));
          i += 4;
        } else if (oct) {
          word += String.fromCharCode(parseInt(oct[1]!, 8));
          i += 4;
        } else {
          word += C_ESCAPES[next] ?? next;
          i += 2;
        }
        continue;
      }
      if (ch === '%' && value[i + 1] === '%') {
        word += '%';
        i += 2;
        continue;
      }
      if (exec && words.length > 0 && ch === '$' && value[i + 1] === '$') {
        word += '$';
        i += 2;
        continue;
      }
      word += ch;
      i++;
    }
    words.push(word);
  }
  return words;
}

/** What an installed unit runs, parsed back from its ExecStart= and Environment= lines. */
export interface UnitPaths {
  nodePath: string;
  cliPath: string;
  /** DROVER_HOME set by the unit, or null. */
  droverHome: string | null;
}

/**
 * Finds the node and CLI paths (and DROVER_HOME) an installed drover unit runs.
 * @throws ServiceError when the text has no usable ExecStart= in [Service].
 */
export function parseUnitPaths(text: string, where = 'unit file'): UnitPaths {
  const service = parseUnitFile(text).get('Service') ?? [];
  const exec = service.filter(([k]) => k === 'ExecStart').pop();
  if (!exec) throw new ServiceError(`${where}: no ExecStart= in [Service]`);
  // Leading characters like '-' or '@' are prefixes of the command, not part of the path.
  const words = splitUnitWords(exec[1].replace(/^[-@:+!]+/, ''), true);
  if (words.length < 2) throw new ServiceError(`${where}: ExecStart= does not name node and the CLI: ${exec[1]}`);
  let droverHome: string | null = null;
  for (const [k, v] of service) {
    if (k !== 'Environment') continue;
    for (const assignment of splitUnitWords(v, false)) {
      if (assignment.startsWith('DROVER_HOME=')) droverHome = assignment.slice('DROVER_HOME='.length);
    }
  }
  return { nodePath: words[0]!, cliPath: words[1]!, droverHome };
}
