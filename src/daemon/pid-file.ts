import fs from 'node:fs';
import { parseDaemonPidFile, parseWorkerRecords, type DaemonPidFile, type WorkerRecord } from '../protocol/index.js';
import { isProcessAlive, processStartIdentity, writeFileAtomicSync } from '../util/index.js';

/** Writes the PID file of this process (atomically, 0600). */
export function writeDaemonPidFile(file: string, profile: string, startedAt: number): DaemonPidFile {
  const start = processStartIdentity(process.pid);
  if (start === null) throw new Error('cannot read the start identity of this process');
  const content: DaemonPidFile = { v: 1, pid: process.pid, start, profile, startedAt };
  writeFileAtomicSync(file, JSON.stringify(content) + '\n', 0o600);
  return content;
}

/** Reads a PID file; null when missing or invalid. */
export function readDaemonPidFile(file: string): DaemonPidFile | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  return parseDaemonPidFile(text);
}

/** Records the daemon's live workers, so that a daemon started after a crash can release their leases. */
export function writeWorkerRecords(file: string, workers: readonly WorkerRecord[]): void {
  writeFileAtomicSync(file, JSON.stringify({ v: 1, workers }) + '\n', 0o600);
}

/** Reads the worker records a previous daemon left; [] when none. */
export function readWorkerRecords(file: string): WorkerRecord[] {
  try {
    return parseWorkerRecords(fs.readFileSync(file, 'utf8'));
  } catch {
    return [];
  }
}

/** True when the worker process of `record` still exists (same PID and start identity). */
export function workerRecordAlive(record: WorkerRecord): boolean {
  return isProcessAlive(record.pid, record.start);
}

/** Removes a file; a missing file is fine. */
export function removeFileQuietly(file: string): void {
  try {
    fs.rmSync(file, { force: true });
  } catch {
    // Nothing more we can do; a stale file never blocks a start.
  }
}
