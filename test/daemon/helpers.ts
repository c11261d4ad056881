/**
 * Helpers of the daemon tests: find the OS processes that belong to a test's DROVER_HOME (the
 * daemon and its workers carry it in their environment), kill leftovers, and build clients.
 */
import fs from 'node:fs';
import { DaemonClient, type DaemonClientOptions } from '../../src/client/index.js';
import type { TestProfile } from '../helpers/profile.js';

/** A process of the OS process table. */
export interface OsProcess {
  pid: number;
  cmdline: string;
}

/** Processes (other than this one) whose environment has DROVER_HOME=`home`. Zombies are skipped. */
export function processesOfHome(home: string): OsProcess[] {
  const needle = `DROVER_HOME=${home}`;
  const out: OsProcess[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    try {
      const env = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      if (!env.includes(needle)) continue;
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
      if (cmdline === '') continue; // zombie
      out.push({ pid, cmdline });
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return out;
}

/** Daemon processes of `home` (`drover daemon start --foreground`). */
export function daemonsOfHome(home: string): OsProcess[] {
  return processesOfHome(home).filter((p) => p.cmdline.includes('daemon start --foreground'));
}

/** Worker processes of `home`. */
export function workersOfHome(home: string): OsProcess[] {
  return processesOfHome(home).filter((p) => p.cmdline.includes('worker/main.js'));
}

/**
 * `pid`, once checked to be a live process of `home` (never 0, 1 or the test runner itself): the
 * only pids a test signals.
 */
export function ownPid(home: string, pid: number | null | undefined): number {
  if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 1 || pid === process.pid) {
    throw new Error(`not a pid to signal: ${pid}`);
  }
  if (!processesOfHome(home).some((p) => p.pid === pid)) throw new Error(`pid ${pid} is not a live process of ${home}`);
  return pid;
}

/** True when a process with this pid exists and is not a zombie. */
export function pidAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** SIGKILLs every process of `home` (SIGCONT first, in case a test stopped one); returns what was found. */
export async function killProcessesOfHome(home: string): Promise<OsProcess[]> {
  const found = processesOfHome(home);
  for (const p of found) {
    try {
      process.kill(p.pid, 'SIGCONT');
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  const until = Date.now() + 5000;
  while (found.some((p) => pidAlive(p.pid)) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  return found;
}

/**
 * For an afterEach: stops a daemon the test left running (gracefully), then kills anything of
 * `home` still alive and fails when there was something: a test must not leak processes.
 */
export async function stopAndCheckLeaks(client: DaemonClient | null, home: string): Promise<void> {
  if (client?.isDaemonRunning) {
    try {
      await client.stopDaemon({ wait: true, timeout: 5 });
    } catch {
      // Killed below.
    }
  }
  const leaked = await killProcessesOfHome(home);
  if (leaked.length > 0) {
    throw new Error(`leaked processes (killed now):\n${leaked.map((p) => `  ${p.pid} ${p.cmdline}`).join('\n')}`);
  }
}

/** A DaemonClient for the test profile, with the test's DROVER_HOME in its environment. */
export function clientFor(tp: TestProfile, options: DaemonClientOptions = {}): DaemonClient {
  return new DaemonClient(tp.reload(), { env: { ...process.env, ...tp.env }, ...options });
}
