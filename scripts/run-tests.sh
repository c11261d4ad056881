#!/usr/bin/env bash
# The test suite in two phases (`npm test` runs this after the build and the lint).
#
# Most test files spend their time waiting (for daemons, leases, signals, brokers), not computing,
# so they run two at a time (.mocharc.cjs: mocha --parallel, one file per worker process): on
# this 2-core machine that halves the run. Each file has its own temp dirs, vhost or queue prefix,
# database, ports and namespaces, so two files never share state.
#
# The files listed in .mocharc.serial.json run afterwards, one at a time: the several-hosts test
# (three network namespaces, each with a daemon and workers, and a server namespace with its own
# RabbitMQ and PostgreSQL) loads both cores by itself, and the daemon test asserts a revive within
# 1 s, which is the daemon's promise on an idle machine, not under another test file's load.
#
# Both phases always run; the exit code is non-zero when either failed.
set -uo pipefail
cd "$(dirname "$0")/.."
npx mocha
parallel=$?
npx mocha --config .mocharc.serial.json
serial=$?
if [ "$parallel" -ne 0 ] || [ "$serial" -ne 0 ]; then
  echo "npm test: failed (parallel phase exit $parallel, serial phase exit $serial)"
  exit 1
fi
