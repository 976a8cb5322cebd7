#!/usr/bin/env bash
# Runs Plaza's browser tests. Expects to be inside a loopback-only network namespace and
# the server to be built already, e.g. from the repository root:
#   cargo build
#   unshare -n sh -c 'ip link set lo up && tests/e2e/run.sh'
# Arguments name test files to run instead of all, e.g. `tests/e2e/run.sh ice_restart`
# (ice_restart.test.mjs); the browser runs are slow on a small machine.
# Env: PLAZA_BIN (server binary, default target/debug/plaza), CHROMIUM_BIN (default
# /usr/bin/chromium; Debian package "chromium").
set -euo pipefail
cd "$(dirname "$0")"

chromium_bin="${CHROMIUM_BIN:-/usr/bin/chromium}"
if [ ! -x "$chromium_bin" ]; then
  echo "run.sh: $chromium_bin not found; install it with: apt-get install -y chromium" >&2
  exit 1
fi

# npm ci only when node_modules does not already match the lockfile: the namespace has no
# network, so a repeat run must not need the registry.
locked=$(node -p "require('./package-lock.json').packages['node_modules/playwright-core'].version")
installed=$(node -p "try { require('./node_modules/playwright-core/package.json').version } catch { '' }")
if [ "$locked" != "$installed" ]; then
  if ! npm ci --no-audit --no-fund --prefer-offline; then
    echo "run.sh: npm ci failed. Inside a network namespace the registry is out of reach:" >&2
    echo "        run 'npm ci' in tests/e2e once with the network, then run this again." >&2
    exit 1
  fi
fi

if [ "$#" -eq 0 ]; then
  exec npm test
fi
files=()
for name in "$@"; do
  file="${name%.test.mjs}.test.mjs"
  if [ ! -f "$file" ]; then
    echo "run.sh: no test file $file in tests/e2e" >&2
    exit 1
  fi
  files+=("$file")
done
exec node --test --test-concurrency=1 "${files[@]}"
