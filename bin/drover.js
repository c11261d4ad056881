#!/usr/bin/env node
// The drover CLI. Build first (npm run build): the commands live in dist/src/commands/<topic>/<verb>.js.
//
// `drover --version`, `drover daemon status`, `drover process list` and a plain `drover process
// submit` answer here without loading oclif: prompts, scripts and monitoring call them, so they must
// start about as fast as node itself.
// They run from bundles of src/cli/ (scripts/bundle-fast-paths.mjs, part of `npm run build`): one
// module to load instead of thirty. Their flags are declared once, in src/cli/ (the oclif commands
// use the same declarations); any
// argument their fast path does not fully understand (--help, a bad value) goes to oclif, as does
// every other command.
import fs from 'node:fs';

const argv = process.argv.slice(2);

if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v')) {
  // What oclif prints for --version (its user agent).
  const pkg = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  process.stdout.write(`${pkg.name}/${pkg.version} ${process.platform}-${process.arch} node-${process.version}\n`);
} else {
  let code = null;
  if (argv[0] === 'daemon' && argv[1] === 'status') {
    const { fastDaemonStatus } = await import('../dist/src/fast/daemon-status.js');
    code = await fastDaemonStatus(argv.slice(2));
  } else if (argv[0] === 'process' && argv[1] === 'list') {
    const { fastProcessList } = await import('../dist/src/fast/process-list.js');
    code = await fastProcessList(argv.slice(2));
  } else if (argv[0] === 'process' && argv[1] === 'submit') {
    const { fastProcessSubmit } = await import('../dist/src/fast/process-submit.js');
    code = await fastProcessSubmit(argv.slice(2));
  }
  if (code !== null) {
    process.exitCode = code;
  } else {
    // oclif checks node against package.json's engines with semver on every start (~10 ms of
    // loading); npm already checks engines when it installs drover.
    process.env.OCLIF_DISABLE_ENGINE_WARNING ??= 'true';
    // oclif as one bundled module (src/cli/oclif.ts): the same copy the commands import.
    const { execute } = await import('../dist/src/cli/oclif.js');
    await execute({ dir: import.meta.url });
  }
}
