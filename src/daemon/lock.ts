/**
 * The exclusive per-profile daemon lock.
 *
 * A real kernel lock that dies with its process: the lock file is a SQLite database opened with
 * `PRAGMA locking_mode=EXCLUSIVE` and held in a `BEGIN EXCLUSIVE` transaction, which takes an
 * fcntl lock on the file. The kernel drops the lock when the process ends, however it ends
 * (SIGKILL, crash, power loss), so there is no staleness to guess; a second starter gets
 * `SQLITE_BUSY` (busy timeout 0) and knows another daemon owns the profile.
 *
 * SQLite cannot take its exclusive lock in one step: it takes a shared lock first (the pragmas read
 * the header) and then upgrades. Two daemons starting at the same moment can both hold the shared
 * lock, and then each one's upgrade fails because of the other: both get `SQLITE_BUSY` and, with a
 * single attempt, both would give up and no daemon would run. So a busy answer is retried, with a
 * fresh connection (closing drops the shared lock) and a random pause, for
 * {@link LOCK_CONTENTION_WINDOW_MS}: a daemon that really holds the lock keeps it for its whole
 * life and is still there at the end, while two starters racing each other get apart.
 *
 * The lock file is never deleted: deleting it while another process waits could let two
 * processes lock two different inodes.
 *
 * @module
 */
import fs from 'node:fs';
import Database from 'better-sqlite3';
import { DaemonException } from '../errors/index.js';
import { sleep } from '../util/index.js';

/** How long a busy lock is retried before it counts as held by a running daemon (ms). */
export const LOCK_CONTENTION_WINDOW_MS = 300;

/** A held lock; {@link DaemonLock.release} is safe to call twice. */
export interface DaemonLock {
  readonly file: string;
  release(): void;
}

/**
 * Takes the lock on `file`. Resolves with null when another process holds it (after retrying
 * for {@link LOCK_CONTENTION_WINDOW_MS}, see the module comment: a lone busy answer may only mean
 * that another starter is racing us for a free lock).
 * @throws DaemonException when the file cannot be opened or locked for another reason.
 */
export async function tryAcquireDaemonLock(
  file: string,
  contentionWindowMs = LOCK_CONTENTION_WINDOW_MS,
): Promise<DaemonLock | null> {
  const deadline = Date.now() + contentionWindowMs;
  for (;;) {
    const lock = lockOnce(file);
    if (lock || Date.now() >= deadline) return lock;
    // Random, so two racing starters do not retry in step.
    await sleep(5 + Math.floor(Math.random() * 25));
  }
}

/** One attempt: the lock, or null on SQLITE_BUSY/LOCKED (the connection is closed then). */
function lockOnce(file: string): DaemonLock | null {
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
