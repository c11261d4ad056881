/**
 * Removing a deleted profile's local data. Only files Drover created for the profile are
 * removed: its SQLite store (with the `-wal`, `-shm` and `-journal` files SQLite keeps beside it),
 * its data directory, its log directory (the daemon's log, the processes' output) and its runtime
 * directory. A PostgreSQL database is never touched, and a SQLite file another profile still uses
 * is kept. (Its RabbitMQ queues are the API's to remove: config does not talk to brokers.)
 *
 * @module
 */
import fs from 'node:fs';
import type { ProfileRecord } from './config.js';
import type { Config } from './config.js';
import { dataDir, logDir, runtimeDir } from './paths.js';

/** What {@link removeProfileData} did. */
export interface RemovedData {
  /** Paths removed. */
  removed: string[];
  /** Data left in place, each with the reason. */
  kept: Array<{ what: string; reason: string }>;
}

/**
 * Removes the local data of profile `name`, whose record was `record`, after it has been removed
 * from `config` (which is consulted so that data another profile uses is kept).
 */
export function removeProfileData(
  config: Config,
  name: string,
  record: ProfileRecord,
  env: NodeJS.ProcessEnv = process.env,
): RemovedData {
  const out: RemovedData = { removed: [], kept: [] };
  const storage = record.storage;
  if (storage.backend === 'postgres') {
    out.kept.push({ what: 'PostgreSQL database', reason: 'drover never deletes a PostgreSQL database' });
  } else {
    const user = config.profileNames.find((n) => {
      const s = config.getProfileRecord(n).storage;
      return s.backend === 'sqlite' && s.path === storage.path;
    });
    if (user !== undefined) {
      out.kept.push({ what: storage.path, reason: `profile '${user}' uses the same SQLite file` });
    } else {
      for (const f of [storage.path, `${storage.path}-wal`, `${storage.path}-shm`, `${storage.path}-journal`]) {
        if (fs.existsSync(f)) {
          fs.rmSync(f, { force: true });
          out.removed.push(f);
        }
      }
    }
  }
  const dir = dataDir(name, env);
  if (fs.existsSync(dir)) {
    const inUse = config.profileNames.some((n) => {
      const s = config.getProfileRecord(n).storage;
      return s.backend === 'sqlite' && (s.path + '/').startsWith(dir + '/');
    });
    if (inUse) out.kept.push({ what: dir, reason: 'another profile keeps its SQLite file there' });
    else {
      fs.rmSync(dir, { recursive: true, force: true });
      out.removed.push(dir);
    }
  }
  for (const [what, dirOf] of [
    ['log directory', logDir],
    ['runtime directory', runtimeDir],
  ] as const) {
    let d: string;
    try {
      d = dirOf(name, env);
    } catch (err) {
      // runtimeDir refuses an unsafe shared fallback: then it is not ours to remove either.
      out.kept.push({ what, reason: (err as Error).message });
      continue;
    }
    if (fs.existsSync(d)) {
      fs.rmSync(d, { recursive: true, force: true });
      out.removed.push(d);
    }
  }
  return out;
}
