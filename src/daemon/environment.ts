/**
 * The daemon's environment record (`status.environment`): what a running daemon loaded, so that
 * `drover daemon status` can say "restart to pick up ..." when the disk no longer matches, as
 * AiiDA records a daemon's environment.
 *
 * Recorded when the daemon starts: its version and Node.js, the configuration file and the
 * profile's option values it started with, and the files of `processes.modules`. The workers
 * import those modules themselves, each when it starts, after reading the configuration anew; so
 * the module record is taken again whenever all workers start together (the daemon's start and
 * `restartWorkers`), from the configuration as it is then. Each module file is identified by its
 * modification time and size: cheap to compare on every status call, and a rewritten file changes
 * at least its mtime. Only the file a spec resolves to is tracked, not the files it imports.
 *
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { resolveProfile, type Profile } from '../config/index.js';
import type { DaemonEnvironment, JsonValue, ModuleRecord } from '../protocol/index.js';

/**
 * The file a `processes.modules` entry resolves to, as the workers resolve it (engine/registry.ts):
 * an absolute path is itself; a package name is resolved from the working directory (which the
 * workers inherit from the daemon), else from drover's own dependencies. Null when it does not
 * resolve (a relative path, a missing package): the workers then fail to load it and say so.
 */
export function resolveModuleFile(spec: string, cwd: string = process.cwd()): string | null {
  if (path.isAbsolute(spec)) return spec;
  if (spec.startsWith('.')) return null;
  for (const from of [path.join(cwd, 'noop.js'), import.meta.url]) {
    try {
      return createRequire(from).resolve(spec);
    } catch {
      // Not resolvable from here; try the next place.
    }
  }
  return null;
}

/** The identity of the file each spec resolves to now. */
export function moduleRecords(specs: readonly string[], cwd: string = process.cwd()): ModuleRecord[] {
  return specs.map((spec) => {
    const file = resolveModuleFile(spec, cwd);
    if (file === null) return { spec, path: null, mtimeMs: null, size: null };
    try {
      const st = fs.statSync(file);
      return { spec, path: file, mtimeMs: st.mtimeMs, size: st.size };
    } catch {
      return { spec, path: file, mtimeMs: null, size: null };
    }
  });
}

/** The environment of a daemon starting now for `profile`. */
export function recordEnvironment(profile: Profile, version: string): DaemonEnvironment {
  return {
    version,
    node: process.version,
    configFile: profile.configFile,
    options: structuredClone(profile.options) as unknown as Record<string, JsonValue>,
    modules: moduleRecords(profile.options['processes.modules']),
    modulesRecordedAt: Date.now(),
  };
}

/**
 * `env` with its module record taken again, for workers that all start now: they read the
 * configuration anew, so the list comes from the file as it is now (the daemon's own copy of the
 * profile when the file cannot be read: the workers then fail to start and report why).
 */
export function recordWorkerModules(env: DaemonEnvironment, profile: Profile): DaemonEnvironment {
  let specs = profile.options['processes.modules'];
  try {
    specs = resolveProfile(profile.name, { file: profile.configFile }).options['processes.modules'];
  } catch {
    // Keep the daemon's list.
  }
  return { ...env, modules: moduleRecords(specs), modulesRecordedAt: Date.now() };
}
