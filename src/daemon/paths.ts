import { logDir, runtimeDir } from '../config/index.js';
import { daemonFilePaths, type DaemonFilePaths } from '../protocol/index.js';

/** The files of a profile's daemon. */
export type DaemonPaths = DaemonFilePaths;

/** Paths of the daemon files of profile `name` (the client computes the same ones). */
export function daemonPaths(name: string, env: NodeJS.ProcessEnv = process.env): DaemonPaths {
  return daemonFilePaths(runtimeDir(name, env), logDir(name, env));
}
