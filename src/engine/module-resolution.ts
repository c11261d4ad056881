/**
 * Where the code named in the option `processes.modules` comes from. A process module runs as the
 * profile's owner in every worker and submitter, so it is loaded only from where the owner said:
 *
 * - an absolute file path is loaded as it is;
 * - a package name (`pkg`, `@scope/pkg`, `pkg/sub/path.js`) is looked up in exactly one place,
 *   `<processes.modules_root>/node_modules/<name>`: never from the current directory, never from
 *   a parent directory's `node_modules`, `NODE_PATH` or Drover's own dependencies, so a package
 *   another user planted in the directory the owner happens to run `drover` from is never found.
 *   Without `processes.modules_root` package names are refused. The entry is chosen as `import()`
 *   would (the package's `exports` with the conditions `import`, `node`, `default`, else `main`,
 *   else `index.js`) and must stay inside the package's directory;
 * - anything else (URLs such as `data:`, `http:`, `file:`; relative paths) is refused, see
 *   config/module-spec.
 *
 * The file, its directories and the modules root must not be changeable by another user (see
 * util/fs `replaceableByOthers`): a module in a world-writable place is refused.
 *
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseModuleSpec } from '../config/index.js';
import { InputError, UnsafePathError, errorMessage } from '../errors/index.js';
import { replaceableByOthers } from '../util/index.js';

/** The conditions `import()` matches in a package's `exports` (the first key of an object that is one of them wins). */
const CONDITIONS: readonly string[] = ['import', 'node', 'default'];

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The file to import for a `processes.modules` entry.
 * @param modulesRoot - the option `processes.modules_root` (absolute), or null when not set.
 * @throws InputError when the entry is refused or cannot be found; UnsafePathError when another
 *   user could change the module.
 */
export function resolveModuleFile(spec: string, modulesRoot: string | null): string {
  const parsed = parseModuleSpec(spec);
  if (typeof parsed === 'string') throw new InputError(`processes.modules entry '${spec}' ${parsed}`);
  const file = parsed.kind === 'path' ? parsed.path : resolvePackage(spec, parsed.name, parsed.subpath, modulesRoot);
  let problem: string | null;
  try {
    problem = replaceableByOthers(file);
  } catch (err) {
    throw new InputError(`cannot load process module '${spec}': ${errorMessage(err)}`, { cause: err });
  }
  if (problem !== null) {
    throw new UnsafePathError(
      `refusing process module '${spec}': ${problem}, so another user could change the code it runs`,
    );
  }
  return file;
}

function resolvePackage(spec: string, name: string, subpath: string, modulesRoot: string | null): string {
  const cannot = (why: string): never => {
    throw new InputError(`cannot load process module '${spec}': ${why}`);
  };
  if (modulesRoot === null) {
    throw new InputError(
      `processes.modules entry '${spec}' is a package name, but processes.modules_root is not set: package ` +
        `names are resolved only from there, never from the current directory. Set processes.modules_root to ` +
        `the directory whose node_modules holds '${name}', or list the module by its absolute path`,
    );
  }
  const nodeModules = path.join(modulesRoot, 'node_modules');
  let problem: string | null = null;
  try {
    problem = replaceableByOthers(nodeModules);
  } catch {
    cannot(`${nodeModules} does not exist (processes.modules_root is ${modulesRoot})`);
  }
  if (problem !== null) {
    throw new UnsafePathError(
      `refusing to load packages from processes.modules_root ${modulesRoot}: ${problem}, so another user could ` +
        'plant a package there',
    );
  }
  let pkgDir = '';
  try {
    pkgDir = fs.realpathSync(path.join(nodeModules, name));
  } catch {
    cannot(`package '${name}' is not installed in ${nodeModules} (processes.modules_root)`);
  }
  let pkg: Record<string, unknown> = {};
  try {
    const parsed = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8')) as unknown;
    if (isObject(parsed)) pkg = parsed;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') cannot(`${pkgDir}/package.json: ${errorMessage(err)}`);
  }
  let file: string | null;
  if (pkg.exports !== undefined && pkg.exports !== null) {
    const sub = subpath === '' ? '.' : `./${subpath}`;
    const target = exportsTarget(pkg.exports, sub);
    if (target === null) cannot(`package '${name}' does not export '${sub}' for import (see its "exports")`);
    file = path.join(pkgDir, target!);
  } else if (subpath !== '') {
    file = path.join(pkgDir, subpath);
  } else {
    file = legacyMain(pkgDir, pkg.main);
    if (file === null) cannot(`package '${name}' has no main entry (no "exports", "main" or index.js)`);
  }
  let real = '';
  try {
    real = fs.realpathSync(file!);
  } catch {
    cannot(`${file!} does not exist`);
  }
  if (real !== pkgDir && !real.startsWith(pkgDir + path.sep)) {
    cannot(`it resolves to ${real}, outside the package's directory ${pkgDir}`);
  }
  return real;
}

/** The entry of a package without `exports`, as Node finds it: `main` (with .js/.json/index.js), else index.js. */
function legacyMain(pkgDir: string, main: unknown): string | null {
  const candidates: string[] = [];
  if (typeof main === 'string' && main !== '') {
    const m = path.join(pkgDir, main);
    candidates.push(m, `${m}.js`, `${m}.json`, path.join(m, 'index.js'));
  }
  candidates.push(path.join(pkgDir, 'index.js'));
  return candidates.find((c) => fs.statSync(c, { throwIfNoEntry: false })?.isFile() === true) ?? null;
}

/**
 * The target of subpath `sub` (`.` or `./x`) in a package's `exports`, as a path relative to the
 * package (`./dist/index.js`), or null when it exports nothing for `import`.
 */
function exportsTarget(exports: unknown, sub: string): string | null {
  const sugar =
    typeof exports === 'string' ||
    Array.isArray(exports) ||
    (isObject(exports) && !Object.keys(exports).some((k) => k.startsWith('.')));
  const map: Record<string, unknown> = sugar ? { '.': exports } : isObject(exports) ? exports : {};
  if (Object.hasOwn(map, sub) && !sub.includes('*')) return conditionalTarget(map[sub], null);
  // Subpath patterns (`./lib/*.js`): the key with the longest prefix before its `*` wins.
  let best: { key: string; match: string } | null = null;
  for (const key of Object.keys(map)) {
    const star = key.indexOf('*');
    if (star === -1 || key.indexOf('*', star + 1) !== -1) continue;
    const prefix = key.slice(0, star);
    const suffix = key.slice(star + 1);
    if (sub.length < key.length || !sub.startsWith(prefix) || !sub.endsWith(suffix)) continue;
    if (best === null || prefix.length > best.key.indexOf('*')) {
      best = { key, match: sub.slice(prefix.length, sub.length - suffix.length) };
    }
  }
  return best === null ? null : conditionalTarget(map[best.key], best.match);
}

function conditionalTarget(target: unknown, match: string | null): string | null {
  if (typeof target === 'string') {
    if (!target.startsWith('./')) return null;
    const t = match === null ? target : target.replaceAll('*', match);
    // A target may not leave the package (Node refuses these too).
    if (t.split(/[/\\]/).some((seg) => seg === '..' || seg === 'node_modules')) return null;
    return t;
  }
  if (Array.isArray(target)) {
    for (const t of target) {
      const r = conditionalTarget(t, match);
      if (r !== null) return r;
    }
    return null;
  }
  if (isObject(target)) {
    for (const [condition, t] of Object.entries(target)) {
      if (!CONDITIONS.includes(condition)) continue;
      const r = conditionalTarget(t, match);
      if (r !== null) return r;
    }
  }
  return null;
}
