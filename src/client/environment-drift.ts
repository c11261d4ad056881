/**
 * What a running daemon loaded that no longer matches the disk (`status.environment` against the
 * configuration and files now), for `drover daemon status`'s "restart to pick up ..." warnings.
 *
 * @module
 */
import fs from 'node:fs';
import type { Profile } from '../config/config.js';
import { OPTION_SPECS, keepsSharedOptions } from '../config/options.js';
import type { DaemonEnvironment, DaemonSupervisor } from '../protocol/control.js';

/**
 * One difference:
 * - `version`: the daemon runs another drover version than this client;
 * - `option`: an option that takes effect at a restart has another value in the configuration now;
 * - `module`: a `processes.modules` file changed on disk (or appeared, or went away) since the
 *   workers imported it, or the list itself changed.
 */
export interface EnvironmentDrift {
  kind: 'version' | 'option' | 'module';
  /** The option name, the module spec, or `drover`. */
  name: string;
  /** What the daemon loaded, for people. */
  loaded: string;
  /** What is there now, for people. */
  now: string;
  /**
   * What picks the change up: `restart` restarts the workers (they read the configuration and
   * import the modules again), `reset` restarts the daemon itself.
   */
  restart: 'restart' | 'reset';
}

function fileState(file: string | null): { mtimeMs: number; size: number } | null {
  if (file === null) return null;
  try {
    const st = fs.statSync(file);
    return { mtimeMs: st.mtimeMs, size: st.size };
  } catch {
    return null;
  }
}

function describeFile(state: { mtimeMs: number | null; size: number | null } | null): string {
  if (state === null || state.mtimeMs === null) return 'missing';
  return `modified ${new Date(state.mtimeMs).toISOString()}, ${state.size} bytes`;
}

/**
 * The differences between what the daemon loaded (`env`) and the disk now: the profile as the
 * configuration resolves it now, the module files, and this client's drover version.
 */
export function environmentDrift(env: DaemonEnvironment, now: Profile, clientVersion: string): EnvironmentDrift[] {
  const out: EnvironmentDrift[] = [];
  if (env.version !== clientVersion) {
    out.push({ kind: 'version', name: 'drover', loaded: env.version, now: clientVersion, restart: 'reset' });
  }
  const current = now.options as unknown as Record<string, unknown>;
  // A PostgreSQL profile's shared options are in its store, which this check does not read (it
  // must stay cheap): the daemon loaded them from there, so the file's values say nothing.
  const sharedInStore = keepsSharedOptions(now.storage);
  for (const spec of OPTION_SPECS.values()) {
    // Options that take effect at once are read live; processes.modules is compared file by file.
    if (!spec.restartRequired || spec.name === 'processes.modules' || !(spec.name in env.options)) continue;
    if (sharedInStore && spec.scope === 'shared') continue;
    const a = JSON.stringify(env.options[spec.name]);
    const b = JSON.stringify(current[spec.name]);
    if (a !== b) out.push({ kind: 'option', name: spec.name, loaded: a, now: b, restart: 'reset' });
  }
  const specs = now.options['processes.modules'];
  const loaded = new Map(env.modules.map((m) => [m.spec, m]));
  for (const m of env.modules) {
    if (!specs.includes(m.spec) && !sharedInStore) {
      out.push({
        kind: 'module',
        name: m.spec,
        loaded: 'imported',
        now: 'no longer in processes.modules',
        restart: 'restart',
      });
      continue;
    }
    const disk = fileState(m.path);
    const same = disk === null ? m.mtimeMs === null : disk.mtimeMs === m.mtimeMs && disk.size === m.size;
    if (!same) {
      out.push({
        kind: 'module',
        name: m.spec,
        loaded: describeFile(m),
        now: describeFile(disk),
        restart: 'restart',
      });
    }
  }
  for (const spec of specs) {
    if (!loaded.has(spec)) {
      out.push({ kind: 'module', name: spec, loaded: 'not imported', now: 'in processes.modules', restart: 'restart' });
    }
  }
  return out;
}

/** The command that picks a drift up, given who supervises the daemon. */
export function restartCommand(d: EnvironmentDrift, supervisor: DaemonSupervisor): string {
  // Under systemd or launchd `drover daemon restart` restarts the whole daemon.
  return d.restart === 'reset' && supervisor === 'self' ? 'drover daemon restart --reset' : 'drover daemon restart';
}

/** One warning line (without `Warning: `) per drift. */
export function formatDrift(d: EnvironmentDrift, supervisor: DaemonSupervisor): string {
  const fix = `restart to pick it up: ${restartCommand(d, supervisor)}`;
  switch (d.kind) {
    case 'version':
      return `the daemon runs drover ${d.loaded}, this is drover ${d.now}; ${fix}`;
    case 'option':
      return `${d.name} is ${d.now} in the configuration, but the daemon started with ${d.loaded}; ${fix}`;
    case 'module':
      return `process module ${d.name} changed since the workers imported it (then: ${d.loaded}; now: ${d.now}); ${fix}`;
  }
}
