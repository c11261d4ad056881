/**
 * Memory and CPU sampling of worker processes: `/proc` on Linux (two small reads per worker,
 * no child process), `ps` elsewhere. CPU is the share of one core used since the previous sample.
 *
 * @module
 */
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';

/** One sample of a process. */
export interface ProcSample {
  /** Resident memory, bytes; null when unknown. */
  rss: number | null;
  /** Percent of one core since the previous sample of the same process; null on the first sample. */
  cpuPercent: number | null;
}

let clockTicks: number | null = null;
function ticksPerSecond(): number {
  if (clockTicks === null) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** Samples processes, remembering the previous CPU reading of each. */
export class ProcSampler {
  private readonly previous = new Map<number, { cpuSeconds: number; at: number }>();

  /** Samples `pid`; returns nulls when it cannot be read (process gone). */
  sample(pid: number): ProcSample {
    const now = performance.now();
    const read = process.platform === 'linux' ? readLinux(pid) : readPs(pid);
    if (read === null) {
      this.previous.delete(pid);
      return { rss: null, cpuPercent: null };
    }
    const prev = this.previous.get(pid);
    this.previous.set(pid, { cpuSeconds: read.cpuSeconds, at: now });
    let cpuPercent: number | null = read.cpuPercentHint;
    if (cpuPercent === null && prev !== undefined && now > prev.at) {
      cpuPercent = Math.max(0, ((read.cpuSeconds - prev.cpuSeconds) / ((now - prev.at) / 1000)) * 100);
      cpuPercent = Math.round(cpuPercent * 10) / 10;
    }
    return { rss: read.rss, cpuPercent };
  }

  /** Forgets a process that ended. */
  forget(pid: number): void {
    this.previous.delete(pid);
  }
}

interface RawReading {
  rss: number | null;
  cpuSeconds: number;
  /** `ps` reports a percentage itself. */
  cpuPercentHint: number | null;
}

function readLinux(pid: number): RawReading | null {
  let stat: string;
  let status: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  // Fields after the command name (which may contain spaces and parentheses): rest[0] is field 3.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  return {
    rss: m ? Number(m[1]) * 1024 : null,
    cpuSeconds: (utime + stime) / ticksPerSecond(),
    cpuPercentHint: null,
  };
}

function readPs(pid: number): RawReading | null {
  try {
    const out = execFileSync('ps', ['-o', 'rss=,%cpu=', '-p', String(pid)], { encoding: 'utf8' }).trim();
    const [rss, cpu] = out.split(/\s+/);
    if (rss === undefined || rss === '') return null;
    return { rss: Number(rss) * 1024, cpuSeconds: 0, cpuPercentHint: cpu === undefined ? null : Number(cpu) };
  } catch {
    return null;
  }
}
