/**
 * The background checkpointer of a SQLite store (a worker thread of the profile's daemon; see
 * `SqliteCheckpoints` in sqlite-store.ts): every {@link CHECKPOINT_INTERVAL_MS} it copies the WAL
 * into the database with a PASSIVE checkpoint on a connection of its own.
 *
 * Why a thread: SQLite runs an automatic checkpoint inside the COMMIT that crossed the threshold, so
 * whichever process committed then (a worker claiming, a submitter) also copied the WAL and waited
 * for two fsyncs. Measured here: a one-row transaction cost 320 µs with checkpoints every 256
 * pages, 210 µs with none on its path, and the checkpoints made most of the latency tail. A PASSIVE
 * checkpoint waits for no reader or writer: the other processes go on while it copies.
 *
 * @module
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

/** Period of the background checkpoint. */
export const CHECKPOINT_INTERVAL_MS = 100;

/** What the store passes to the thread. */
export interface CheckpointerData {
  /** Marks the thread as the checkpointer: a user's own worker thread that loads the store is not. */
  role: 'drover-sqlite-checkpointer';
  file: string;
  journalSizeLimit: number;
}

const data = workerData as Partial<CheckpointerData> | null;
if (parentPort !== null && data?.role === 'drover-sqlite-checkpointer') {
  const { file, journalSizeLimit } = data as CheckpointerData;
  const db = new Database(file, { fileMustExist: true, timeout: 0 });
  // The connection that checkpoints and restarts the WAL is the one that truncates it to the limit.
  db.pragma(`journal_size_limit = ${journalSizeLimit}`);
  db.pragma('wal_autocheckpoint = 0');
  const timer = setInterval(() => {
    try {
      db.pragma('wal_checkpoint(PASSIVE)');
    } catch {
      // Busy (another connection checkpoints), a full disk, an I/O error: the store's own
      // connections meet the same trouble and report it; the next round tries again.
    }
  }, CHECKPOINT_INTERVAL_MS);
  parentPort.on('message', (msg: unknown) => {
    if (msg !== 'stop') return;
    clearInterval(timer);
    db.close();
    parentPort!.close();
  });
}
