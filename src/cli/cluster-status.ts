/**
 * `drover daemon status --cluster`: every daemon of the profile on every host, from the registry
 * in its store, with its workers; stale rows (no heartbeat for three periods) marked.
 *
 * @module
 */
import os from 'node:os';
import type { Profile } from '../config/index.js';
import type { ClusterDaemon } from '../api/cluster.js';
import { ago, formatTable } from './format.js';

/** Result of `drover daemon status --cluster --json`. */
export interface ClusterStatusResult {
  profile: string;
  /** The host this ran on (its daemon, if any, is among the daemons). */
  host: string;
  live: number;
  stale: number;
  daemons: ClusterDaemon[];
}

/** Reads the registry of the profile's store. */
export async function collectClusterStatus(profile: Profile): Promise<ClusterStatusResult> {
  const { getClusterStatus } = await import('../api/cluster.js');
  const daemons = await getClusterStatus(profile);
  const stale = daemons.filter((d) => d.stale).length;
  return { profile: profile.name, host: os.hostname(), live: daemons.length - stale, stale, daemons };
}

/** The text of the cluster status. */
export function renderClusterStatus(r: ClusterStatusResult): string[] {
  if (r.daemons.length === 0) return [`No daemon of profile '${r.profile}' is registered in its store.`];
  const out = [
    `Daemons of profile '${r.profile}': ${r.live} live` +
      (r.stale > 0 ? `, ${r.stale} stale` : '') +
      ` (this host: ${r.host})`,
    formatTable(
      ['HOST', 'PID', 'STATE', 'WORKERS', 'RUNNING', 'VERSION', 'STARTED', 'HEARTBEAT'],
      r.daemons.map((d) => [
        d.host,
        String(d.pid),
        d.stale ? `stale (was ${d.state})` : d.state,
        String(d.workers.length),
        `${d.workers.reduce((n, w) => n + w.running, 0)}/${d.workers.reduce((n, w) => n + w.slots, 0)}`,
        d.version,
        ago(d.startedAt),
        `${Math.round(d.ageMs / 1000)}s ago`,
      ]),
    ),
    '',
    formatTable(
      ['WORKER', 'HOST', 'PID', 'RUNNING'],
      r.daemons.flatMap((d) =>
        d.workers.map((w) => [w.id + (d.stale ? ' (stale)' : ''), d.host, String(w.pid), `${w.running}/${w.slots}`]),
      ),
    ),
  ];
  return out;
}
