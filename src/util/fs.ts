import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { UnsafePathError } from '../errors/index.js';

/**
 * Writes `data` to `file` atomically: a temp file in the same directory is written, fsynced and
 * renamed over the target, and the directory is fsynced. Readers see the old or the new content,
 * never a half-written file. The file gets `mode` (default 0600: files of Drover hold secrets).
 */
export function writeFileAtomicSync(file: string, data: string | Buffer, mode = 0o600): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`);
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, 'wx', mode);
    fs.writeFileSync(fd, data);
    fs.fchmodSync(fd, mode);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, file);
  } catch (err) {
    if (fd !== undefined) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  try {
    const dfd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(dfd);
    } finally {
      fs.closeSync(dfd);
    }
  } catch {
    // Directory fsync is not supported everywhere (e.g. some network file systems); the rename is done.
  }
}

/** Creates `dir` (and parents) and makes sure it is private to the user (0700). */
export function ensurePrivateDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.statSync(dir);
  if ((st.mode & 0o777) !== 0o700) fs.chmodSync(dir, 0o700);
}

function myUid(): number {
  return typeof process.getuid === 'function' ? process.getuid() : -1;
}

function octal(mode: number): string {
  return `0${(mode & 0o7777).toString(8)}`;
}

/**
 * Why another local user could change or replace `target` (an existing file or directory), or null
 * when no one but this user and root can. Walks the real path from `target` up to `/`: every
 * component must belong to this user or to root, `target` must not be writable by everyone, and an
 * ancestor writable by everyone must be sticky (then others cannot rename what is ours in it).
 * Group-writable is accepted: with per-user groups (umask 002) it is the norm, and membership cannot
 * be judged here.
 * @param opts.stickyTarget - accept a sticky world-writable `target` (a parent like `/tmp`).
 */
export function replaceableByOthers(target: string, opts: { stickyTarget?: boolean } = {}): string | null {
  const uid = myUid();
  let p = fs.realpathSync(target);
  let isTarget = true;
  for (;;) {
    const st = fs.lstatSync(p);
    if (st.uid !== uid && st.uid !== 0) return `${p} belongs to another user (uid ${st.uid})`;
    if ((st.mode & 0o002) !== 0) {
      const sticky = st.isDirectory() && (st.mode & 0o1000) !== 0;
      if (!sticky) return `${p} is writable by every user (mode ${octal(st.mode)})`;
      if (isTarget && !opts.stickyTarget) return `${p} is writable by every user (mode ${octal(st.mode)})`;
    }
    isTarget = false;
    const parent = path.dirname(p);
    if (parent === p) return null;
    p = parent;
  }
}

/**
 * Makes sure `dir` is a directory private to this user that nobody else prepared and nobody else
 * can replace, for a directory in a place other users can write to (the runtime directory under a
 * shared `$TMPDIR`). Race-free: the directory is created with mode 0700 (no check-then-create
 * window), then opened with `O_NOFOLLOW | O_DIRECTORY` and checked with `fstat` on that very
 * directory: it must not be a symbolic link, must belong to this user and have no group or other
 * permission bits; its parent must not let others replace it (see {@link replaceableByOthers}).
 * Nothing in an unsafe directory is touched.
 * @param opts.create - create `dir` when it is missing (else a missing `dir` is fine).
 * @param opts.label - what the directory is, for messages (`runtime directory`).
 * @param opts.remedy - what the user can do instead, ending the message.
 * @throws UnsafePathError saying what is wrong.
 */
export function ensureOwnPrivateDir(dir: string, opts: { create: boolean; label: string; remedy: string }): void {
  const uid = myUid();
  const refuse = (why: string): never => {
    throw new UnsafePathError(`unsafe ${opts.label} ${dir}: ${why}; ${opts.remedy}`);
  };
  const parent = path.dirname(dir);
  let parentProblem: string | null;
  try {
    parentProblem = replaceableByOthers(parent, { stickyTarget: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    if (!opts.create) return;
    return refuse(`its parent directory ${parent} does not exist`);
  }
  if (parentProblem !== null) refuse(`other users could replace it (${parentProblem})`);
  if (opts.create) {
    try {
      fs.mkdirSync(dir, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  let fd: number;
  try {
    fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !opts.create) return;
    if (code === 'ELOOP' || code === 'ENOTDIR') {
      // Linux says ENOTDIR for a symbolic link opened with O_DIRECTORY | O_NOFOLLOW, others ELOOP.
      if (fs.lstatSync(dir, { throwIfNoEntry: false })?.isSymbolicLink()) {
        refuse('it is a symbolic link, which another user may have planted');
      }
      refuse('it is not a directory');
    }
    throw err;
  }
  try {
    const st = fs.fstatSync(fd);
    if (st.uid !== uid)
      refuse(`it belongs to uid ${st.uid}, not to you (uid ${uid}): another user may have planted it`);
    if ((st.mode & 0o077) !== 0) refuse(`its mode is ${octal(st.mode)}, not 0700, so it is not private`);
  } finally {
    fs.closeSync(fd);
  }
}
