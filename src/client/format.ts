/**
 * Text rendering of daemon status for the CLI (`drover daemon status`), kept beside the client so
 * that command files stay thin.
 *
 * @module
 */
import type { DaemonStatus, WorkerExit, WorkerInfo } from '../protocol/control.js';

/** `52.3 MiB`; `-` for null. */
export function formatBytes(bytes: number | null): string {
  if (bytes === null) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** `3s`, `5m12s`, `3h05m`, `2d04h`. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h${String(m % 60).padStart(2, '0')}m`;
  const d = Math.floor(h / 24);
  return `${d}d${String(h % 24).padStart(2, '0')}h`;
}

const pad = (n: number): string => String(n).padStart(2, '0');

/** Local time `HH:MM:SS`, with the date when it is not today. */
export function formatTime(ms: number | null, now = Date.now()): string {
  if (ms === null) return '-';
  const d = new Date(ms);
  const t = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return new Date(now).toDateString() === d.toDateString()
    ? t
    : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${t}`;
}

/** `code 1` / `signal SIGKILL`. */
export function formatExit(exit: WorkerExit): string {
  return exit.signal !== null ? `signal ${exit.signal}` : `code ${exit.code}`;
}

/** Rows of the worker table: headers first. */
export function workerTable(workers: readonly WorkerInfo[]): { headers: string[]; rows: string[][] } {
  return {
    headers: ['ID', 'PID', 'STATE', 'MEMORY', 'CPU', 'STARTED', 'RESTARTS', 'RUNNING'],
    rows: workers.map((w) => [
      w.id,
      w.pid === null ? '-' : String(w.pid),
      w.state,
      formatBytes(w.memoryRss),
      w.cpuPercent === null ? '-' : `${w.cpuPercent.toFixed(1)}%`,
      formatTime(w.startedAt),
      String(w.restarts),
      w.slots === null ? String(w.running) : `${w.running}/${w.slots}`,
    ]),
  };
}

/** Lines explaining each worker that is crash-looping or waiting to be revived. */
export function workerProblems(workers: readonly WorkerInfo[]): string[] {
  const out: string[] = [];
  for (const w of workers) {
    if (w.state !== 'crash-looping' && w.state !== 'restarting') continue;
    const what = w.state === 'crash-looping' ? 'is crash-looping' : 'died and is being revived';
    const exit = w.lastExit
      ? `; last exit: ${formatExit(w.lastExit)} after ${(w.lastExit.uptimeMs / 1000).toFixed(1)}s`
      : '';
    out.push(`Worker ${w.id} ${what}${exit}${w.lastError ? `; error: ${w.lastError}` : ''}`);
    const lines = w.lastLines.slice(-8);
    if (lines.length > 0) {
      out.push('  last output:');
      for (const l of lines) out.push(`    ${l}`);
    }
  }
  return out;
}

/** The summary line of a running daemon. */
export function daemonSummary(s: DaemonStatus, now = Date.now()): string {
  return (
    `Daemon of profile '${s.profile}' is ${s.state} (pid ${s.pid}, started ${formatTime(s.startedAt, now)}, ` +
    `up ${formatDuration(now - s.startedAt)}, supervisor ${s.supervisor}): ${s.numberOfWorkers} ` +
    `worker${s.numberOfWorkers === 1 ? '' : 's'}, ${s.runningProcesses} process${s.runningProcesses === 1 ? '' : 'es'} running`
  );
}
