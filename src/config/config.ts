/**
 * The configuration file: global option values and profiles, modelled on AiiDA's `config.json`.
 *
 * The file is always written atomically (temp file, fsync, rename) with mode 0600, since it holds
 * broker and database passwords. A file that does not parse or validate is never overwritten:
 * loading it throws a {@link ConfigError} naming the file and what is wrong (JSON line and column,
 * or the key and the expected type). A file written by a newer version of Drover is refused.
 * Unknown keys are rejected rather than dropped, so that saving never silently loses what a user
 * wrote by hand (a typo such as `"brokr"` is reported, not erased).
 *
 * Two commands changing the file at the same time must not lose each other's change: a save
 * checks that the file still holds what was loaded and otherwise fails without writing.
 *
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { ConfigError, ProfileError, ProfileNotFoundError } from '../errors/index.js';
import { writeFileAtomicSync, ensurePrivateDir } from '../util/fs.js';
import { configFilePath, dataDir } from './paths.js';
import { validateProfileName } from './profile-name.js';
import { findJsonSyntaxError } from './json-position.js';
import {
  OPTION_SPECS,
  describeOptionType,
  getOptionSpec,
  resolveOptions,
  validateOptionValue,
  type OptionScope,
  type OptionValue,
  type Options,
} from './options.js';

/** Version of the file format this code writes and understands. */
export const CONFIG_VERSION = 1;

/** Where a profile keeps its processes. */
export type StorageSettings = { backend: 'sqlite'; path: string } | { backend: 'postgres'; url: string };

/** RabbitMQ settings as written in the file: a URL, or its parts (missing parts from the default URL). */
export type RabbitBrokerSettingsRaw =
  | { kind?: 'rabbitmq'; url: string }
  | { kind?: 'rabbitmq'; host?: string; port?: number; user?: string; password?: string; vhost?: string };

/**
 * The profile's message bus, as written in the file:
 * - `{ "kind": "local" }`: the daemon is the broker (one machine, nothing else to install);
 * - RabbitMQ settings (`kind` `"rabbitmq"`, or no `kind` at all: files written before the local
 *   bus existed keep meaning what they meant).
 */
export type BrokerSettingsRaw = { kind: 'local' } | RabbitBrokerSettingsRaw;

/** A profile as stored in the file. */
export interface ProfileRecord {
  uuid: string;
  storage: StorageSettings;
  broker: BrokerSettingsRaw;
  options: Record<string, OptionValue>;
}

/** The whole file. */
export interface ConfigData {
  version: number;
  default_profile: string | null;
  options: Record<string, OptionValue>;
  profiles: Record<string, ProfileRecord>;
}

/** The embedded bus: the profile's daemon carries tasks, control requests and events. */
export interface LocalBrokerSettings {
  kind: 'local';
  /** For display: `local (the daemon)`. */
  displayUrl: string;
}

/** Resolved RabbitMQ settings of a profile. */
export interface RabbitBrokerSettings {
  kind: 'rabbitmq';
  /** Full AMQP URL including credentials. */
  url: string;
  host: string;
  port: number;
  user: string;
  vhost: string;
  /** The URL with the password hidden, for display. */
  displayUrl: string;
}

/** Resolved broker settings of a profile (see {@link BrokerSettingsRaw}). */
export type BrokerSettings = LocalBrokerSettings | RabbitBrokerSettings;

/** The message-bus kinds a profile can use. */
export const BROKER_KINDS = ['local', 'rabbitmq'] as const;
/** A message-bus kind. */
export type BrokerKind = (typeof BROKER_KINDS)[number];

/** What a local profile shows as its broker. */
export const LOCAL_BROKER_DISPLAY = 'local (the daemon)';

/** A fully resolved profile: what the daemon, workers and clients work with. */
export interface Profile {
  name: string;
  uuid: string;
  storage: StorageSettings;
  broker: BrokerSettings;
  options: Options;
  /** The configuration file the profile came from. */
  configFile: string;
}

/** Default broker URL: RabbitMQ on localhost with the guest account. */
export const DEFAULT_BROKER_URL = 'amqp://guest:guest@127.0.0.1:5672';

/** Returns `url` with its password (if any) replaced by `***`; text that is not a URL is returned as is. */
export function hideUrlPassword(url: string): string {
  try {
    const u = new URL(url);
    if (u.password === '') return url;
    u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

/** A one-line description of a storage setting for display, e.g. `sqlite:/path` (passwords hidden). */
export function describeStorage(storage: StorageSettings): string {
  return storage.backend === 'sqlite' ? `sqlite:${storage.path}` : hideUrlPassword(storage.url);
}

/** Resolves raw broker settings (for RabbitMQ: into a URL and its parts). */
export function resolveBroker(raw: BrokerSettingsRaw): BrokerSettings {
  if (raw.kind === 'local') return { kind: 'local', displayUrl: LOCAL_BROKER_DISPLAY };
  let url: URL;
  if ('url' in raw && typeof raw.url === 'string') {
    url = new URL(raw.url);
  } else {
    const r = raw as { host?: string; port?: number; user?: string; password?: string; vhost?: string };
    url = new URL(DEFAULT_BROKER_URL);
    if (r.host !== undefined) url.hostname = r.host;
    if (r.port !== undefined) url.port = String(r.port);
    if (r.user !== undefined) url.username = encodeURIComponent(r.user);
    if (r.password !== undefined) url.password = encodeURIComponent(r.password);
    if (r.vhost !== undefined) url.pathname = '/' + encodeURIComponent(r.vhost);
  }
  const port = url.port === '' ? (url.protocol === 'amqps:' ? 5671 : 5672) : Number(url.port);
  const vhost = url.pathname.length > 1 ? decodeURIComponent(url.pathname.slice(1)) : '/';
  return {
    kind: 'rabbitmq',
    url: url.toString(),
    host: url.hostname,
    port,
    user: decodeURIComponent(url.username),
    vhost,
    displayUrl: hideUrlPassword(url.toString()),
  };
}

function checkBrokerUrl(text: string, where: string): void {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(`${where}: broker URL ${JSON.stringify(hideUrlPassword(text))} is not a valid URL`);
  }
  if (url.protocol !== 'amqp:' && url.protocol !== 'amqps:') {
    throw new ConfigError(
      `${where}: broker URL must start with amqp:// or amqps://, got ${JSON.stringify(hideUrlPassword(text))}`,
    );
  }
  if (url.hostname === '')
    throw new ConfigError(`${where}: broker URL ${JSON.stringify(hideUrlPassword(text))} has no host`);
}

function checkPostgresUrl(text: string, where: string): void {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(`${where}: PostgreSQL URL ${JSON.stringify(hideUrlPassword(text))} is not a valid URL`);
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new ConfigError(
      `${where}: PostgreSQL URL must start with postgres:// or postgresql://, got ${JSON.stringify(hideUrlPassword(text))}`,
    );
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function rejectUnknownKeys(obj: Record<string, unknown>, allowed: readonly string[], where: string): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) {
      throw new ConfigError(`${where}: unknown key '${k}' (allowed: ${allowed.join(', ')})`);
    }
  }
}

function validateOptions(raw: unknown, where: string): Record<string, OptionValue> {
  if (raw === undefined) return {};
  if (!isObject(raw)) throw new ConfigError(`${where} must be an object`);
  const out: Record<string, OptionValue> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (!OPTION_SPECS.has(k)) {
      throw new ConfigError(`${where}: unknown option '${k}'; known options: ${[...OPTION_SPECS.keys()].join(', ')}`);
    }
    out[k] = validateOptionValue(k, v, where);
  }
  return out;
}

function validateBroker(broker: unknown, where: string): BrokerSettingsRaw {
  if (!isObject(broker)) throw new ConfigError(`${where} must be an object`);
  const kind = broker.kind;
  if (kind === 'local') {
    rejectUnknownKeys(broker, ['kind'], `${where} (a local broker has no settings)`);
    return { kind: 'local' };
  }
  if (kind !== undefined && kind !== 'rabbitmq') {
    throw new ConfigError(`${where}.kind must be "local" or "rabbitmq", got ${JSON.stringify(kind)}`);
  }
  const tag = kind === undefined ? {} : { kind: 'rabbitmq' as const };
  if ('url' in broker) {
    rejectUnknownKeys(broker, ['kind', 'url'], `${where} (a 'url' cannot be combined with host, port, ...)`);
    if (typeof broker.url !== 'string') throw new ConfigError(`${where}.url must be a string`);
    checkBrokerUrl(broker.url, `${where}.url`);
    return { ...tag, url: broker.url };
  }
  rejectUnknownKeys(broker, ['kind', 'host', 'port', 'user', 'password', 'vhost'], where);
  const b: { kind?: 'rabbitmq'; host?: string; port?: number; user?: string; password?: string; vhost?: string } = {
    ...tag,
  };
  for (const key of ['host', 'user', 'password', 'vhost'] as const) {
    const v = broker[key];
    if (v === undefined) continue;
    if (typeof v !== 'string') throw new ConfigError(`${where}.${key} must be a string`);
    b[key] = v;
  }
  if (b.host !== undefined && !/^([A-Za-z0-9._~%-]+|\[[0-9A-Fa-f:.]+\])$/.test(b.host)) {
    throw new ConfigError(`${where}.host is not a valid host name: ${JSON.stringify(b.host)}`);
  }
  if (broker.port !== undefined) {
    const p = broker.port;
    if (typeof p !== 'number' || !Number.isInteger(p) || p < 1 || p > 65535) {
      throw new ConfigError(`${where}.port must be an integer from 1 to 65535, got ${JSON.stringify(p)}`);
    }
    b.port = p;
  }
  return b;
}

function validateProfileRecord(name: string, raw: unknown, file: string): ProfileRecord {
  try {
    validateProfileName(name);
  } catch (err) {
    throw new ConfigError(`${file}: in 'profiles': ${(err as Error).message}`);
  }
  return validateProfileBody(raw, `${file}: profiles.${name}`, ['uuid', 'storage', 'broker', 'options']);
}

/**
 * Validates the settings of a profile (`uuid`, `storage`, `broker`, `options`) in `raw`, which may
 * hold the keys in `allowed` only; messages name fields as `<where>.<field>` (with `where` ending in
 * ':' or ' ', no dot is put in between).
 * @throws ConfigError naming the field and what is wrong.
 */
export function validateProfileBody(raw: unknown, where: string, allowed: readonly string[]): ProfileRecord {
  const at = (field: string): string => (/[: ]$/.test(where) ? `${where}${field}` : `${where}.${field}`);
  if (!isObject(raw)) throw new ConfigError(`${where.replace(/[: ]+$/, '')} must be an object`);
  rejectUnknownKeys(raw, allowed, where.replace(/[: ]+$/, ''));
  const { uuid, storage, broker, options } = raw;
  if (typeof uuid !== 'string' || !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(uuid)) {
    throw new ConfigError(`${at('uuid')} must be a UUID string, got ${JSON.stringify(uuid)}`);
  }
  if (!isObject(storage)) throw new ConfigError(`${at('storage')} must be an object`);
  let st: StorageSettings;
  if (storage.backend === 'sqlite') {
    rejectUnknownKeys(storage, ['backend', 'path'], at('storage'));
    if (typeof storage.path !== 'string' || storage.path === '') {
      throw new ConfigError(`${at('storage.path')} must be a non-empty string`);
    }
    if (!path.isAbsolute(storage.path)) {
      throw new ConfigError(`${at('storage.path')} must be an absolute path, got ${JSON.stringify(storage.path)}`);
    }
    st = { backend: 'sqlite', path: storage.path };
  } else if (storage.backend === 'postgres') {
    rejectUnknownKeys(storage, ['backend', 'url'], at('storage'));
    if (typeof storage.url !== 'string') throw new ConfigError(`${at('storage.url')} must be a string`);
    checkPostgresUrl(storage.url, at('storage.url'));
    st = { backend: 'postgres', url: storage.url };
  } else {
    throw new ConfigError(
      `${at('storage.backend')} must be "sqlite" or "postgres", got ${JSON.stringify(storage.backend)}`,
    );
  }
  const br = validateBroker(broker, at('broker'));
  return { uuid, storage: st, broker: br, options: validateOptions(options, at('options')) };
}

/**
 * Parses and validates the text of a configuration file.
 * @throws ConfigError naming `file` and what is wrong; the message never quotes the file's content
 *   beyond the offending key (it may hold passwords).
 */
export function parseConfig(text: string, file: string): ConfigData {
  // Editors on some systems add a byte-order mark; it is not JSON but means no harm.
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  let raw: unknown;
  try {
    raw = JSON.parse(body);
  } catch (err) {
    const problem = findJsonSyntaxError(body);
    if (problem) {
      throw new ConfigError(
        `${file}: invalid JSON at line ${problem.line}, column ${problem.column}: ${problem.reason}`,
        { cause: err },
      );
    }
    throw new ConfigError(`${file}: invalid JSON`, { cause: err });
  }
  if (!isObject(raw)) throw new ConfigError(`${file}: the top level must be a JSON object`);
  const version = raw.version;
  if (version === undefined) throw new ConfigError(`${file}: 'version' is missing (expected ${CONFIG_VERSION})`);
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1) {
    throw new ConfigError(`${file}: 'version' must be a positive integer, got ${JSON.stringify(version)}`);
  }
  if (version > CONFIG_VERSION) {
    throw new ConfigError(
      `${file}: written by a newer version of Drover (config version ${version}; this one understands up to ` +
        `${CONFIG_VERSION}); refusing to read or change it`,
    );
  }
  rejectUnknownKeys(raw, ['version', 'default_profile', 'options', 'profiles'], file);
  const profilesRaw = raw.profiles ?? {};
  if (!isObject(profilesRaw)) throw new ConfigError(`${file}: 'profiles' must be an object`);
  const profiles: Record<string, ProfileRecord> = {};
  for (const [name, p] of Object.entries(profilesRaw)) profiles[name] = validateProfileRecord(name, p, file);
  const def = raw.default_profile ?? null;
  if (def !== null && typeof def !== 'string') {
    throw new ConfigError(`${file}: 'default_profile' must be a string or null`);
  }
  if (def !== null && !Object.hasOwn(profiles, def)) {
    throw new ConfigError(`${file}: 'default_profile' names profile '${def}', which is not in 'profiles'`);
  }
  return {
    version: CONFIG_VERSION,
    default_profile: def,
    options: validateOptions(raw.options, `${file}: options`),
    profiles,
  };
}

/** The text {@link Config.save} writes for `data`. */
function serialize(data: ConfigData): string {
  return JSON.stringify(data, null, 2) + '\n';
}

/** Reads a file, or returns null when it does not exist. */
function readIfExists(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new ConfigError(`${file}: cannot read: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Creates `file` with `text` only if it does not exist, atomically: a complete temp file is
 * hard-linked to the name, which fails when the name is taken. Returns false when it existed.
 */
function createExclusiveSync(file: string, text: string): boolean {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.new`);
  writeFileAtomicSync(tmp, text, 0o600);
  try {
    fs.linkSync(tmp, file);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    // File systems without hard links: fall back to check-then-rename (a tiny race remains).
    if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOSYS') {
      if (fs.existsSync(file)) return false;
      fs.renameSync(tmp, file);
      return true;
    }
    throw err;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/** Arguments of {@link Config.setupProfile}. */
export interface ProfileSetup {
  storage?: 'sqlite' | 'postgres';
  postgresUrl?: string;
  /** SQLite file; default `<data dir>/processes.sqlite`. Relative paths are resolved against the cwd. */
  sqlitePath?: string;
  /** Message bus (default `local`, or `rabbitmq` when `brokerUrl` is given). */
  broker?: BrokerKind;
  /** RabbitMQ URL (default {@link DEFAULT_BROKER_URL}); only with `broker: 'rabbitmq'`. */
  brokerUrl?: string;
  setDefault?: boolean;
}

/** One row of {@link Config.describeOptions}. */
export interface OptionEntry {
  name: string;
  /** Effective value for the scope asked about. */
  value: OptionValue;
  /**
   * Where the value comes from: the default, the file's global or per-profile value, or the
   * profile's store (a shared option of a PostgreSQL profile; filled in by the CLI, which reads it).
   */
  source: 'default' | 'global' | 'profile' | 'store';
  /** `shared` (in the store of a PostgreSQL profile, for every host) or `host` (this host's file). */
  scope: OptionScope;
  default: OptionValue;
  /** What values are accepted, e.g. `an integer from 1 to 256`. */
  type: string;
  description: string;
  restartRequired: boolean;
}

/**
 * The configuration in memory. Changes are made on a copy, validated as a whole, and written with
 * {@link Config.save}; a change that fails validation leaves both the object and the file untouched.
 */
export class Config {
  private constructor(
    /** Absolute path of the file. */
    readonly file: string,
    private data: ConfigData,
    /** The file's text as loaded (null: it did not exist); a save checks it is still there. */
    private loadedText: string | null,
  ) {}

  /** Loads the configuration file (or an empty configuration when there is none). */
  static load(file: string = configFilePath()): Config {
    const text = readIfExists(file);
    if (text === null) {
      return new Config(file, { version: CONFIG_VERSION, default_profile: null, options: {}, profiles: {} }, null);
    }
    return new Config(file, parseConfig(text, file), text);
  }

  /** False when the file does not exist (yet). */
  get exists(): boolean {
    return this.loadedText !== null;
  }

  /** A deep copy of the file's data. */
  toJSON(): ConfigData {
    return structuredClone(this.data);
  }

  /** Names of all profiles, sorted. */
  get profileNames(): string[] {
    return Object.keys(this.data.profiles).sort();
  }

  /** Name of the default profile, if any. */
  get defaultProfile(): string | null {
    return this.data.default_profile;
  }

  /** True when a profile of that name exists (the name is validated first). */
  hasProfile(name: string): boolean {
    validateProfileName(name);
    return Object.hasOwn(this.data.profiles, name);
  }

  /** The stored record of a profile. */
  getProfileRecord(name: string): ProfileRecord {
    if (!this.hasProfile(name)) {
      const known = this.profileNames;
      throw new ProfileNotFoundError(
        `profile '${name}' does not exist in ${this.file}` +
          (known.length ? ` (profiles: ${known.join(', ')})` : ' (it has no profiles)'),
      );
    }
    return structuredClone(this.data.profiles[name]!);
  }

  /** A resolved profile. */
  getProfile(name: string): Profile {
    const rec = this.getProfileRecord(name);
    return {
      name,
      uuid: rec.uuid,
      storage: rec.storage,
      broker: resolveBroker(rec.broker),
      options: resolveOptions(this.data.options, rec.options),
      configFile: this.file,
    };
  }

  /** Global option values set in the file. */
  get globalOptions(): Record<string, OptionValue> {
    return structuredClone(this.data.options);
  }

  /**
   * The name of the profile to act on: `name`, else `DROVER_PROFILE`, else the default profile.
   * @throws ProfileError for an invalid name, ProfileNotFoundError when it does not exist or no
   *   profile was named and there is no default.
   */
  currentProfileName(name?: string, env: NodeJS.ProcessEnv = process.env): string {
    const wanted = name ?? (env.DROVER_PROFILE ? env.DROVER_PROFILE : undefined);
    const target = wanted ?? this.defaultProfile;
    if (target === null) {
      throw new ProfileNotFoundError(
        `no profile given and no default profile in ${this.file}; create one with 'drover profile setup NAME' ` +
          `or choose one with 'drover profile set-default NAME'`,
      );
    }
    this.getProfileRecord(target);
    return target;
  }

  /**
   * First use: when the file does not exist yet, adds the profile `name` (default `default`) in
   * memory (SQLite store under the data dir, the local bus) as the default, and returns
   * the one-line notice to show. Returns null when the file exists (nothing is changed then).
   * The caller saves.
   */
  createFirstProfile(name?: string, env: NodeJS.ProcessEnv = process.env): string | null {
    if (this.exists) return null;
    const wanted = name ?? (env.DROVER_PROFILE ? env.DROVER_PROFILE : 'default');
    if (this.hasProfile(wanted)) return null;
    const p = this.setupProfile(wanted, { setDefault: true }, env);
    return (
      `Created profile '${wanted}' in ${this.file} (store ${describeStorage(p.storage)}, ` +
      `broker ${p.broker.displayUrl}; for RabbitMQ instead: drover profile setup NAME --broker rabbitmq).`
    );
  }

  private mutate(fn: (d: ConfigData) => void): void {
    const copy = structuredClone(this.data);
    fn(copy);
    // Re-validate the whole result, so no change can produce a file that would not load.
    this.data = parseConfig(serialize(copy), this.file);
  }

  /** Adds a profile. The first profile becomes the default. */
  setupProfile(name: string, setup: ProfileSetup = {}, env: NodeJS.ProcessEnv = process.env): Profile {
    if (this.hasProfile(name)) throw new ProfileError(`profile '${name}' already exists in ${this.file}`);
    const backend = setup.storage ?? (setup.postgresUrl ? 'postgres' : 'sqlite');
    let storage: StorageSettings;
    if (backend === 'postgres') {
      if (!setup.postgresUrl) throw new ConfigError('--postgres-url is required with --storage postgres');
      if (setup.sqlitePath !== undefined) throw new ConfigError('--sqlite-path only applies with --storage sqlite');
      checkPostgresUrl(setup.postgresUrl, '--postgres-url');
      storage = { backend: 'postgres', url: setup.postgresUrl };
    } else {
      if (setup.postgresUrl) throw new ConfigError('--postgres-url only applies with --storage postgres');
      if (setup.sqlitePath === '') throw new ConfigError('--sqlite-path must not be empty');
      const file = path.resolve(setup.sqlitePath ?? path.join(dataDir(name, env), 'processes.sqlite'));
      const other = this.profileNames.find((n) => {
        const s = this.data.profiles[n]!.storage;
        return s.backend === 'sqlite' && s.path === file;
      });
      if (other !== undefined) {
        throw new ConfigError(`--sqlite-path: ${file} is already the store of profile '${other}'`);
      }
      storage = { backend: 'sqlite', path: file };
    }
    const kind = setup.broker ?? (setup.brokerUrl !== undefined ? 'rabbitmq' : 'local');
    if (!(BROKER_KINDS as readonly string[]).includes(kind)) {
      throw new ConfigError(`--broker must be one of ${BROKER_KINDS.join(', ')}, got ${JSON.stringify(kind)}`);
    }
    if (kind === 'local' && setup.brokerUrl !== undefined) {
      throw new ConfigError('--broker-url only applies with --broker rabbitmq');
    }
    if (setup.brokerUrl !== undefined) checkBrokerUrl(setup.brokerUrl, '--broker-url');
    const broker: BrokerSettingsRaw =
      kind === 'local' ? { kind: 'local' } : { kind: 'rabbitmq', url: setup.brokerUrl ?? DEFAULT_BROKER_URL };
    this.mutate((d) => {
      d.profiles[name] = {
        uuid: crypto.randomUUID(),
        storage,
        broker,
        options: {},
      };
      if (setup.setDefault || d.default_profile === null) d.default_profile = name;
    });
    return this.getProfile(name);
  }

  /**
   * Adds a profile made elsewhere (`drover profile import`), keeping its uuid. Refused when a profile
   * of that name exists or another profile has that uuid, unless `force`: then the profile of that
   * name is overwritten and one with that uuid under another name is removed from the
   * configuration (its data is left in place): one host never has two profiles with one uuid, whose
   * daemons would take each other's workers for dead. A SQLite file another profile uses is
   * refused either way. The first profile becomes the default.
   * @returns the names of the profiles replaced or removed.
   */
  importProfile(name: string, record: ProfileRecord, opts: { force?: boolean; source?: string } = {}): string[] {
    validateProfileName(name);
    const from = opts.source === undefined ? '' : ` from ${opts.source}`;
    const replaced: string[] = [];
    if (this.hasProfile(name)) {
      if (!opts.force) {
        throw new ProfileError(
          `cannot import profile '${name}'${from}: a profile of that name exists in ${this.file}; ` +
            `choose another name with --name, or replace it with --force`,
        );
      }
      replaced.push(name);
    }
    const sameUuid = this.profileNames.filter(
      (n) => n !== name && this.data.profiles[n]!.uuid.toLowerCase() === record.uuid.toLowerCase(),
    );
    if (sameUuid.length > 0 && !opts.force) {
      throw new ProfileError(
        `cannot import profile '${name}'${from}: profile '${sameUuid[0]}' in ${this.file} already has uuid ` +
          `${record.uuid} (it is the same profile); use it as it is, or replace it with --force`,
      );
    }
    replaced.push(...sameUuid);
    const st = record.storage;
    if (st.backend === 'sqlite') {
      const other = this.profileNames.find((n) => {
        if (replaced.includes(n)) return false;
        const s = this.data.profiles[n]!.storage;
        return s.backend === 'sqlite' && s.path === st.path;
      });
      if (other !== undefined) {
        throw new ConfigError(
          `cannot import profile '${name}'${from}: its SQLite store ${st.path} is already the store of profile '${other}'`,
        );
      }
    }
    this.mutate((d) => {
      for (const n of sameUuid) delete d.profiles[n];
      d.profiles[name] = structuredClone(record);
      if (d.default_profile !== null && sameUuid.includes(d.default_profile)) d.default_profile = name;
      if (d.default_profile === null) d.default_profile = name;
    });
    return replaced;
  }

  /**
   * Removes a profile from the configuration (its data is left to the caller). When it was the
   * default and exactly one profile remains, that one becomes the default; with several left
   * there is no default until one is chosen, so that no command silently acts on another
   * profile's processes.
   */
  deleteProfile(name: string): void {
    this.getProfileRecord(name);
    this.mutate((d) => {
      delete d.profiles[name];
      if (d.default_profile === name) {
        const rest = Object.keys(d.profiles);
        d.default_profile = rest.length === 1 ? rest[0]! : null;
      }
    });
  }

  /** Marks a profile as the default. */
  setDefaultProfile(name: string): void {
    this.getProfileRecord(name);
    this.mutate((d) => {
      d.default_profile = name;
    });
  }

  /** Sets an option globally (`profile` undefined) or for one profile. The value is validated. */
  setOption(key: string, value: OptionValue, profile?: string): void {
    const v = validateOptionValue(key, value, profile !== undefined ? `profile '${profile}'` : 'global options');
    if (profile !== undefined) this.getProfileRecord(profile);
    this.mutate((d) => {
      if (profile === undefined) d.options[key] = v;
      else d.profiles[profile]!.options[key] = v;
    });
  }

  /**
   * Removes an option's value globally or from one profile.
   * @returns false when it was not set there (nothing changed).
   */
  unsetOption(key: string, profile?: string): boolean {
    getOptionSpec(key);
    const where = profile === undefined ? this.data.options : this.getProfileRecord(profile).options;
    if (!Object.hasOwn(where, key)) return false;
    this.mutate((d) => {
      if (profile === undefined) delete d.options[key];
      else delete d.profiles[profile]!.options[key];
    });
    return true;
  }

  /** Where an option's effective value for a profile (or globally) comes from. */
  optionSource(key: string, profile?: string): 'profile' | 'global' | 'default' {
    getOptionSpec(key);
    if (profile !== undefined && Object.hasOwn(this.getProfileRecord(profile).options, key)) return 'profile';
    if (Object.hasOwn(this.data.options, key)) return 'global';
    return 'default';
  }

  /** Every option with its effective value and source, for a profile or (no profile) globally. */
  describeOptions(profile?: string): OptionEntry[] {
    const local = profile === undefined ? {} : this.getProfileRecord(profile).options;
    const resolved = resolveOptions(this.data.options, local) as unknown as Record<string, OptionValue>;
    return [...OPTION_SPECS.values()].map((spec) => ({
      name: spec.name,
      value: resolved[spec.name]!,
      source: this.optionSource(spec.name, profile),
      default: structuredClone(spec.default),
      type: describeOptionType(spec.type),
      description: spec.description,
      restartRequired: spec.restartRequired,
      scope: spec.scope,
    }));
  }

  /**
   * Writes the file atomically with mode 0600 (its directory 0700).
   * @throws ConfigError when the file changed on disk since it was loaded (another command wrote
   *   it); nothing is written then.
   */
  save(): void {
    ensurePrivateDir(path.dirname(this.file));
    const text = serialize(this.data);
    const conflict = (): ConfigError =>
      new ConfigError(
        `${this.file} was changed by another program while this command ran; nothing was written, run the command again`,
      );
    if (this.loadedText === null) {
      if (!createExclusiveSync(this.file, text)) throw conflict();
    } else {
      if (readIfExists(this.file) !== this.loadedText) throw conflict();
      writeFileAtomicSync(this.file, text, 0o600);
    }
    this.loadedText = text;
  }
}

/** Options of {@link resolveProfile}. */
export interface ResolveProfileOptions {
  /** Config file; default from the environment. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /**
   * Called with a one-line notice when a profile had to be created (first use: no configuration
   * file). When omitted, nothing is created and a missing configuration is an error.
   */
  onCreate?: (message: string) => void;
}

/**
 * Resolves the profile to act on: `name`, else `DROVER_PROFILE`, else the default profile. On first
 * use (no configuration file) and when `onCreate` is given, that profile (default: `default`) is
 * created with a SQLite store under the data directory and the local bus (no broker server).
 */
export function resolveProfile(name?: string, opts: ResolveProfileOptions = {}): Profile {
  const env = opts.env ?? process.env;
  const file = opts.file ?? configFilePath(env);
  if (name !== undefined) validateProfileName(name);
  let config = Config.load(file);
  if (opts.onCreate) {
    const notice = config.createFirstProfile(name, env);
    if (notice !== null) {
      try {
        config.save();
        opts.onCreate(notice);
      } catch (err) {
        // Another command created the file at the same moment: use what it wrote.
        if (!fs.existsSync(file)) throw err;
        config = Config.load(file);
      }
    }
  }
  return config.getProfile(config.currentProfileName(name, env));
}
