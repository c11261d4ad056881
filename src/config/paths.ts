/**
 * Where Drover keeps its files. With `DROVER_HOME` set (tests always set it) everything lives
 * under it; otherwise the XDG base directories are used.
 *
 * @module
 */
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { ensureOwnPrivateDir } from '../util/fs.js';
import { validateProfileName } from './profile-name.js';

type Env = NodeJS.ProcessEnv;

function home(env: Env): string {
  return env.HOME && env.HOME !== '' ? env.HOME : os.homedir();
}

/** An XDG base directory from the environment; relative values are invalid per the spec and ignored. */
function xdg(env: Env, name: string, fallback: string[]): string {
  const v = env[name];
  return v && path.isAbsolute(v) ? v : path.join(home(env), ...fallback);
}

/** Absolute path of the configuration file. */
export function configFilePath(env: Env = process.env): string {
  if (env.DROVER_HOME) return path.resolve(env.DROVER_HOME, 'config.json');
  const base = xdg(env, 'XDG_CONFIG_HOME', ['.config']);
  return path.resolve(base, 'drover', 'config.json');
}

/** Directory holding a profile's data (the SQLite store). */
export function dataDir(profile: string, env: Env = process.env): string {
  validateProfileName(profile); // it becomes a path component
  if (env.DROVER_HOME) return path.resolve(env.DROVER_HOME, 'data', profile);
  const base = xdg(env, 'XDG_DATA_HOME', ['.local', 'share']);
  return path.resolve(base, 'drover', profile);
}

/** Directory holding a profile's logs. */
export function logDir(profile: string, env: Env = process.env): string {
  validateProfileName(profile); // it becomes a path component
  if (env.DROVER_HOME) return path.resolve(env.DROVER_HOME, 'log', profile);
  const base = xdg(env, 'XDG_STATE_HOME', ['.local', 'state']);
  return path.resolve(base, 'drover', profile);
}

/** Longest socket path we allow (macOS limits sun_path to 104 bytes, Linux to 108). */
const MAX_SOCKET_PATH = 100;

/**
 * Private runtime directory of a profile (socket, PID and lock files):
 * `$DROVER_HOME/run/<profile>`, else `$XDG_RUNTIME_DIR/drover/<profile>`, else the fallback
 * `$TMPDIR/drover-<uid>/<profile>`. When the natural place would make the socket path too long for
 * a Unix socket, a short hashed directory in the fallback is used instead.
 *
 * The fallback lives in a directory other users can write to, so on every call that uses it (every
 * start of a daemon and every client call go through here) `drover-<uid>` is created race-free
 * if missing and checked: it must be ours, mode 0700, not a symbolic link, in a parent that others
 * cannot rename it out of (sticky, like /tmp); an existing profile directory in it is checked the
 * same way. Otherwise another user could have prepared it, or could swap it, and receive our
 * connections or feed us their socket.
 * @throws UnsafePathError when the fallback directory is not safe; nothing is used or changed.
 */
export function runtimeDir(profile: string, env: Env = process.env): string {
  validateProfileName(profile); // it becomes a path component
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  const tmpBase = path.join(env.TMPDIR || os.tmpdir(), `drover-${uid}`);
  let base: string;
  if (env.DROVER_HOME) base = path.resolve(env.DROVER_HOME, 'run');
  else if (env.XDG_RUNTIME_DIR && path.isAbsolute(env.XDG_RUNTIME_DIR))
    base = path.resolve(env.XDG_RUNTIME_DIR, 'drover');
  else base = tmpBase;
  let dir = path.join(base, profile);
  if (Buffer.byteLength(path.join(dir, 'daemon.sock')) > MAX_SOCKET_PATH) {
    const hash = crypto.createHash('sha256').update(dir).digest('hex').slice(0, 16);
    dir = path.join(tmpBase, hash);
  }
  if (path.dirname(dir) === tmpBase) {
    const remedy =
      'remove it if it is not yours, or set XDG_RUNTIME_DIR (or TMPDIR) to a directory only you can write to';
    ensureOwnPrivateDir(tmpBase, { create: true, label: 'runtime directory', remedy });
    ensureOwnPrivateDir(dir, { create: false, label: 'runtime directory', remedy });
  }
  return dir;
}

/** Directory of the output logs of a profile's processes on this host (`drover process logs`). */
export function processLogDir(profile: string, env: Env = process.env): string {
  return path.join(logDir(profile, env), 'processes');
}

/**
 * The output log of process `id` of `profile` on this host: `<log dir>/processes/<id>.log`. When it
 * passes `processes.log_max_bytes` it is renamed to {@link rotatedLogPath} and started anew.
 * Deleting a process should remove both ({@link processLogPaths}).
 */
export function processLogPath(profile: string, id: number, env: Env = process.env): string {
  return path.join(processLogDir(profile, env), `${id}.log`);
}

/** The rotated predecessor of the output log `file`: `<file>.1`. */
export function rotatedLogPath(file: string): string {
  return `${file}.1`;
}

/** Both files of a process's output log, oldest first: the rotated one, then the current one. */
export function processLogPaths(profile: string, id: number, env: Env = process.env): [string, string] {
  const file = processLogPath(profile, id, env);
  return [rotatedLogPath(file), file];
}
