/**
 * Flags of the commands that bin/drover.js answers without oclif (`daemon status`, `process list`,
 * `process submit`), declared once: the oclif command builds its flags from the same declaration (base-command's
 * `oclifFlags`), and the fast path parses argv with {@link parseFastArgv}, which gives up (null) on
 * anything it does not fully understand, so that oclif parses it and reports the error or shows
 * the help exactly as for every other command.
 *
 * @module
 */
import { parseTimeoutSeconds } from './timeout.js';

/** One flag: its kind, short name, help text and, for values, what is accepted. */
export type FastFlag =
  | { kind: 'boolean'; char?: string; description: string }
  | {
      kind: 'string';
      char?: string;
      description: string;
      options?: readonly string[];
      multiple?: boolean;
      /** Flags that cannot be given with this one. */
      exclusive?: readonly string[];
    }
  | { kind: 'integer'; char?: string; description: string; min?: number }
  | { kind: 'timeout'; char?: string; description: string };

/** The flags of a command, by long name. */
export type FastFlags = Record<string, FastFlag>;

/** The value a flag parses to. */
export type FastFlagValue<F extends FastFlag> = F extends { kind: 'boolean' }
  ? boolean
  : F extends { kind: 'integer' | 'timeout' }
    ? number | undefined
    : F extends { multiple: true }
      ? string[] | undefined
      : string | undefined;

/** Parsed flags: each flag's value, plus the global `profile` and `json`. */
export type ParsedFastFlags<S extends FastFlags> = { [K in keyof S]: FastFlagValue<S[K]> } & {
  profile: string | undefined;
  json: boolean;
};

/** The flags every drover command has (see base-command.ts). */
const GLOBAL: FastFlags = {
  profile: { kind: 'string', char: 'p', description: 'Profile to act on (default: the default profile).' },
  json: { kind: 'boolean', description: 'Format output as json.' },
};

/**
 * Parses `argv` (the words after the command id) against `spec` plus the global flags, as oclif
 * would: `--name value`, `--name=value`, `-c value`, `-cvalue`, booleans without a value,
 * repeatable flags collected, `DROVER_PROFILE` standing in for `-p`. Null for anything else
 * (an argument, an unknown flag, `--help`, a bad value, a flag given twice, two exclusive flags).
 */
export function parseFastArgv<S extends FastFlags>(
  argv: readonly string[],
  spec: S,
  env: NodeJS.ProcessEnv = process.env,
): ParsedFastFlags<S> | null {
  const flags: FastFlags = { ...GLOBAL, ...spec };
  const byChar = new Map(
    Object.entries(flags)
      .filter(([, f]) => f.char)
      .map(([name, f]) => [f.char!, name]),
  );
  const out: Record<string, unknown> = {};
  for (const [name, f] of Object.entries(flags)) out[name] = f.kind === 'boolean' ? false : undefined;
  const seen = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    let name: string | undefined;
    let inline: string | undefined;
    const long = /^--([a-z][a-z-]*)(?:=(.*))?$/s.exec(arg);
    const short = /^-([A-Za-z])(.*)$/s.exec(arg);
    if (long) {
      name = long[1];
      inline = long[2];
    } else if (short) {
      name = byChar.get(short[1]!);
      inline = short[2] === '' ? undefined : short[2];
    }
    const f = name === undefined ? undefined : flags[name];
    if (name === undefined || f === undefined) return null;
    const multiple = f.kind === 'string' && f.multiple === true;
    if (seen.has(name) && !multiple) return null;
    seen.add(name);
    if (f.kind === 'boolean') {
      if (inline !== undefined) return null;
      out[name] = true;
      continue;
    }
    const text = inline ?? argv[++i];
    if (text === undefined || (inline === undefined && text.startsWith('-'))) return null;
    switch (f.kind) {
      case 'string':
        if (f.options && !f.options.includes(text)) return null;
        out[name] = multiple ? [...((out[name] as string[] | undefined) ?? []), text] : text;
        break;
      case 'integer': {
        if (!/^-?\d+$/.test(text)) return null;
        const n = Number(text);
        if (!Number.isSafeInteger(n) || (f.min !== undefined && n < f.min)) return null;
        out[name] = n;
        break;
      }
      case 'timeout': {
        const t = parseTimeoutSeconds(text);
        if (t === null) return null;
        out[name] = t;
        break;
      }
    }
  }
  for (const [name, f] of Object.entries(flags)) {
    if (f.kind === 'string' && seen.has(name) && f.exclusive?.some((other) => seen.has(other))) return null;
  }
  if (out.profile === undefined && env.DROVER_PROFILE) out.profile = env.DROVER_PROFILE;
  return out as ParsedFastFlags<S>;
}
