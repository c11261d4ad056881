#!/usr/bin/env node
// The drover CLI. Build first (npm run build): the commands live in dist/src/commands/<topic>/<verb>.js.
//
// `drover --version` and `drover daemon status [-p NAME] [-a] [-t S] [--json]` answer here without
// loading oclif: prompts, scripts and monitoring call them, so they must start about as fast as node
// itself. Everything else (and those two with any other argument, --help included) goes to oclif.
import fs from 'node:fs';

const argv = process.argv.slice(2);

if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v')) {
  // What oclif prints for --version (its user agent).
  const pkg = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  process.stdout.write(`${pkg.name}/${pkg.version} ${process.platform}-${process.arch} node-${process.version}\n`);
} else {
  let code = null;
  if (argv[0] === 'daemon' && argv[1] === 'status') {
    const { fastDaemonStatus } = await import('../dist/src/cli/daemon-status.js');
    code = await fastDaemonStatus(argv.slice(2));
  }
  if (code !== null) {
    process.exitCode = code;
  } else {
    const { execute } = await import('@oclif/core');
    await execute({ dir: import.meta.url });
  }
}
