/**
 * What the process commands need to know about the daemon, through the DaemonClient (never the
 * store or the broker).
 *
 * @module
 */
import type { Profile } from '../config/index.js';

/** Number of workers of the profile's daemon, or null when it is not running. */
export async function workerCount(profile: Profile): Promise<number | null> {
  try {
    const { DaemonClient } = await import('../client/index.js');
    const client = new DaemonClient(profile);
    if (!client.isDaemonRunning) return null;
    return await client.getNumberOfWorkers();
  } catch {
    return null;
  }
}
