// Bundles the fast paths of bin/drover.js (`daemon status`, `process list`) from the compiled
// dist/src into dist/src/fast/: one module each instead of about thirty, which saves a third of
// what `daemon status` costs on top of node's own start (npm run bench:cli). Dependencies
// (node_modules) stay outside and load as usual, and so does the service layer's unit check
// (service/supervisor.js, service/format.js): it is loaded, from dist/src, only when the profile
// has a unit or plist. The bundles sit at the depth of their sources (dist/src/<dir>/), so
// module-relative paths (bin/drover.js, package.json, ../service/...) resolve as from the
// sources. Source maps chain to src/*.ts. Run by `npm run build` after tsc.
import path from 'node:path';
import { build } from 'esbuild';

/** Modules imported lazily that are left out of the bundles, to load from dist/src when needed. */
const lazy = /\/(service\/supervisor|service\/format|client\/dbus-transport)\.js$/;

for (const name of ['daemon-status', 'process-list']) {
  await build({
    entryPoints: [`dist/src/cli/${name}.js`],
    outfile: `dist/src/fast/${name}.js`,
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    sourcemap: 'linked',
    sourcesContent: false,
    logLevel: 'warning',
    plugins: [
      {
        name: 'lazy-imports',
        setup(b) {
          b.onResolve({ filter: /^\./ }, (args) => {
            const file = path.resolve(args.resolveDir, args.path);
            if (args.kind !== 'dynamic-import' || !lazy.test(file)) return undefined;
            // Imported from the bundle's directory now: the path is relative to it.
            return { path: path.relative(path.resolve('dist/src/fast'), file), external: true };
          });
        },
      },
    ],
  });
}
