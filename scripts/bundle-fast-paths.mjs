// Bundles the fast paths of bin/drover.js (`daemon status`, `process list`, `process submit`) from the compiled
// dist/src into dist/src/fast/: one module each instead of about thirty, which saves a third of
// what `daemon status` costs on top of node's own start (npm run bench:cli). Dependencies
// (node_modules) stay outside and load as usual, and so does every module the code imports
// dynamically (the service layer's unit check, the D-Bus transport, the store adapters, the
// RabbitMQ adapter): dynamic means lazy, and inlined into the bundle their static imports of pg or
// amqplib would be hoisted to its top and load at every start. The bundles sit at the depth of their sources (dist/src/<dir>/), so
// module-relative paths (bin/drover.js, package.json, ../service/...) resolve as from the
// sources. Source maps chain to src/*.ts. Run by `npm run build` after tsc.
//
// It also replaces dist/src/cli/oclif.js, through which every command, the hooks and bin/drover.js
// import oclif, with a bundle of @oclif/core and its dependencies (see src/cli/oclif.ts): loading
// @oclif/core file by file is most of what an oclif command costs to start. Bundled from the
// TypeScript source, not from tsc's output, so that a second build (tsc leaves an unchanged file
// alone) does not bundle the bundle.
import fs from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';

await build({
  entryPoints: ['src/cli/oclif.ts'],
  outfile: 'dist/src/cli/oclif.js',
  allowOverwrite: true,
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // oclif requires typescript (9 MB) only to read a tsconfig in development mode, which drover never
  // uses: left out, the require fails as it would without typescript installed, which oclif handles.
  external: ['typescript'],
  // oclif is CommonJS: its require() of node's modules needs a real require in an ES module.
  banner: {
    js: "import { createRequire as __droverCreateRequire } from 'node:module';\nconst require = __droverCreateRequire(import.meta.url);",
  },
  // No source map: it would point into node_modules, which a package does not ship.
  sourcemap: false,
  legalComments: 'eof',
  logLevel: 'warning',
});
// tsc's map of the re-export it replaced.
fs.rmSync('dist/src/cli/oclif.js.map', { force: true });

for (const name of ['daemon-status', 'process-list', 'process-submit']) {
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
            // errors/index.js stays one module too, also when imported statically: the lazily loaded
            // modules throw its classes, and a second copy inlined here would not recognise them
            // (an unreachable store reported as INTERNAL, a broker error exiting 1 instead of 3).
            const shared = file === path.resolve('dist/src/errors/index.js');
            if (args.kind !== 'dynamic-import' && !shared) return undefined;
            // Imported from the bundle's directory now: the path is relative to it.
            const rel = path.relative(path.resolve('dist/src/fast'), file);
            return { path: rel.startsWith('.') ? rel : `./${rel}`, external: true };
          });
        },
      },
    ],
  });
}
