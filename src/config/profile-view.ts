/**
 * A profile as shown to people and scripts (`drover profile show`, `setup`, `list --json`):
 * everything about it except secrets, which are replaced by `***`.
 *
 * @module
 */
import type { Config, StorageSettings } from './config.js';
import { describeStorage, hideUrlPassword } from './config.js';
import type { OptionValue } from './options.js';
import { dataDir, logDir } from './paths.js';

/** Storage settings with any password hidden. */
export type StorageView = { backend: 'sqlite'; path: string } | { backend: 'postgres'; url: string };

/** What `drover profile show --json` returns. */
export interface ProfileView {
  name: string;
  uuid: string;
  /** True when this is the default profile. */
  default: boolean;
  configFile: string;
  storage: StorageView;
  /** One line, e.g. `sqlite:/home/u/.local/share/drover/demo/processes.sqlite`. */
  storageDisplay: string;
  broker: BrokerView;
  /** Which machines may run workers for the profile, in words. */
  workersOn: string;
  /** Options set for this profile (overriding the global values and defaults). */
  options: Record<string, OptionValue>;
  /** Where the profile's data (the default SQLite store) lives. */
  dataDir: string;
  /** Where the daemon of the profile writes its logs. */
  logDir: string;
}

/** Broker settings with any password hidden. */
export type BrokerView =
  | { kind: 'local'; url: string }
  | { kind: 'rabbitmq'; url: string; host: string; port: number; user: string; vhost: string };

function storageView(s: StorageSettings): StorageView {
  return s.backend === 'sqlite'
    ? { backend: 'sqlite', path: s.path }
    : { backend: 'postgres', url: hideUrlPassword(s.url) };
}

/** The view of profile `name` of `config` (passwords hidden). */
export function profileView(config: Config, name: string, env: NodeJS.ProcessEnv = process.env): ProfileView {
  const p = config.getProfile(name);
  const rec = config.getProfileRecord(name);
  return {
    name,
    uuid: p.uuid,
    default: config.defaultProfile === name,
    configFile: config.file,
    storage: storageView(p.storage),
    storageDisplay: describeStorage(p.storage),
    broker:
      p.broker.kind === 'local'
        ? { kind: 'local', url: p.broker.displayUrl }
        : {
            kind: 'rabbitmq',
            url: p.broker.displayUrl,
            host: p.broker.host,
            port: p.broker.port,
            user: p.broker.user,
            vhost: p.broker.vhost,
          },
    workersOn:
      p.broker.kind === 'local'
        ? 'this machine only (its daemon is the broker)'
        : p.storage.backend === 'sqlite'
          ? 'this machine only (the SQLite store is a local file)'
          : `any machine that reaches RabbitMQ at ${p.broker.host}:${p.broker.port} and the PostgreSQL store`,
    options: rec.options,
    dataDir: dataDir(name, env),
    logDir: logDir(name, env),
  };
}
