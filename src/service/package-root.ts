/**
 * Where this installation of drover lives: the package root (holding `units/`, `plist/` and
 * `bin/drover.js`), its version, and the absolute CLI path a unit or plist must run.
 *
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ServiceError } from '../errors/index.js';

let cached: { root: string; version: string } | undefined;

/**
 * The package root and version, found by walking up from this module (it runs from
 * `dist/src/service/` in a build, `src/service/` under a TS loader) to the `package.json` named
 * `drover`.
 * @throws ServiceError when no such package.json is found (a broken installation).
 */
export function droverPackage(): { root: string; version: string } {
  if (cached) return cached;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const file = path.join(dir, 'package.json');
    try {
      const pkg = JSON.parse(fs.readFileSync(file, 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'drover' && typeof pkg.version === 'string') {
        cached = { root: dir, version: pkg.version };
        return cached;
      }
    } catch {
      // No (readable) package.json here: keep walking up.
    }
    const up = path.dirname(dir);
    if (up === dir) {
      throw new ServiceError(`cannot find drover's package.json above ${fileURLToPath(import.meta.url)}`);
    }
    dir = up;
  }
}

/** Absolute path of this package's CLI entry point, `bin/drover.js`. */
export function droverCliPath(): string {
  return path.join(droverPackage().root, 'bin', 'drover.js');
}

/** Absolute path of a file shipped with the package (`units/drover@.service`, `plist/drover.plist`). */
export function packageFile(...parts: string[]): string {
  return path.join(droverPackage().root, ...parts);
}
