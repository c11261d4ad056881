// npm test's first phase (scripts/run-tests.sh): every test file but those of the second phase,
// two at a time. The second phase's list and the options both phases share live in
// .mocharc.serial.json, so that a file is in exactly one phase.
'use strict';
const serial = require('./.mocharc.serial.json');

module.exports = {
  ...serial,
  spec: ['dist/test/**/*.test.js'],
  ignore: serial.spec,
  parallel: true,
  jobs: 2,
};
