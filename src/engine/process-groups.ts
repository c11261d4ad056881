/**
 * The process groups this OS process started for runs (each `core.shell` command runs in a group
 * of its own), and what stops them when this process dies: no command may outlive its worker, or
 * the daemon would release the worker's lease while the command still runs, and another worker
 * would start it again at the same time.
 *
 * Two mechanisms, since either one alone has a case it cannot cover:
 * - **A keeper**: a small `/bin/sh` process (one per worker, started with the first group) that
 *   reads `+PGID` / `-PGID` lines from a pipe whose other end only this process holds. When this
 *   process dies, however it dies (SIGKILL included), the kernel closes the pipe; the keeper reads
 *   end-of-file and SIGKILLs every group still recorded, then exits. It ignores the signals a
 *   terminal or a service manager sends a process group (it runs in a group of its own anyway), so
 *   only end-of-file ends it. This covers workers without a daemon, and a daemon that died too.
 * - **The daemon**: a forked worker reports its groups over IPC (see {@link ProcessGroups.onChange});
 *   when the worker dies the daemon SIGKILLs them itself, synchronously, before it releases the
 *   worker's leases, so the order does not depend on when the keeper gets scheduled.
 *
 * A group is recorded from the moment its leader is spawned until the leader's stdio closed (the
 * command and whatever kept its output open are gone); a command that leaves children behind in its
 * group after that (a daemonizing script) is not followed further.
 *
 * Pause: a group started for a run (with its process id) can be stopped in place
 * ({@link ProcessGroups.stopRun}, SIGSTOP to the whole group) and continued ({@link ProcessGroups.continueRun},
 * SIGCONT). A stopped group still dies by either mechanism above (SIGKILL ends stopped processes
 * too); a SIGTERM sent through {@link ProcessGroups.signal} to a stopped group is followed by a
 * SIGCONT, or it would stay pending until someone continued the group.
 *
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { processGroupStopped, sleep } from '../util/index.js';

/** How long {@link ProcessGroups.stopRun} waits for the processes of a group to show as stopped. */
export const STOP_CONFIRM_MS = 1000;

/**
 * The keeper: `live` is a space-padded list of group ids; at end-of-file each is killed. Written
 * for any POSIX sh (dash, bash, zsh in sh mode), builtins only.
 */
const KEEPER_SCRIPT = `trap '' HUP INT QUIT TERM PIPE TSTP
live=' '
while IFS= read -r line; do
  case $line in
    +[0-9]*) live="$live\${line#+} " ;;
    -[0-9]*) g=\${line#-}; case $live in *" $g "*) live="\${live%% $g *} \${live#* $g }" ;; esac ;;
  esac
done
for g in $live; do kill -s KILL -- "-$g" 2>/dev/null; done
`;

/** The process groups of this OS process's runs; use the shared {@link processGroups}. */
export class ProcessGroups {
  private readonly live = new Set<number>();
  /** Group → the process id of the run that started it (when given). */
  private readonly runOf = new Map<number, number>();
  /** Groups stopped by {@link stopRun} and not continued since. */
  private readonly stopped = new Set<number>();
  private keeper: ChildProcess | null = null;
  private readonly listeners = new Set<(pgids: number[]) => void>();
  private notifyScheduled = false;

  /** A run (of process `processId`, when given) started a process group led by `pgid` (its leader's pid). */
  started(pgid: number, processId?: number): void {
    if (!Number.isSafeInteger(pgid) || pgid <= 1 || this.live.has(pgid)) return;
    this.keeper ??= this.startKeeper();
    this.live.add(pgid);
    if (processId !== undefined) this.runOf.set(pgid, processId);
    this.tell(`+${pgid}\n`);
    this.changed();
  }

  /** The group led by `pgid` is gone (its leader exited and its output closed). */
  ended(pgid: number): void {
    if (!this.live.delete(pgid)) return;
    this.runOf.delete(pgid);
    this.stopped.delete(pgid);
    this.tell(`-${pgid}\n`);
    this.changed();
  }

  /**
   * Stops every group of process `processId`'s run with SIGSTOP and (on Linux) waits until each of
   * their processes shows as stopped, at most {@link STOP_CONFIRM_MS}; resolves to how many groups
   * are stopped (0: the run has none, so nothing could be paused in place).
   */
  async stopRun(processId: number): Promise<number> {
    const groups: number[] = [];
    for (const g of this.groupsOf(processId)) {
      if (this.send(g, 'SIGSTOP')) {
        this.stopped.add(g);
        groups.push(g);
      }
    }
    // The signal is sent; the kernel stops each process when it next runs, which on a busy machine
    // can take a moment: a pause that answers 'stopped' means stopped.
    const deadline = Date.now() + STOP_CONFIRM_MS;
    while (groups.some((g) => this.stopped.has(g) && processGroupStopped(g) === false) && Date.now() < deadline) {
      await sleep(5);
    }
    return groups.filter((g) => this.stopped.has(g)).length;
  }

  /** Continues the groups of process `processId`'s run that {@link stopRun} stopped; returns how many. */
  continueRun(processId: number): number {
    let n = 0;
    for (const g of this.groupsOf(processId)) {
      if (!this.stopped.delete(g)) continue;
      if (this.send(g, 'SIGCONT')) n++;
    }
    return n;
  }

  /**
   * Sends `sig` to group `pgid`; a stopped group is continued right after a signal other than
   * SIGKILL (it could not act on it while stopped). False when the group is gone.
   */
  signal(pgid: number, sig: NodeJS.Signals): boolean {
    const ok = this.send(pgid, sig);
    if (sig !== 'SIGKILL' && sig !== 'SIGSTOP' && this.stopped.delete(pgid)) this.send(pgid, 'SIGCONT');
    return ok;
  }

  private groupsOf(processId: number): number[] {
    return [...this.runOf].filter(([, id]) => id === processId).map(([g]) => g);
  }

  private send(pgid: number, sig: NodeJS.Signals): boolean {
    try {
      process.kill(-pgid, sig);
      return true;
    } catch {
      return false; // already gone
    }
  }

  /** The groups recorded now. */
  get pgids(): number[] {
    return [...this.live];
  }

  /** Pid of the keeper, when one runs. */
  get keeperPid(): number | null {
    return this.keeper?.pid ?? null;
  }

  /** Calls `fn` with every group recorded, once per event-loop turn in which the set changed. */
  onChange(fn: (pgids: number[]) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private changed(): void {
    if (this.notifyScheduled || this.listeners.size === 0) return;
    this.notifyScheduled = true;
    setImmediate(() => {
      this.notifyScheduled = false;
      const now = this.pgids;
      for (const fn of this.listeners) fn(now);
    });
  }

  private tell(line: string): void {
    try {
      this.keeper?.stdin?.write(line);
    } catch {
      // The keeper is gone: 'exit' clears it and the next group starts another.
    }
  }

  /** Starts a keeper and hands it every group recorded (null when it cannot be started). */
  private startKeeper(): ChildProcess | null {
    let k: ChildProcess;
    try {
      k = spawn('/bin/sh', ['-c', KEEPER_SCRIPT], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
    } catch {
      return null;
    }
    k.on('error', () => undefined);
    k.stdin?.on('error', () => undefined);
    k.on('exit', () => {
      if (this.keeper === k) this.keeper = null;
    });
    // Neither the keeper nor its pipe keeps this process alive: it is this process's death it waits for.
    k.unref();
    (k.stdin as unknown as { unref?: () => void } | null)?.unref?.();
    // A keeper started again (the last one was killed) learns every group still running.
    const all = [...this.live].map((g) => `+${g}\n`).join('');
    if (all !== '') k.stdin?.write(all);
    return k;
  }
}

/** The process groups of this OS process. */
export const processGroups = new ProcessGroups();
