import { logDir, runtimeDir } from '../config/paths.js';
import { daemonFilePaths, type DaemonFilePaths } from '../protocol/control.js';

/** Paths of the daemon files of profile `name` (the daemon uses the same ones). */
export function clientDaemonPaths(name: string, env: NodeJS.ProcessEnv = process.env): DaemonFilePaths {
  return daemonFilePaths(runtimeDir(name, env), logDir(name, env));
}
