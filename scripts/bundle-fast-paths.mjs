// Bundles the fast paths of bin/drover.js (`daemon status`, `process list`) from the compiled
// dist/src into dist/src/fast/: one module each instead of about thirty, which saves a third of
// what `daemon status` costs on top of node's own start (npm run bench:cli). Dependencies
// (node_modules) stay outside and load as usual, and so does every module the code imports
// dynamically (the service layer's unit check, the D-Bus transport, the store adapters, the
// RabbitMQ adapter): dynamic means lazy, and inlined into the bundle their static imports of pg or
// amqplib would be hoisted to its top and load at every start. The bundles sit at the depth of their sources (dist/src/<dir>/), so
// module-relative paths (bin/drover.js, package.json, ../service/...) resolve as from the
// sources. Source maps chain to src/*.ts. Run by `npm run build` after tsc.
import path from 'node:path';
import { build } from 'esbuild';

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
            if (args.kind !== 'dynamic-import') return undefined;
            const file = path.resolve(args.resolveDir, args.path);
            // Imported from the bundle's directory now: the path is relative to it.
            const rel = path.relative(path.resolve('dist/src/fast'), file);
            return { path: rel.startsWith('.') ? rel : `./${rel}`, external: true };
          });
        },
      },
    ],
  });
}
