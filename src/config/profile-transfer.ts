/**
 * Moving one profile between machines (`drover profile export` and `drover profile import`): the
 * way a second machine joins a profile. The file holds one profile, and nothing of any other: its
 * name, its uuid (which names its RabbitMQ queues and is recorded in its store, see
 * docs/store.md), its store and broker settings and the options set for it. Passwords in URLs (and
 * a broker's `password` field) are replaced by {@link PASSWORD_PLACEHOLDER} unless secrets are
 * included; an import fills each placeholder from an environment variable
 * ({@link SECRET_ENV}) or from the terminal, and fails, naming what is missing, otherwise.
 *
 * Everything is validated before anything is written: a bad file changes nothing.
 *
 * @module
 */
import { ConfigError } from '../errors/index.js';
import { validateProfileBody, type BrokerSettingsRaw, type Config, type ProfileRecord } from './config.js';
import { validateProfileName } from './profile-name.js';
import { findJsonSyntaxError } from './json-position.js';
import type { OptionValue } from './options.js';

/** The `format` of an export file. */
export const PROFILE_EXPORT_FORMAT = 'drover-profile';
/** The newest export format version this code writes and reads. */
export const PROFILE_EXPORT_VERSION = 1;
/** What stands for a password an export left out. */
export const PASSWORD_PLACEHOLDER = 'DROVER-PASSWORD-REMOVED';

/** Where an import takes a left-out password from. */
export const SECRET_ENV = {
  /** The PostgreSQL password (in `storage.url`). */
  storage: 'DROVER_POSTGRES_PASSWORD',
  /** The RabbitMQ password (in `broker.url` or `broker.password`). */
  broker: 'DROVER_BROKER_PASSWORD',
} as const;

/** An export file. */
export interface ProfileExport {
  format: typeof PROFILE_EXPORT_FORMAT;
  version: number;
  name: string;
  uuid: string;
  storage: ProfileRecord['storage'];
  broker: BrokerSettingsRaw;
  options: Record<string, OptionValue>;
  /** False when passwords were replaced by {@link PASSWORD_PLACEHOLDER}. */
  secrets_included: boolean;
  /** When it was written (ISO 8601). */
  exported_at: string;
}

/** A password an export left out. */
export interface MissingSecret {
  /** The field that holds it: `storage.url`, `broker.url` or `broker.password`. */
  field: 'storage.url' | 'broker.url' | 'broker.password';
  /** What it is, for people: `the PostgreSQL password`. */
  what: string;
  /** The environment variable an import reads it from. */
  env: string;
}

/** A validated export file. */
export interface ParsedProfileExport {
  name: string;
  record: ProfileRecord;
  secretsIncluded: boolean;
  /** Passwords left out (placeholders), to be filled with {@link fillSecret} before importing. */
  missing: MissingSecret[];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `url` with its password replaced by the placeholder (unchanged when it has none or does not parse). */
function maskUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password === '') return url;
    u.password = PASSWORD_PLACEHOLDER;
    return u.toString();
  } catch {
    return url;
  }
}

function urlHasPlaceholder(url: string): boolean {
  try {
    return new URL(url).password === PASSWORD_PLACEHOLDER;
  } catch {
    return false;
  }
}

/** `url` with `password` as its password. */
function setUrlPassword(url: string, password: string): string {
  const u = new URL(url);
  u.password = encodeURIComponent(password);
  return u.toString();
}

/** The export of profile `name` of `config`: passwords replaced unless `includeSecrets`. */
export function exportProfile(
  config: Config,
  name: string,
  opts: { includeSecrets?: boolean; now?: Date } = {},
): ProfileExport {
  const rec = config.getProfileRecord(name);
  const secrets = opts.includeSecrets === true;
  let storage = rec.storage;
  let broker = rec.broker;
  if (!secrets) {
    if (storage.backend === 'postgres') storage = { ...storage, url: maskUrl(storage.url) };
    if (broker.kind !== 'local') {
      if ('url' in broker) broker = { ...broker, url: maskUrl(broker.url) };
      else if (broker.password !== undefined && broker.password !== '') {
        broker = { ...broker, password: PASSWORD_PLACEHOLDER };
      }
    }
  }
  return {
    format: PROFILE_EXPORT_FORMAT,
    version: PROFILE_EXPORT_VERSION,
    name,
    uuid: rec.uuid,
    storage,
    broker,
    options: rec.options,
    secrets_included: secrets,
    exported_at: (opts.now ?? new Date()).toISOString(),
  };
}

/** The text of an export file. */
export function serializeProfileExport(e: ProfileExport): string {
  return JSON.stringify(e, null, 2) + '\n';
}

const EXPORT_KEYS = [
  'format',
  'version',
  'name',
  'uuid',
  'storage',
  'broker',
  'options',
  'secrets_included',
  'exported_at',
] as const;

/**
 * Parses and validates an export file's text. `file` names it in messages (`-`: standard input).
 * @throws ConfigError naming the file and the field that is wrong; the message never quotes a password.
 */
export function parseProfileExport(text: string, file: string): ParsedProfileExport {
  const where = file === '-' ? 'standard input' : file;
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  let raw: unknown;
  try {
    raw = JSON.parse(body);
  } catch (err) {
    const problem = findJsonSyntaxError(body);
    throw new ConfigError(
      problem
        ? `${where}: not a profile export: invalid JSON at line ${problem.line}, column ${problem.column}: ${problem.reason}`
        : `${where}: not a profile export: invalid JSON`,
      { cause: err },
    );
  }
  if (!isObject(raw)) throw new ConfigError(`${where}: not a profile export: the top level must be a JSON object`);
  if (raw.format !== PROFILE_EXPORT_FORMAT) {
    throw new ConfigError(
      `${where}: not a profile export: 'format' must be ${JSON.stringify(PROFILE_EXPORT_FORMAT)}, got ` +
        `${raw.format === undefined ? 'nothing' : JSON.stringify(raw.format)} (write one with 'drover profile export NAME')`,
    );
  }
  const version = raw.version;
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1) {
    throw new ConfigError(`${where}: 'version' must be a positive integer, got ${JSON.stringify(version)}`);
  }
  if (version > PROFILE_EXPORT_VERSION) {
    throw new ConfigError(
      `${where}: written by a newer version of Drover (export version ${version}; this one understands up to ` +
        `${PROFILE_EXPORT_VERSION}); upgrade Drover to import it`,
    );
  }
  for (const k of Object.keys(raw)) {
    if (!(EXPORT_KEYS as readonly string[]).includes(k)) {
      throw new ConfigError(`${where}: unknown key '${k}' (allowed: ${EXPORT_KEYS.join(', ')})`);
    }
  }
  for (const k of ['name', 'uuid', 'storage', 'broker'] as const) {
    if (raw[k] === undefined) throw new ConfigError(`${where}: '${k}' is missing`);
  }
  if (typeof raw.name !== 'string') throw new ConfigError(`${where}: 'name' must be a string`);
  try {
    validateProfileName(raw.name);
  } catch (err) {
    throw new ConfigError(`${where}: 'name': ${(err as Error).message}`);
  }
  if (raw.secrets_included !== undefined && typeof raw.secrets_included !== 'boolean') {
    throw new ConfigError(`${where}: 'secrets_included' must be true or false`);
  }
  if (raw.exported_at !== undefined && typeof raw.exported_at !== 'string') {
    throw new ConfigError(`${where}: 'exported_at' must be a string`);
  }
  const record = validateProfileBody(
    { uuid: raw.uuid, storage: raw.storage, broker: raw.broker, options: raw.options },
    `${where}: `,
    ['uuid', 'storage', 'broker', 'options'],
  );
  const missing: MissingSecret[] = [];
  if (record.storage.backend === 'postgres' && urlHasPlaceholder(record.storage.url)) {
    missing.push({ field: 'storage.url', what: 'the PostgreSQL password', env: SECRET_ENV.storage });
  }
  const b = record.broker;
  if (b.kind !== 'local') {
    if ('url' in b && urlHasPlaceholder(b.url)) {
      missing.push({ field: 'broker.url', what: 'the RabbitMQ password', env: SECRET_ENV.broker });
    } else if ('password' in b && b.password === PASSWORD_PLACEHOLDER) {
      missing.push({ field: 'broker.password', what: 'the RabbitMQ password', env: SECRET_ENV.broker });
    }
  }
  return { name: raw.name, record, secretsIncluded: raw.secrets_included === true, missing };
}

/** `record` with the password of `secret` set to `password`. */
export function fillSecret(record: ProfileRecord, secret: MissingSecret, password: string): ProfileRecord {
  const out = structuredClone(record);
  if (secret.field === 'storage.url' && out.storage.backend === 'postgres') {
    out.storage = { ...out.storage, url: setUrlPassword(out.storage.url, password) };
  } else if (secret.field === 'broker.url' && out.broker.kind !== 'local' && 'url' in out.broker) {
    out.broker = { ...out.broker, url: setUrlPassword(out.broker.url, password) };
  } else if (secret.field === 'broker.password' && out.broker.kind !== 'local' && !('url' in out.broker)) {
    out.broker = { ...out.broker, password };
  }
  return out;
}
