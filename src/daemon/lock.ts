/**
 * The exclusive per-profile daemon lock.
 *
 * A real kernel lock that dies with its process: the lock file is a SQLite database opened with
 * `PRAGMA locking_mode=EXCLUSIVE` and held in a `BEGIN EXCLUSIVE` transaction, which takes an
 * fcntl lock on the file. The kernel drops the lock when the process ends, however it ends
 * (SIGKILL, crash, power loss), so there is no staleness to guess; a second starter gets
 * `SQLITE_BUSY` at once (busy timeout 0) and knows another daemon owns the profile.
 *
 * The lock file is never deleted: deleting it while another process waits could let two
 * processes lock two different inodes.
 *
 * @module
 */
import fs from 'node:fs';
import Database from 'better-sqlite3';
import { DaemonException } from '../errors/index.js';

/** A held lock; {@link DaemonLock.release} is safe to call twice. */
export interface DaemonLock {
  readonly file: string;
  release(): void;
}

/**
 * Takes the lock on `file` without waiting. Returns null when another process holds it.
 * @throws DaemonException when the file cannot be opened or locked for another reason.
 */
export function tryAcquireDaemonLock(file: string): DaemonLock | null {
  // Create it 0600 ourselves: SQLite would create it with the umask's mode.
  fs.closeSync(fs.openSync(file, 'a', 0o600));
  fs.chmodSync(file, 0o600);
  let db: Database.Database;
  try {
    db = new Database(file, { timeout: 0 });
  } catch (err) {
    throw new DaemonException(`cannot open the daemon lock file ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    // Nothing is ever written: no journal file is needed (and none is left behind by a crash).
    db.pragma('journal_mode = OFF');
    db.exec('BEGIN EXCLUSIVE');
  } catch (err) {
    db.close();
    const code = (err as { code?: string }).code ?? '';
    if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) return null;
    throw new DaemonException(`cannot lock the daemon lock file ${file}: ${(err as Error).message}`, { cause: err });
  }
  let held = true;
  return {
    file,
    release() {
      if (!held) return;
      held = false;
      try {
        db.exec('ROLLBACK');
      } catch {
        // Closing releases the lock anyway.
      }
      db.close();
    },
  };
}
