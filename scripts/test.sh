#!/usr/bin/env bash
# Runs every Plaza test on a fresh Debian machine that has Rust, Node and Python.
# Installs what it needs (idempotently), builds with the network, then runs all tests
# that touch the network inside a loopback-only network namespace, and prints a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
log="$root/target/test-logs"
mkdir -p "$log"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

step() { printf '\n==> %s\n' "$*"; }

step "system packages"
packages=(chromium coturn iproute2 util-linux docker-compose nftables)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "present: ${packages[*]}"

step "format and lints"
cargo fmt --check
cargo clippy --all-targets -- -D warnings

step "build (with the network)"
cargo build --all-targets
fuzz_smoke=${PLAZA_FUZZ_SMOKE:-1}
if [ "$fuzz_smoke" = 1 ]; then
  command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
  # The fuzz targets build on the protocol crate alone (no WebRTC): a minute or two cold.
  (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz build -s none)
fi
(cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)

step "docker-compose file"
docker-compose -f docker-compose.yml config -q && echo "docker-compose.yml is valid"

step "tests, inside a loopback-only network namespace"
# Nothing inside can reach anything but 127.0.0.1. Without root, a user namespace
# gives the capabilities `ip link set lo up` needs.
ns=(unshare -n)
[ "$(id -u)" = 0 ] || ns=(unshare -rn)
set +e
"${ns[@]}" bash -c '
  set -o pipefail   # a failing test run must not hide behind tee
  ip link set lo up || exit 1
  echo "interfaces in the namespace: $(ls /sys/class/net | tr "\n" " ")"
  cargo test --offline --all-targets --no-fail-fast 2>&1 | tee "$0/cargo-test.log"; rust=$?
  tests/e2e/run.sh 2>&1 | tee "$0/e2e.log"; e2e=$?
  exit $(( rust != 0 || e2e != 0 ))
' "$log"
status=$?
set -e

fuzz=0
if [ "$fuzz_smoke" = 1 ]; then
  # 15 s per target (PLAZA_FUZZ_SMOKE=0 skips it).
  step "fuzz smoke (no network needed)"
  set +e
  scripts/fuzz.sh --smoke 2>&1 | tee "$log/fuzz.log"; fuzz=${PIPESTATUS[0]}
  set -e
  [ "$fuzz" = 0 ] || status=1
fi

compose=skipped
if [ "${PLAZA_COMPOSE_CHECK:-0}" = 1 ]; then
  # The docker-compose deployment for real (podman, namespaces; needs root). Opt-in:
  # from cold it takes 20 minutes and more (README, "Checking the deployment").
  step "docker-compose deployment (scripts/compose-check.sh)"
  set +e
  as_root scripts/compose-check.sh 2>&1 | tee "$log/compose-check.log"; compose_status=${PIPESTATUS[0]}
  set -e
  if [ "$compose_status" = 0 ]; then compose=ok; else compose=FAILED; status=1; fi
fi

step "summary"
python3 - "$log" <<'PY'
import re, sys
log = sys.argv[1]
totals = {"passed": 0, "failed": 0, "ignored": 0}
for line in open(f"{log}/cargo-test.log", errors="replace"):
    if line.startswith("test result:"):
        for n, what in re.findall(r"(\d+) (passed|failed|ignored)", line):
            totals[what] += int(n)
print("rust tests: {passed} passed, {failed} failed, {ignored} ignored".format(**totals))
e2e = {k: v for k, v in re.findall(r"^# (tests|pass|fail|skipped) (\d+)", open(f"{log}/e2e.log", errors="replace").read(), re.M)}
print("browser tests: {} run, {} passed, {} failed, {} skipped (a skip says why in {}/e2e.log)".format(
    e2e.get("tests", "?"), e2e.get("pass", "?"), e2e.get("fail", "?"), e2e.get("skipped", "?"), log))
PY
[ "$fuzz_smoke" = 1 ] && echo "fuzz smoke: $([ "$fuzz" = 0 ] && echo ok || echo FAILED)"
echo "docker-compose check: $compose$([ "$compose" = skipped ] && echo " (PLAZA_COMPOSE_CHECK=1 runs it)")"
if [ "$status" = 0 ]; then echo "ALL TESTS PASSED"; else echo "SOME TESTS FAILED (logs in $log)"; fi
exit "$status"
