// Generates the command reference between the <!-- commands --> markers of docs/commands.md with
// `oclif readme` (from the built commands and oclif.manifest.json: run `npm run build` first), and
// points the "See code" links of plugin commands at the plugin's package instead of a source file
// this repository does not have. With --check, writes nothing and exits 1 when the page is stale
// (`npm run lint` runs it so, keeping the reference in sync with the commands).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const check = process.argv.includes('--check');
const page = path.resolve('docs', 'commands.md');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-docs-'));
try {
  const tmp = path.join(dir, 'commands.md');
  fs.copyFileSync(page, tmp);
  execFileSync(
    path.resolve('node_modules', '.bin', 'oclif'),
    ['readme', '--readme-path', tmp, '--repository-prefix', '../<%- commandPath %>'],
    { env: { ...process.env, OCLIF_SKIP_NEW_VERSION_CHECK: 'true' }, stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const generated = fs
    .readFileSync(tmp, 'utf8')
    .replace(/_See code: \[(@oclif\/[^\]]+)\]\([^)]*\)_/g, '_From the plugin [$1](https://www.npmjs.com/package/$1)_');
  if (check) {
    if (generated !== fs.readFileSync(page, 'utf8')) {
      console.error('docs/commands.md does not match the commands; run `npm run build && npm run docs:commands`');
      process.exit(1);
    }
    console.log('docs/commands.md matches the commands');
  } else {
    fs.writeFileSync(page, generated);
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
