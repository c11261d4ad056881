/**
 * What an entry of the option `processes.modules` may be: an absolute file path, or the name of a
 * package (optionally with a subpath, `@scope/pkg/processes.js`) that is resolved from the
 * profile's `processes.modules_root` only. URLs (`data:`, `http:`, `file:`, `node:`), relative
 * paths and anything else are refused, at `config set`, when the configuration is loaded and when
 * the registry loads the modules: a module is code that runs as the profile's owner, so where it
 * comes from must be exactly what the owner wrote down.
 *
 * @module
 */
import path from 'node:path';

/** An entry of `processes.modules`, classified. */
export type ModuleSpec =
  | { kind: 'path'; path: string }
  | {
      kind: 'package';
      /** `pkg` or `@scope/pkg`. */
      name: string;
      /** What follows the name (`processes.js`, `dist/a.js`), or '' for the package's main entry. */
      subpath: string;
    };

// npm's rules for new and legacy names (url-safe, no leading dot or underscore), and path segments
// without `.`/`..`, so a package name can never walk out of its package directory.
const NAME = '[A-Za-z0-9][A-Za-z0-9._~-]*';
const SEGMENT = '[A-Za-z0-9_~@+-][A-Za-z0-9._~@+-]*|\\.[A-Za-z0-9_~@+-][A-Za-z0-9._~@+-]*';
const PACKAGE_RE = new RegExp(`^((?:@${NAME}/)?${NAME})((?:/(?:${SEGMENT}))*)$`);
const URL_SCHEME_RE = /^[A-Za-z][A-Za-z0-9+.-]*:/;

/**
 * Why `spec` is not an acceptable `processes.modules` entry, or null when it is.
 * The text completes "entry 'X' ...".
 */
export function moduleSpecProblem(spec: string): string | null {
  const c = parseModuleSpec(spec);
  return typeof c === 'string' ? c : null;
}

/**
 * Classifies a `processes.modules` entry.
 * @returns the entry, or a string saying why it is refused (completing "entry 'X' ...").
 */
export function parseModuleSpec(spec: string): ModuleSpec | string {
  if (typeof spec !== 'string' || spec === '') return 'is empty';
  if (path.isAbsolute(spec)) return { kind: 'path', path: spec };
  if (URL_SCHEME_RE.test(spec)) {
    const scheme = spec.slice(0, spec.indexOf(':') + 1);
    const hint =
      scheme === 'file:' ? 'write the absolute file path instead' : 'use an absolute file path or a package name';
    return `is a URL (${scheme}); URLs are not accepted, ${hint}`;
  }
  if (spec.startsWith('.')) return 'is a relative path; use an absolute path or a package name';
  if (spec.startsWith('~')) return 'starts with ~, which is not expanded; use an absolute path';
  const m = PACKAGE_RE.exec(spec);
  if (!m) return 'is neither an absolute file path nor a package name';
  return { kind: 'package', name: m[1]!, subpath: m[2]!.replace(/^\//, '') };
}
