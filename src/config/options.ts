/**
 * The option registry: every configurable option with its type, default, range, description and
 * whether a running daemon must be restarted to pick it up. Values are validated when set and
 * when the configuration file is loaded. Raw values (from the file or the command line) are
 * turned into resolved {@link Options} in one place, here.
 *
 * @module
 */
import path from 'node:path';
import { ConfigError } from '../errors/index.js';
import type { BackoffPolicy } from '../util/backoff.js';
import { moduleSpecProblem } from './module-spec.js';

/** A JSON-compatible option value. */
export type OptionValue = number | string | boolean | string[] | { [key: string]: number };

/** How an option's value is checked and parsed. */
export type OptionType =
  | { kind: 'number'; min?: number; max?: number; integer?: boolean; unit?: string }
  | { kind: 'enum'; choices: readonly string[] }
  | {
      kind: 'string-list';
      /** Why an item is refused (completing "entry 'X' ..."), or null; none: any non-empty string. */
      itemProblem?: (item: string) => string | null;
    }
  | { kind: 'backoff' }
  /** An absolute directory path, or '' for none. */
  | { kind: 'directory' };

/** One entry of the registry. */
export interface OptionSpec {
  name: string;
  type: OptionType;
  default: OptionValue;
  description: string;
  /** True when a running daemon only picks a change up after a restart. */
  restartRequired: boolean;
  /**
   * Where the value lives for a profile whose store is PostgreSQL (several hosts): `shared`, in
   * the store, so a `drover config set` on one host reaches every host's daemon (the store's
   * value wins over the configuration files); `host`, in each host's configuration file.
   * SQLite profiles (one host) keep every option in the file.
   */
  scope: OptionScope;
}

/** See {@link OptionSpec.scope}. */
export type OptionScope = 'shared' | 'host';

const specs: OptionSpec[] = [
  {
    name: 'daemon.timeout',
    type: { kind: 'number', min: 0.05, max: 3600, unit: 'seconds' },
    default: 2,
    description:
      'Seconds the client waits for the daemon to answer before raising DaemonTimeoutException; also bounds ' +
      "each reachability check of drover status, and (at least 1 s) how long a client's close waits for the " +
      "broker's confirms of the tasks it published.",
    scope: 'host',
    restartRequired: false,
  },
  {
    name: 'daemon.default_workers',
    type: { kind: 'number', integer: true, min: 1, max: 256 },
    default: 1,
    description: 'Number of workers the daemon starts when no number is given.',
    scope: 'host',
    restartRequired: true,
  },
  {
    name: 'daemon.worker_process_slots',
    type: { kind: 'number', integer: true, min: 1, max: 100000 },
    default: 200,
    description: 'Maximum number of processes one worker runs at once (also its broker prefetch).',
    scope: 'shared',
    restartRequired: true,
  },
  {
    name: 'daemon.worker_restart_backoff',
    type: { kind: 'backoff' },
    default: { initial: 0.5, max: 30, factor: 2 },
    description:
      'Delay before reviving a worker that died again soon after its start, as {"initial": s, "max": s, ' +
      '"factor": f} (a first death is replaced at once); a worker that dies within 10 s of its start 5 times ' +
      'in a row is reported as crash-looping.',
    scope: 'shared',
    restartRequired: true,
  },
  {
    name: 'daemon.shutdown_grace',
    type: { kind: 'number', min: 0, max: 3600, unit: 'seconds' },
    default: 30,
    description: 'Seconds a stopping worker lets running processes finish before releasing them to other workers.',
    scope: 'host',
    restartRequired: true,
  },
  {
    name: 'daemon.lease_seconds',
    type: { kind: 'number', min: 2, max: 3600, unit: 'seconds' },
    default: 30,
    description:
      "Lease a worker holds on a running process; renewed every third of it. A dead machine's processes " +
      'are re-dispatched after it expires.',
    scope: 'shared',
    restartRequired: true,
  },
  {
    name: 'broker.redispatch_seconds',
    type: { kind: 'number', min: 1, max: 3600, unit: 'seconds' },
    default: 10,
    description:
      'RabbitMQ: a process whose task the broker confirmed but nobody claimed within this many seconds, and ' +
      'that the task queue no longer seems to hold (purged, deleted, a reset broker), is dispatched again; ' +
      'workers check every few seconds, comparing those processes with the queue length.',
    scope: 'shared',
    restartRequired: true,
  },
  {
    name: 'broker.heartbeat_seconds',
    type: { kind: 'number', integer: true, min: 0, max: 600, unit: 'seconds' },
    default: 5,
    description:
      'RabbitMQ: AMQP heartbeat asked for by daemons, workers and clients (the broker may only lower it). ' +
      "A connection silent for about twice this long is dropped, so a dead host's consumer stops receiving " +
      'tasks within seconds, not minutes; 0 turns heartbeats off (then only TCP notices, after minutes). A ' +
      "'heartbeat' in the broker URL's query wins over this option.",
    scope: 'host',
    restartRequired: true,
  },
  {
    name: 'logging.level',
    type: { kind: 'enum', choices: ['debug', 'info', 'warn', 'error'] },
    default: 'info',
    description: 'Minimum level of log records written by the daemon and its workers.',
    scope: 'host',
    restartRequired: true,
  },
  {
    name: 'processes.modules',
    type: { kind: 'string-list', itemProblem: moduleSpecProblem },
    default: [],
    description:
      'Modules that define process types, loaded by workers and submitters: absolute file paths, or package ' +
      'names resolved from processes.modules_root (never from the current directory). URLs and relative paths ' +
      'are refused.',
    scope: 'shared',
    restartRequired: true,
  },
  {
    name: 'processes.modules_root',
    type: { kind: 'directory' },
    default: '',
    description:
      'Directory (absolute path) whose node_modules holds the packages named in processes.modules, e.g. your ' +
      "project's directory; '' (the default): package names are refused, only absolute paths are loaded.",
    scope: 'host',
    restartRequired: true,
  },
  {
    name: 'processes.log_max_bytes',
    type: { kind: 'number', integer: true, min: 1024, max: 1024 * 1024 * 1024, unit: 'bytes' },
    default: 8 * 1024 * 1024,
    description:
      'Largest size of the output log of a process (drover process logs): when the next write would pass it, ' +
      'the file is renamed to <file>.1 (replacing the one before) and started anew, so a process keeps at ' +
      'most twice this on disk, the last of its output.',
    scope: 'shared',
    restartRequired: true,
  },
];

/** All options, by name. */
export const OPTION_SPECS: ReadonlyMap<string, OptionSpec> = new Map(specs.map((s) => [s.name, s]));

/** Resolved option values of a profile, with their types. */
export interface Options {
  'daemon.timeout': number;
  'daemon.default_workers': number;
  'daemon.worker_process_slots': number;
  'daemon.worker_restart_backoff': BackoffPolicy;
  'daemon.shutdown_grace': number;
  'daemon.lease_seconds': number;
  'broker.redispatch_seconds': number;
  'broker.heartbeat_seconds': number;
  'logging.level': 'debug' | 'info' | 'warn' | 'error';
  'processes.modules': string[];
  /** '' when not set. */
  'processes.modules_root': string;
  'processes.log_max_bytes': number;
}

/** Returns the spec of `name` or throws a ConfigError listing the known options. */
export function getOptionSpec(name: string): OptionSpec {
  const spec = OPTION_SPECS.get(name);
  if (!spec) {
    throw new ConfigError(`unknown option '${name}'; known options: ${[...OPTION_SPECS.keys()].join(', ')}`);
  }
  return spec;
}

/** Describes what values an option type accepts, e.g. `an integer from 1 to 256`. */
export function describeOptionType(t: OptionType): string {
  switch (t.kind) {
    case 'number': {
      const what = t.integer ? 'an integer' : 'a number';
      const range =
        t.min !== undefined && t.max !== undefined
          ? ` from ${t.min} to ${t.max}`
          : t.min !== undefined
            ? ` >= ${t.min}`
            : '';
      return `${what}${range}${t.unit ? ` (${t.unit})` : ''}`;
    }
    case 'enum':
      return `one of ${t.choices.join(', ')}`;
    case 'string-list':
      return 'a list of strings';
    case 'directory':
      return "an absolute directory path, or '' for none";
    case 'backoff':
      return 'an object {"initial": seconds > 0, "max": seconds from initial to 3600, "factor": 1 to 100}';
  }
}

/**
 * Validates a value already parsed from JSON (the config file) and returns a copy of it.
 * @param where - where the value came from, for the error message (may be empty).
 * @throws ConfigError naming the option, the expected type and the value given.
 */
export function validateOptionValue(name: string, value: unknown, where: string): OptionValue {
  const spec = getOptionSpec(name);
  const t = spec.type;
  const fail = (): never => {
    const prefix = where === '' ? '' : `${where}: `;
    throw new ConfigError(`${prefix}option '${name}' must be ${describeOptionType(t)}, got ${JSON.stringify(value)}`);
  };
  switch (t.kind) {
    case 'number': {
      if (typeof value !== 'number' || !Number.isFinite(value)) return fail();
      if (t.integer && !Number.isInteger(value)) return fail();
      if (t.min !== undefined && value < t.min) return fail();
      if (t.max !== undefined && value > t.max) return fail();
      return value;
    }
    case 'enum':
      if (typeof value !== 'string' || !t.choices.includes(value)) return fail();
      return value;
    case 'string-list': {
      if (!Array.isArray(value) || !value.every((v) => typeof v === 'string' && v !== '')) return fail();
      const items = value as string[];
      if (t.itemProblem) {
        for (const item of items) {
          const problem = t.itemProblem(item);
          if (problem !== null) {
            throw new ConfigError(`${where === '' ? '' : `${where}: `}option '${name}': entry '${item}' ${problem}`);
          }
        }
      }
      return [...items];
    }
    case 'directory':
      if (typeof value !== 'string' || (value !== '' && !path.isAbsolute(value))) return fail();
      return value;
    case 'backoff': {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail();
      const v = value as Record<string, unknown>;
      const keys = Object.keys(v).sort().join(',');
      if (keys !== 'factor,initial,max') return fail();
      const { initial, max, factor } = v;
      if (typeof initial !== 'number' || typeof max !== 'number' || typeof factor !== 'number') return fail();
      if (!(initial > 0) || !(max >= initial) || !(factor >= 1) || max > 3600 || factor > 100) return fail();
      return { initial, max, factor };
    }
  }
}

/**
 * Parses a value typed on the command line (`drover config set KEY VALUE`) and validates it.
 * Numbers are decimal; lists accept JSON (`["a","b"]`) or comma-separated text; the backoff
 * takes JSON (`{"initial":0.5,"max":30,"factor":2}`).
 * @throws ConfigError naming the option, the expected type and the text given.
 */
export function parseOptionValue(name: string, text: string): OptionValue {
  const spec = getOptionSpec(name);
  const fail = (extra = ''): never => {
    throw new ConfigError(
      `option '${name}' must be ${describeOptionType(spec.type)}, got ${JSON.stringify(text)}${extra}`,
    );
  };
  let value: unknown;
  switch (spec.type.kind) {
    case 'number':
      // Decimal notation only: Number() would also take '0x10', '' and ' '.
      if (!/^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/.test(text)) return fail();
      value = Number(text);
      break;
    case 'enum':
    case 'directory':
      value = text;
      break;
    case 'string-list':
      if (text.trim().startsWith('[')) {
        try {
          value = JSON.parse(text);
        } catch {
          return fail(' (invalid JSON)');
        }
      } else {
        value = text
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s !== '');
      }
      break;
    case 'backoff':
      try {
        value = JSON.parse(text);
      } catch {
        return fail(' (invalid JSON)');
      }
      break;
  }
  const t = spec.type;
  if (t.kind === 'string-list' && t.itemProblem && Array.isArray(value)) {
    // A refused entry gets its own message (why it is refused), not the generic one.
    for (const item of value as unknown[]) {
      const problem = typeof item === 'string' && item !== '' ? t.itemProblem(item) : null;
      if (problem !== null) throw new ConfigError(`option '${name}': entry '${String(item)}' ${problem}`);
    }
  }
  try {
    return validateOptionValue(name, value, '');
  } catch {
    return fail();
  }
}

/** Merges defaults, global values and profile overrides into resolved options. */
export function resolveOptions(
  global: Readonly<Record<string, OptionValue>>,
  profile: Readonly<Record<string, OptionValue>>,
): Options {
  const out: Record<string, OptionValue> = {};
  for (const spec of OPTION_SPECS.values()) {
    // Own properties only, and copies: callers may change what they get without touching the
    // registry's defaults or the configuration in memory.
    const v = Object.hasOwn(profile, spec.name)
      ? profile[spec.name]
      : Object.hasOwn(global, spec.name)
        ? global[spec.name]
        : spec.default;
    out[spec.name] = structuredClone(v as OptionValue);
  }
  return out as unknown as Options;
}

/** True when `profile` keeps its `shared` options in its store: a PostgreSQL store, shared by hosts. */
export function keepsSharedOptions(storage: { backend: string }): boolean {
  return storage.backend === 'postgres';
}

/**
 * `options` with the values of the `shared` options that `stored` (the store's table of them)
 * holds put over them. A stored value that is not a shared option or not valid (written by
 * another version of drover) is left out and reported through `onProblem`.
 */
export function applySharedOptions<T extends object>(
  options: T,
  stored: Readonly<Record<string, unknown>>,
  onProblem: (message: string) => void = () => undefined,
): T {
  const out = structuredClone(options) as Record<string, unknown>;
  for (const [key, value] of Object.entries(stored)) {
    const spec = OPTION_SPECS.get(key);
    if (spec === undefined || spec.scope !== 'shared') {
      onProblem(`the store holds a shared value of '${key}', which is not a shared option here; ignored`);
      continue;
    }
    try {
      out[key] = validateOptionValue(key, value, "the profile's store");
    } catch (err) {
      onProblem(`${(err as Error).message}; this host's value is used`);
    }
  }
  return out as T;
}
