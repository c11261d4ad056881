/**
 * How package names in `processes.modules` resolve from `processes.modules_root`: the entry
 * `import()` would choose (`exports` with the import conditions, subpath patterns, `main`,
 * `index.js`), and never a file outside the package. Real packages on disk, real imports.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ProcessRegistry } from '../../src/engine/index.js';
import { InputError } from '../../src/errors/index.js';
import { cleanupTempDirs, tempDir } from '../helpers/env.js';

/** A module source defining one process type. */
const esm = (type: string): string => `export const p = { name: '${type}', run: () => null };\n`;
const cjs = (type: string): string => `exports.p = { name: '${type}', run: () => null };\n`;

describe('processes.modules: package resolution from processes.modules_root', () => {
  let root: string;

  before(() => {
    root = tempDir('drover-modroot-');
    fs.chmodSync(root, 0o755);
    const files: Record<string, string> = {
      'pkg-main/package.json': JSON.stringify({ name: 'pkg-main', main: 'lib/entry' }),
      'pkg-main/lib/entry.js': cjs('t.main'),
      'pkg-main/other.js': cjs('t.main_other'),
      'pkg-exports/package.json': JSON.stringify({
        name: 'pkg-exports',
        type: 'module',
        exports: {
          '.': { require: './cjs.cjs', import: './esm.js' },
          './sub/*': { node: './src/*.js' },
          './escape': './../outside.js',
        },
      }),
      'pkg-exports/esm.js': esm('t.exports_import'),
      'pkg-exports/cjs.cjs': cjs('t.exports_require'),
      'pkg-exports/src/a.js': esm('t.exports_sub_a'),
      '@scope/pkg/package.json': JSON.stringify({ name: '@scope/pkg' }),
      '@scope/pkg/index.js': cjs('t.scoped'),
      'outside.js': cjs('t.outside'),
      'pkg-link/package.json': JSON.stringify({ name: 'pkg-link', main: 'index.js' }),
    };
    for (const [rel, content] of Object.entries(files)) {
      const f = path.join(root, 'node_modules', rel);
      fs.mkdirSync(path.dirname(f), { recursive: true });
      fs.writeFileSync(f, content);
    }
    fs.symlinkSync(
      path.join(root, 'node_modules', 'outside.js'),
      path.join(root, 'node_modules', 'pkg-link', 'index.js'),
    );
  });

  after(() => cleanupTempDirs());

  const types = async (spec: string): Promise<string[]> =>
    (await ProcessRegistry.load([spec], { modulesRoot: root }))
      .list()
      .map((d) => d.name)
      .filter((n) => n.startsWith('t.'));

  it('loads the entry import() would choose', async () => {
    assert.deepEqual(await types('pkg-main'), ['t.main']);
    assert.deepEqual(await types('pkg-main/other.js'), ['t.main_other']);
    assert.deepEqual(await types('pkg-exports'), ['t.exports_import']);
    assert.deepEqual(await types('pkg-exports/sub/a'), ['t.exports_sub_a']);
    assert.deepEqual(await types('@scope/pkg'), ['t.scoped']);
  });

  it('refuses what the package does not export, what leaves the package, and a missing root', async () => {
    const refused: Array<[string, RegExp]> = [
      ['pkg-exports/cjs.cjs', /package 'pkg-exports' does not export '\.\/cjs\.cjs' for import/],
      ['pkg-exports/escape', /does not export '\.\/escape'/],
      ['pkg-link', /resolves to .*outside\.js, outside the package's directory/],
      ['not-installed', /package 'not-installed' is not installed in .*node_modules \(processes\.modules_root\)/],
    ];
    for (const [spec, re] of refused) {
      await assert.rejects(
        ProcessRegistry.load([spec], { modulesRoot: root }),
        (err: Error) => err instanceof InputError && re.test(err.message),
        spec,
      );
    }
    await assert.rejects(
      ProcessRegistry.load(['pkg-main']),
      /package name, but processes\.modules_root is not set: package names are resolved only from there/,
    );
    await assert.rejects(
      ProcessRegistry.load(['pkg-main'], { modulesRoot: path.join(root, 'nope') }),
      /nope\/node_modules does not exist/,
    );
  });
});
