#!/usr/bin/env bash
# The package as a user gets it: packs the project (`npm pack`, whose prepack does a clean build
# and writes the oclif manifest), checks what the tarball holds, installs it into a fresh prefix
# (`npm install -g --prefix DIR`), and with that installed `drover` alone (no checkout on PATH,
# run from outside the checkout, its own HOME) creates a profile, renders the unit with
# `daemon install --dry-run` (it must run the installed package), starts a daemon, runs a process
# and stops the daemon. Removes everything it made. Run from the repository root (.ci/run does).
#
# Speed: the install takes what it can from the npm cache (which `npm ci` filled; the tarball's
# npm-shrinkwrap.json pins the same versions as package-lock.json) and skips install scripts, so
# no native addon is compiled again (better-sqlite3 would take minutes on two cores): the addons
# the checkout's `npm ci` built for this node are copied into the installed package instead,
# after checking they are the very same versions.
set -euo pipefail

root=$(pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/drover-pack-XXXXXX")
prefix="$work/prefix"
home="$work/home"
profile=ci-pack
daemon_started=no

cleanup() {
  local rc=$?
  if [ "$daemon_started" = yes ]; then
    "$prefix/bin/drover" daemon stop -p "$profile" >/dev/null 2>&1 || true
  fi
  # Queues of the throw-away profile on the shared RabbitMQ, when there is one to ask.
  if [ -n "${uuid:-}" ] && command -v rabbitmqctl >/dev/null 2>&1; then
    # (|| true: with pipefail and errexit, a grep that finds none, the usual case for a local
    # profile, would end the script here with 1 instead of the check's own status.)
    { rabbitmqctl -q list_queues name 2>/dev/null || true; } | { grep -F "$uuid" || true; } | while read -r q; do
      rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true
    done
  fi
  rm -rf "$work"
  rm -f "$root"/drover-*.tgz
  exit $rc
}
trap cleanup EXIT

fail() {
  echo "pack-install: $*" >&2
  exit 1
}

t0=$(date +%s)
echo "pack-install: npm pack"
tgz=$(npm pack --silent --pack-destination "$work" | tail -n 1)
[ -f "$work/$tgz" ] || fail "npm pack made no tarball"

# What the tarball must hold, and what it must not.
listing=$(tar -tzf "$work/$tgz")
for f in package/LICENSE package/README.md package/package.json package/npm-shrinkwrap.json \
  package/oclif.manifest.json package/bin/drover.js package/dist/src/index.js \
  package/dist/src/commands/daemon/status.js package/dist/src/cli/daemon-status.js \
  package/dist/src/fast/daemon-status.js package/dist/src/fast/process-list.js \
  package/units/drover@.service package/plist/drover.plist; do
  grep -qx "$f" <<<"$listing" || fail "the tarball lacks ${f#package/}"
done
if grep -q '^package/dist/test/' <<<"$listing"; then fail "the tarball holds the tests (dist/test)"; fi
# Every source map must point at sources that are shipped too.
mkdir -p "$work/unpacked"
tar -xzf "$work/$tgz" -C "$work/unpacked"
node --input-type=module - "$work/unpacked/package" <<'EOF'
import fs from 'node:fs';
import path from 'node:path';
const root = process.argv[2];
let maps = 0;
const missing = [];
const walk = (d) => {
  for (const e of fs.readdirSync(d, { withFileTypes: true })) {
    const p = path.join(d, e.name);
    if (e.isDirectory()) walk(p);
    else if (e.name.endsWith('.map')) {
      maps++;
      const map = JSON.parse(fs.readFileSync(p, 'utf8'));
      for (const s of map.sources) {
        const src = path.resolve(path.dirname(p), map.sourceRoot ?? '', s);
        if (!fs.existsSync(src)) missing.push(`${path.relative(root, p)} -> ${path.relative(root, src)}`);
      }
    }
  }
};
walk(path.join(root, 'dist'));
if (missing.length > 0) {
  console.error(`pack-install: source maps point at files that are not shipped:\n  ${missing.slice(0, 10).join('\n  ')}`);
  process.exit(1);
}
console.log(`pack-install: ${maps} source maps, all sources shipped`);
EOF

echo "pack-install: npm install -g --prefix (from the npm cache first, no install scripts)"
npm install -g --prefix "$prefix" --prefer-offline --ignore-scripts --no-audit --no-fund --loglevel=error "$work/$tgz" >/dev/null
pkg="$prefix/lib/node_modules/drover"
[ -x "$prefix/bin/drover" ] || fail "no bin/drover in the prefix"
for addon in better-sqlite3 sd-notify; do
  [ -d "$root/node_modules/$addon/build" ] || continue
  [ -d "$pkg/node_modules/$addon" ] || continue
  have=$(node -p "require('$root/node_modules/$addon/package.json').version")
  got=$(node -p "require('$pkg/node_modules/$addon/package.json').version")
  [ "$have" = "$got" ] || fail "$addon: the install got $got, the checkout built $have"
  cp -R "$root/node_modules/$addon/build" "$pkg/node_modules/$addon/"
done

# From here on only the installed package: PATH has its bin and node, nothing of the checkout.
mkdir -p "$home"
cd "$work"
run() {
  env -i PATH="$prefix/bin:$(dirname "$(command -v node)"):/usr/bin:/bin" HOME="$home" \
    DROVER_HOME="$home/drover" LANG=C.UTF-8 "$@"
}
[ "$(run sh -c 'command -v drover')" = "$prefix/bin/drover" ] || fail "drover on PATH is not the installed one"
version=$(node -p "require('$root/package.json').version")
run drover --version | grep -q "^drover/$version " || fail "drover --version does not say $version"
run drover profile setup "$profile" --set-default >/dev/null
uuid=$(run drover profile show "$profile" --json | node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.parse(s).uuid))")
unit=$(run drover daemon install --dry-run --init systemd -p "$profile")
grep -q "^ExecStart=\"$(command -v node)\" \"$pkg/bin/drover.js\" daemon start --foreground --profile %I$" <<<"$unit" ||
  fail "the rendered unit does not run the installed package:
$unit"
run drover daemon start 1 -p "$profile" >/dev/null
daemon_started=yes
run drover daemon status -p "$profile" >/dev/null || fail "daemon status of the started daemon failed"
out=$(run drover process submit core.arithmetic.add -i x=1 -i y=2 --wait --json -t 60 -p "$profile")
node -e "const r=JSON.parse(process.argv[1]); if (r.state!=='finished'||r.outputs.sum!==3) process.exit(1)" "$out" ||
  fail "the process did not finish with sum 3: $out"
run drover daemon stop -p "$profile" >/dev/null
daemon_started=no
if run drover daemon status -p "$profile" >/dev/null; then fail "the daemon still answers after stop"; fi
echo "pack-install: ok ($tgz: installed, profile, unit, daemon, process, stop in $(($(date +%s) - t0)) s)"
