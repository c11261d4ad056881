/**
 * What the process commands need to know about the daemon of this host, through the DaemonClient
 * (never the store or the broker; the daemons of other hosts are in the store's registry, see
 * cluster.ts).
 *
 * @module
 */
import type { Profile } from '../config/index.js';

/** Pid and number of workers of the profile's daemon on this host, or null when it is not running. */
export async function localDaemonWorkers(profile: Profile): Promise<{ pid: number; workers: number } | null> {
  try {
    // The module itself, not the client index: a list or a submit needs no log reader or service manager.
    const { DaemonClient } = await import('../client/daemon-client.js');
    const client = new DaemonClient(profile);
    const pid = client.daemonPid;
    if (pid === null) return null;
    return { pid, workers: await client.getNumberOfWorkers() };
  } catch {
    return null;
  }
}
