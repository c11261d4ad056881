import fs from 'node:fs';
import { execFileSync } from 'node:child_process';

/**
 * An opaque identifier of when process `pid` started, or `null` when no such process exists.
 * Two different processes that reuse a PID have different start identities, so a PID file that
 * stores both is never fooled by PID reuse. On Linux this is field 22 of /proc/PID/stat (clock
 * ticks since boot); elsewhere the `ps` start time.
 */
export function processStartIdentity(pid: number): string | null {
  if (!Number.isInteger(pid) || pid <= 0) return null;
  if (process.platform === 'linux') {
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      return null;
    }
    // The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // rest[0] is field 3 (state); field 22 is rest[19].
    if (rest[0] === 'Z' || rest[0] === 'X') return null; // a zombie is dead for our purposes
    return rest[19] ?? null;
  }
  try {
    const out = execFileSync('ps', ['-o', 'lstart=', '-p', String(pid)], { encoding: 'utf8' }).trim();
    return out === '' ? null : out;
  } catch {
    return null;
  }
}

/** True when a process with this PID exists and, when `startIdentity` is given, started at that moment. */
export function isProcessAlive(pid: number, startIdentity?: string): boolean {
  const id = processStartIdentity(pid);
  if (id === null) return false;
  return startIdentity === undefined || id === startIdentity;
}

/** The parent PID of process `pid`, or null when no such process exists. */
export function parentPid(pid: number): number | null {
  if (!Number.isInteger(pid) || pid <= 0) return null;
  if (process.platform === 'linux') {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      // Field 4, after the state (field 3), past the parenthesized command name.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      return Number.isInteger(ppid) ? ppid : null;
    } catch {
      return null;
    }
  }
  try {
    const out = execFileSync('ps', ['-o', 'ppid=', '-p', String(pid)], { encoding: 'utf8' }).trim();
    return out === '' ? null : Number(out);
  } catch {
    return null;
  }
}

/**
 * Whether every live member of process group `pgid` is stopped (state `T` or `t` in /proc/PID/stat;
 * a zombie counts as stopped, an empty group too); null where that cannot be read (not Linux).
 */
export function processGroupStopped(pgid: number): boolean | null {
  if (process.platform !== 'linux') return null;
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return null;
  }
  for (const e of entries) {
    if (e.charCodeAt(0) < 48 || e.charCodeAt(0) > 57) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
    } catch {
      continue; // gone
    }
    // After the parenthesized name: state (field 3), ppid, pgrp (field 5).
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(rest[2]) !== pgid) continue;
    if (!['T', 't', 'Z', 'X'].includes(rest[0] ?? '')) return false;
  }
  return true;
}
