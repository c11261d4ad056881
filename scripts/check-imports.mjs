// Checks the import graph of src/: no circular imports, and every import between concept folders
// goes the way docs/architecture.md allows (an import against the arrows is a design bug).
import madge from 'madge';
import path from 'node:path';

/** folder -> folders it may import (besides itself). */
const allowed = {
  errors: [],
  util: ['errors'],
  logging: ['util', 'errors'],
  config: ['errors', 'util', 'logging'],
  protocol: ['errors', 'util'],
  store: ['config', 'protocol', 'errors', 'util', 'logging'],
  broker: ['config', 'protocol', 'logging', 'errors', 'util'],
  engine: ['store', 'protocol', 'errors', 'util', 'logging', 'config'],
  worker: ['broker', 'engine', 'store', 'protocol', 'config', 'logging', 'errors', 'util'],
  daemon: ['config', 'protocol', 'store', 'broker', 'logging', 'errors', 'util'],
  client: ['protocol', 'config', 'errors', 'util', 'logging'],
  service: ['config', 'errors', 'util', 'logging'],
  api: ['store', 'broker', 'engine', 'worker', 'daemon', 'config', 'protocol', 'errors', 'util', 'logging', 'client'],
  cli: ['config', 'errors', 'util', 'logging', 'api', 'client', 'service', 'protocol'],
  commands: ['cli', 'client', 'service', 'config', 'api', 'errors', 'util', 'logging', 'protocol'],
};

const res = await madge('src', {
  fileExtensions: ['ts'],
  tsConfig: 'tsconfig.json',
  detectiveOptions: { ts: { skipTypeImports: false }, es6: { mixedImports: true } },
});
let failed = false;
const cycles = res.circular();
if (cycles.length > 0) {
  failed = true;
  console.error(`circular imports (${cycles.length}):`);
  for (const c of cycles) console.error('  ' + c.join(' -> '));
}
const graph = res.obj();
const folderOf = (f) => {
  const parts = f.split('/');
  return parts.length > 1 ? parts[0] : null;
};
for (const [from, deps] of Object.entries(graph)) {
  const a = folderOf(from);
  if (a === null) continue; // top-level files (index.ts) may import anything
  for (const to of deps) {
    const b = folderOf(path.normalize(to));
    if (b === null || b === a) continue;
    const ok = allowed[a];
    if (!ok) {
      failed = true;
      console.error(`${from}: folder src/${a}/ is not in the layer map of scripts/check-imports.mjs`);
    } else if (!ok.includes(b)) {
      failed = true;
      console.error(`${from} imports ${to}: src/${a}/ may not import src/${b}/`);
    }
  }
}
const n = Object.keys(graph).length;
if (failed) process.exit(1);
console.log(`import graph: ${n} modules, no cycles, layers respected`);
