/**
 * A throw-away second local user for the security tests: created with `useradd` (as root), used to
 * run commands as that user (the "other user" of a shared machine), removed with `userdel`.
 */
import crypto from 'node:crypto';
import { execFileSync, spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';

/** True when this process runs as root (needed to create a user and to act as it). */
export const IS_ROOT = typeof process.getuid === 'function' && process.getuid() === 0;

/** A local user made for one test file. */
export interface LocalUser {
  name: string;
  uid: number;
  gid: number;
  /** Runs `cmd args` as the user (synchronously), in `cwd`, with a minimal environment. */
  run(cmd: string, args: string[], cwd?: string): SpawnSyncReturns<string>;
  /** Starts `cmd args` as the user in the background. */
  spawn(cmd: string, args: string[]): ChildProcess;
  /** Deletes the user (safe to call twice). */
  remove(): void;
}

/** Creates a user `drover-t-<random>` without a home or a login shell. Needs root. */
export function createLocalUser(): LocalUser {
  const name = `drover-t-${crypto.randomBytes(4).toString('hex')}`;
  execFileSync('useradd', ['-M', '-N', '-s', '/usr/sbin/nologin', name], { stdio: 'pipe' });
  const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }).trim());
  if (!Number.isSafeInteger(uid) || uid <= 0) throw new Error(`useradd made ${name} with uid ${uid}`);
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/' };
  let removed = false;
  return {
    name,
    uid,
    gid,
    run: (cmd, args, cwd = '/') => spawnSync(cmd, args, { uid, gid, cwd, env, encoding: 'utf8' }),
    spawn: (cmd, args) => spawn(cmd, args, { uid, gid, cwd: '/', env, stdio: ['ignore', 'pipe', 'pipe'] }),
    remove() {
      if (removed) return;
      removed = true;
      spawnSync('userdel', [name], { stdio: 'pipe' });
    },
  };
}
