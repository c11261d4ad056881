/**
 * The configuration file: global option values and profiles, modelled on AiiDA's `config.json`.
 *
 * The file is always written atomically (temp file, fsync, rename) with mode 0600, since it holds
 * broker and database passwords. A file that does not parse or validate is never overwritten:
 * loading it throws a {@link ConfigError} naming the file and what is wrong (JSON position, or the
 * key and the expected type). A file written by a newer version of Drover is refused.
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
import {
  OPTION_SPECS,
  getOptionSpec,
  resolveOptions,
  validateOptionValue,
  type OptionValue,
  type Options,
} from './options.js';

/** Version of the file format this code writes and understands. */
export const CONFIG_VERSION = 1;

/** Where a profile keeps its processes. */
export type StorageSettings = { backend: 'sqlite'; path: string } | { backend: 'postgres'; url: string };

/** How a profile reaches RabbitMQ, as written in the file. */
export type BrokerSettingsRaw =
  | { url: string }
  | { host?: string; port?: number; user?: string; password?: string; vhost?: string };

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

/** Resolved broker settings of a profile. */
export interface BrokerSettings {
  /** Full AMQP URL including credentials. */
  url: string;
  host: string;
  port: number;
  user: string;
  vhost: string;
  /** The URL with the password hidden, for display. */
  displayUrl: string;
}

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

/** Resolves raw broker settings into a URL and its parts. */
export function resolveBroker(raw: BrokerSettingsRaw): BrokerSettings {
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
  const display = new URL(url.toString());
  if (display.password !== '') display.password = '***';
  return {
    url: url.toString(),
    host: url.hostname,
    port,
    user: decodeURIComponent(url.username),
    vhost,
    displayUrl: display.toString(),
  };
}

function checkBrokerUrl(text: string, where: string): void {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(`${where}: broker URL ${JSON.stringify(text)} is not a valid URL`);
  }
  if (url.protocol !== 'amqp:' && url.protocol !== 'amqps:') {
    throw new ConfigError(`${where}: broker URL must start with amqp:// or amqps://, got ${JSON.stringify(text)}`);
  }
}

function checkPostgresUrl(text: string, where: string): void {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(`${where}: PostgreSQL URL ${JSON.stringify(text)} is not a valid URL`);
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new ConfigError(`${where}: PostgreSQL URL must start with postgres://, got ${JSON.stringify(text)}`);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function positionToLineColumn(text: string, pos: number): { line: number; column: number } {
  const before = text.slice(0, pos);
  const line = before.split('\n').length;
  const column = pos - before.lastIndexOf('\n');
  return { line, column };
}

function validateOptions(raw: unknown, where: string): Record<string, OptionValue> {
  if (raw === undefined) return {};
  if (!isObject(raw)) throw new ConfigError(`${where} must be an object`);
  const out: Record<string, OptionValue> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (!OPTION_SPECS.has(k)) throw new ConfigError(`${where}: unknown option '${k}'`);
    out[k] = validateOptionValue(k, v, where);
  }
  return out;
}

function validateProfileRecord(name: string, raw: unknown, file: string): ProfileRecord {
  const where = `${file}: profiles.${name}`;
  try {
    validateProfileName(name);
  } catch (err) {
    throw new ConfigError(`${file}: ${(err as Error).message}`);
  }
  if (!isObject(raw)) throw new ConfigError(`${where} must be an object`);
  const { uuid, storage, broker, options } = raw;
  if (typeof uuid !== 'string' || !/^[0-9a-f-]{36}$/i.test(uuid)) {
    throw new ConfigError(`${where}.uuid must be a UUID string, got ${JSON.stringify(uuid)}`);
  }
  if (!isObject(storage)) throw new ConfigError(`${where}.storage must be an object`);
  let st: StorageSettings;
  if (storage.backend === 'sqlite') {
    if (typeof storage.path !== 'string' || storage.path === '') {
      throw new ConfigError(`${where}.storage.path must be a non-empty string`);
    }
    st = { backend: 'sqlite', path: storage.path };
  } else if (storage.backend === 'postgres') {
    if (typeof storage.url !== 'string') throw new ConfigError(`${where}.storage.url must be a string`);
    checkPostgresUrl(storage.url, `${where}.storage.url`);
    st = { backend: 'postgres', url: storage.url };
  } else {
    throw new ConfigError(
      `${where}.storage.backend must be "sqlite" or "postgres", got ${JSON.stringify(storage.backend)}`,
    );
  }
  if (!isObject(broker)) throw new ConfigError(`${where}.broker must be an object`);
  let br: BrokerSettingsRaw;
  if ('url' in broker) {
    if (typeof broker.url !== 'string') throw new ConfigError(`${where}.broker.url must be a string`);
    checkBrokerUrl(broker.url, `${where}.broker.url`);
    br = { url: broker.url };
  } else {
    const b: { host?: string; port?: number; user?: string; password?: string; vhost?: string } = {};
    for (const key of ['host', 'user', 'password', 'vhost'] as const) {
      const v = broker[key];
      if (v === undefined) continue;
      if (typeof v !== 'string') throw new ConfigError(`${where}.broker.${key} must be a string`);
      b[key] = v;
    }
    if (broker.port !== undefined) {
      const p = broker.port;
      if (typeof p !== 'number' || !Number.isInteger(p) || p < 1 || p > 65535) {
        throw new ConfigError(`${where}.broker.port must be an integer from 1 to 65535, got ${JSON.stringify(p)}`);
      }
      b.port = p;
    }
    br = b;
  }
  return { uuid, storage: st, broker: br, options: validateOptions(options, `${where}.options`) };
}

/** Parses and validates the text of a configuration file. */
export function parseConfig(text: string, file: string): ConfigData {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    const msg = (err as Error).message;
    const m = /position (\d+)/.exec(msg);
    if (m) {
      const pos = Number(m[1]);
      const { line, column } = positionToLineColumn(text, pos);
      throw new ConfigError(`${file}: invalid JSON at line ${line} column ${column} (position ${pos}): ${msg}`, {
        cause: err,
      });
    }
    throw new ConfigError(`${file}: invalid JSON: ${msg}`, { cause: err });
  }
  if (!isObject(raw)) throw new ConfigError(`${file}: the top level must be a JSON object`);
  const version = raw.version;
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1) {
    throw new ConfigError(`${file}: 'version' must be a positive integer, got ${JSON.stringify(version)}`);
  }
  if (version > CONFIG_VERSION) {
    throw new ConfigError(
      `${file}: written by a newer version of Drover (config version ${version}; this one understands up to ` +
        `${CONFIG_VERSION}); refusing to read or change it`,
    );
  }
  const profilesRaw = raw.profiles ?? {};
  if (!isObject(profilesRaw)) throw new ConfigError(`${file}: 'profiles' must be an object`);
  const profiles: Record<string, ProfileRecord> = {};
  for (const [name, p] of Object.entries(profilesRaw)) profiles[name] = validateProfileRecord(name, p, file);
  const def = raw.default_profile ?? null;
  if (def !== null && typeof def !== 'string') {
    throw new ConfigError(`${file}: 'default_profile' must be a string or null`);
  }
  if (def !== null && !(def in profiles)) {
    throw new ConfigError(`${file}: 'default_profile' names profile '${def}', which is not in 'profiles'`);
  }
  return {
    version: CONFIG_VERSION,
    default_profile: def,
    options: validateOptions(raw.options, `${file}: options`),
    profiles,
  };
}

/** Arguments of {@link Config.setupProfile}. */
export interface ProfileSetup {
  storage?: 'sqlite' | 'postgres';
  postgresUrl?: string;
  sqlitePath?: string;
  brokerUrl?: string;
  setDefault?: boolean;
}

/**
 * The configuration in memory. Changes are made on a copy and written with {@link Config.save};
 * a change that fails validation leaves both the object and the file untouched.
 */
export class Config {
  private constructor(
    /** Absolute path of the file. */
    readonly file: string,
    private data: ConfigData,
    /** False when the file does not exist yet. */
    public exists: boolean,
  ) {}

  /** Loads the configuration file (or an empty configuration when there is none). */
  static load(file: string = configFilePath()): Config {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        return new Config(file, { version: CONFIG_VERSION, default_profile: null, options: {}, profiles: {} }, false);
      }
      throw new ConfigError(`${file}: cannot read: ${(err as Error).message}`, { cause: err });
    }
    return new Config(file, parseConfig(text, file), true);
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

  /** The stored record of a profile. */
  getProfileRecord(name: string): ProfileRecord {
    validateProfileName(name);
    const p = this.data.profiles[name];
    if (!p) {
      const known = this.profileNames;
      throw new ProfileNotFoundError(
        `profile '${name}' does not exist in ${this.file}` + (known.length ? ` (profiles: ${known.join(', ')})` : ''),
      );
    }
    return structuredClone(p);
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

  private mutate(fn: (d: ConfigData) => void): void {
    const copy = structuredClone(this.data);
    fn(copy);
    // Re-validate the whole result, so no change can produce a file that would not load.
    this.data = parseConfig(JSON.stringify(copy), this.file);
  }

  /** Adds a profile. The first profile becomes the default. */
  setupProfile(name: string, setup: ProfileSetup = {}, env: NodeJS.ProcessEnv = process.env): Profile {
    validateProfileName(name);
    if (name in this.data.profiles) throw new ProfileError(`profile '${name}' already exists in ${this.file}`);
    const backend = setup.storage ?? (setup.postgresUrl ? 'postgres' : 'sqlite');
    let storage: StorageSettings;
    if (backend === 'postgres') {
      if (!setup.postgresUrl) throw new ConfigError('--postgres-url is required with --storage postgres');
      checkPostgresUrl(setup.postgresUrl, '--postgres-url');
      storage = { backend: 'postgres', url: setup.postgresUrl };
    } else {
      if (setup.postgresUrl) throw new ConfigError('--postgres-url only applies with --storage postgres');
      storage = { backend: 'sqlite', path: path.resolve(setup.sqlitePath ?? path.join(dataDir(name, env), 'processes.sqlite')) };
    }
    if (setup.brokerUrl !== undefined) checkBrokerUrl(setup.brokerUrl, '--broker-url');
    this.mutate((d) => {
      d.profiles[name] = {
        uuid: crypto.randomUUID(),
        storage,
        broker: { url: setup.brokerUrl ?? DEFAULT_BROKER_URL },
        options: {},
      };
      if (setup.setDefault || d.default_profile === null) d.default_profile = name;
    });
    return this.getProfile(name);
  }

  /** Removes a profile from the file (its data is left to the caller). */
  deleteProfile(name: string): void {
    this.getProfileRecord(name);
    this.mutate((d) => {
      delete d.profiles[name];
      if (d.default_profile === name) d.default_profile = Object.keys(d.profiles).sort()[0] ?? null;
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
    const v = validateOptionValue(key, value, profile ? `profile '${profile}'` : 'global options');
    if (profile !== undefined) this.getProfileRecord(profile);
    this.mutate((d) => {
      if (profile === undefined) d.options[key] = v;
      else d.profiles[profile]!.options[key] = v;
    });
  }

  /** Removes an option's value globally or from one profile. */
  unsetOption(key: string, profile?: string): void {
    getOptionSpec(key);
    if (profile !== undefined) this.getProfileRecord(profile);
    this.mutate((d) => {
      if (profile === undefined) delete d.options[key];
      else delete d.profiles[profile]!.options[key];
    });
  }

  /** Where an option's effective value for a profile comes from. */
  optionSource(key: string, profile?: string): 'profile' | 'global' | 'default' {
    getOptionSpec(key);
    if (profile !== undefined && key in this.getProfileRecord(profile).options) return 'profile';
    if (key in this.data.options) return 'global';
    return 'default';
  }

  /** Writes the file atomically with mode 0600 (its directory 0700). */
  save(): void {
    ensurePrivateDir(path.dirname(this.file));
    writeFileAtomicSync(this.file, JSON.stringify(this.data, null, 2) + '\n', 0o600);
    this.exists = true;
  }
}

/** Options of {@link resolveProfile}. */
export interface ResolveProfileOptions {
  /** Config file; default from the environment. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /**
   * Called with a one-line notice when a default profile had to be created (first use). When
   * omitted, no profile is created and a missing configuration is an error.
   */
  onCreate?: (message: string) => void;
}

/**
 * Resolves the profile to act on: `name`, else `DROVER_PROFILE`, else the default profile. On first
 * use (no configuration file) and when `onCreate` is given, a `default` profile is created with a
 * SQLite store under the data directory and RabbitMQ on localhost.
 */
export function resolveProfile(name?: string, opts: ResolveProfileOptions = {}): Profile {
  const env = opts.env ?? process.env;
  const file = opts.file ?? configFilePath(env);
  const config = Config.load(file);
  const wanted = name ?? (env.DROVER_PROFILE ? env.DROVER_PROFILE : undefined);
  if (wanted !== undefined) validateProfileName(wanted);
  if (config.profileNames.length === 0 && opts.onCreate) {
    const created = wanted ?? 'default';
    const p = config.setupProfile(created, { setDefault: true }, env);
    config.save();
    opts.onCreate(
      `Created profile '${created}' in ${file} (SQLite store ${p.storage.backend === 'sqlite' ? p.storage.path : ''}, ` +
        `broker ${p.broker.displayUrl}).`,
    );
    return p;
  }
  const target = wanted ?? config.defaultProfile;
  if (target === null) {
    throw new ProfileNotFoundError(
      `no profile given and no default profile in ${file}; create one with 'drover profile setup NAME'`,
    );
  }
  return config.getProfile(target);
}
