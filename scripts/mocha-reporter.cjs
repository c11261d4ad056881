// Mocha's spec reporter, plus one plain closing line "N passed, N failed[, N skipped]" that CI
// systems (and people skimming a log) can read without knowing mocha's own summary format.
'use strict';
const Spec = require('mocha/lib/reporters/spec');

class DroverReporter extends Spec {
  constructor(runner, options) {
    super(runner, options);
    runner.once('end', () => {
      const s = this.stats;
      const skipped = s.pending > 0 ? `, ${s.pending} skipped` : '';
      process.stdout.write(`\n${s.passes} passed, ${s.failures} failed${skipped}\n`);
    });
  }
}

module.exports = DroverReporter;
