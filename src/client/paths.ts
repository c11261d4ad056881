import { logDir, runtimeDir } from '../config/index.js';
import { daemonFilePaths, type DaemonFilePaths } from '../protocol/index.js';

/** Paths of the daemon files of profile `name` (the daemon uses the same ones). */
export function clientDaemonPaths(name: string, env: NodeJS.ProcessEnv = process.env): DaemonFilePaths {
  return daemonFilePaths(runtimeDir(name, env), logDir(name, env));
}
