/**
 * The daemons of a profile on every host, from the registry in its store (each daemon refreshes
 * its row every few seconds, see daemon.ts): `drover daemon status --cluster`,
 * `DaemonClient.getClusterStatus()` and the slot count of `drover process list`.
 *
 * @module
 */
import os from 'node:os';
import type { Profile } from '../config/index.js';
import { openStore } from '../store/index.js';
import { REGISTRY_STALE_MS, type ProcessStore, type RegisteredDaemon } from '../store/types.js';

/** A daemon of the registry, as the cluster status shows it. */
export interface ClusterDaemon extends RegisteredDaemon {
  /** Silent for more than four heartbeats: dead, cut off, frozen, or its host's clock is off. */
  stale: boolean;
}

/** Every daemon of the profile in the registry, oldest start first, stale ones marked. */
export async function clusterDaemons(store: ProcessStore): Promise<ClusterDaemon[]> {
  return (await store.listDaemons()).map((d) => ({ ...d, stale: d.ageMs > REGISTRY_STALE_MS }));
}

/** The cluster status of a profile: opens its store for one read. */
export async function getClusterStatus(profile: Profile): Promise<ClusterDaemon[]> {
  const store = await openStore(profile.storage);
  try {
    return await clusterDaemons(store);
  } finally {
    await store.close();
  }
}

/**
 * Workers of the live daemons of other hosts, and of daemons of this host other than the one with
 * `localPid` (which the caller counts from the daemon itself, registered yet or not).
 */
export function otherLiveWorkers(daemons: readonly ClusterDaemon[], localPid: number | null): number {
  const host = os.hostname();
  return daemons
    .filter((d) => !d.stale && !(d.host === host && d.pid === localPid))
    .reduce((n, d) => n + d.workers.length, 0);
}
