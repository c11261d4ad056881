// Mocha's spec reporter, plus one plain closing line "N passed, N failed[, N skipped]" that CI
// systems (and people skimming a log) can read without knowing mocha's own summary format.
//
// It also guards the run against a hang after the last test: mocha runs without --exit so that a
// leaked handle shows, but a leaked server, socket or child would then keep the run alive until
// CI's own limit and nothing of it would be reported. So once the run has ended, an unref'd timer
// lists what still holds the event loop and ends the process with mocha's exit code (the number of
// failures; mocha sets it in its 'exit' listener), marked as a failure when a child process leaked.
'use strict';
const Spec = require('mocha/lib/reporters/spec');

/** How long after the end of the run the process may take to exit by itself. */
const EXIT_GRACE_MS = Number(process.env.MOCHA_EXIT_GRACE_MS || 30_000);

function describeHandle(h) {
  const name = h && h.constructor ? h.constructor.name : typeof h;
  if (name === 'ChildProcess') return `child process ${h.pid} (${(h.spawnargs || []).join(' ').slice(0, 200)})`;
  if (name === 'Socket' || name === 'Server') {
    const addr = typeof h.address === 'function' ? safe(() => JSON.stringify(h.address())) : '';
    const remote = h.remoteAddress ? ` to ${h.remoteAddress}:${h.remotePort}` : '';
    return `${name} ${addr}${remote}${h._pipeName ? ` ${h._pipeName}` : ''}`;
  }
  if (name === 'Timeout') return `timer (${h._idleTimeout} ms) ${safe(() => String(h._onTimeout).slice(0, 120))}`;
  return name;
}

function safe(f) {
  try {
    return f();
  } catch {
    return '';
  }
}

class DroverReporter extends Spec {
  constructor(runner, options) {
    super(runner, options);
    runner.once('end', () => {
      const s = this.stats;
      const skipped = s.pending > 0 ? `, ${s.pending} skipped` : '';
      process.stdout.write(`\n${s.passes} passed, ${s.failures} failed${skipped}\n`);
      const failures = s.failures;
      setTimeout(() => {
        const handles = process._getActiveHandles().filter((h) => h !== process.stdout && h !== process.stderr);
        const children = handles.filter((h) => h && h.constructor && h.constructor.name === 'ChildProcess');
        process.stderr.write(
          `\nmocha: the run ended ${EXIT_GRACE_MS / 1000} s ago but the process has not exited; ` +
            `still open (${handles.length}):\n${handles.map((h) => `  - ${describeHandle(h)}`).join('\n')}\n` +
            (children.length > 0
              ? `A test left ${children.length} child process(es) running: killed, and the run fails.\n`
              : 'A test leaked these handles (no process): exiting with the result of the tests.\n'),
        );
        for (const h of children) if (h.exitCode === null) safe(() => h.kill('SIGKILL'));
        // A leaked process is a cleanup defect a user would notice (a command still running); a
        // leaked socket or timer only kept this runner alive, and is reported above.
        const code = Math.min(failures + (children.length > 0 ? 1 : 0), 255);
        // After mocha's own 'exit' listener, which would set the failure count back.
        process.on('exit', () => {
          process.exitCode = code;
        });
        process.exit(code);
      }, EXIT_GRACE_MS).unref();
    });
  }
}

module.exports = DroverReporter;
