#!/usr/bin/env bash
# Benchmarks Plaza against its baselines (Janus VideoRoom; the aiortc relay it
# replaces) under identical scenarios, one after another in one invocation, and writes
# docs/benchmarks.md (results block) and docs/benchmarks-ramp.png.
#
#   scripts/bench.sh            # everything: ~10 min of measuring after the builds
#   scripts/bench.sh --quick    # shorter windows, fewer steps (a few minutes)
#   scripts/bench.sh --no-micro # skip criterion and callgrind
#
# Setup (needs the network): Debian packages, the Janus and aiortc baselines, release
# and bench builds. Then every run that does WebRTC happens inside a loopback-only
# network namespace. Each server is a separate process started by plaza-load, which
# reads its CPU and memory from /proc. Raw results: target/bench/<time>/;
# the summaries are also copied to docs/bench-results/<time>/ for the page.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
quick=0
micro=1
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    --no-micro) micro=0 ;;
    *) echo "unknown argument: $a" >&2; exit 2 ;;
  esac
done
out="$root/target/bench/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
step() { printf '\n==> %s\n' "$*"; }

step "system packages"
packages=(iproute2 util-linux fonts-dejavu-core valgrind)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

step "baselines (Janus from Debian, aiortc venv from PyPI)"
benches/baselines/janus/run.sh --setup-only
benches/baselines/aiortc/run.sh --setup-only

step "build (release)"
cargo build --release --bins
if [ "$micro" = 1 ]; then
  bench_exe=$(cargo bench --bench forwarder --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -1)
fi

# Scenario parameters: the same for every server.
if [ "$quick" = 1 ]; then
  dur=8s; ramp_dur=6s; ramp=(--per-room 6 --ramp-step 12 --ramp-max 36); web=30
else
  dur=20s; ramp_dur=10s; ramp=(--per-room 6 --ramp-step 6 --ramp-max 36); web=50
fi

step "load runs, inside a loopback-only network namespace"
ns=(unshare -n)
[ "$(id -u)" = 0 ] || ns=(unshare -rn)
cat > "$out/runs.sh" <<EOF
set -u
ip link set lo up
load="$root/target/release/plaza-load --repo $root --log-dir $out/logs --quiet"
status=0
run() { name=\$1; shift; echo "--- \$name"; \$load --json "$out/\$name.json" "\$@" || status=1; }
for t in plaza janus; do
  run meeting-\$t --target \$t --label "meeting: 4 rooms x 4, synthetic 1.5 Mbit/s" --rooms 4 --per-room 4 --duration $dur
done
for t in plaza janus; do
  run webinar-\$t --target \$t --label "webinar: 1 publisher -> $web viewers, synthetic 1.5 Mbit/s" --publishers 1 --subscribers $web --duration $dur
done
for t in plaza janus; do
  run ramp-\$t --target \$t --label "ramp: rooms of 6, synthetic 1.5 Mbit/s" ${ramp[*]} --duration $ramp_dur
done
for t in plaza janus aiortc; do
  run fixture-\$t --target \$t --label "meeting: 1 room x 3, real VP8 320x240 (all three servers)" --media fixture --rooms 1 --per-room 3 --duration $dur
done
exit \$status
EOF
set +e
"${ns[@]}" bash "$out/runs.sh" 2>&1 | tee "$out/runs.log"
runs_status=${PIPESTATUS[0]}
set -e

args=()
if [ "$micro" = 1 ] && [ -n "${bench_exe:-}" ]; then
  step "micro-benchmarks (criterion) and instruction counts (callgrind)"
  if [ "$quick" = 1 ]; then t=(--warm-up-time 1 --measurement-time 2); else t=(--warm-up-time 2 --measurement-time 5); fi
  "$bench_exe" --bench "${t[@]}" | grep -E '^[a-z_]+/|time:' || true
  : > "$out/callgrind.txt"
  for spec in forwarder/1:100000 fanout/1:50000 fanout/10:20000 fanout/100:2000 fanout_srtp/1:20000 fanout_srtp/10:5000 fanout_srtp/100:500; do
    fn=offer; [ "${spec%%/*}" = forwarder ] && fn=decide
    id=${spec%%:*}; count=${spec##*:}; subs=${id##*/}
    FORWARDER_COUNT=$spec valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.$$" \
      --toggle-collect="*forwarder::$fn*" "$bench_exe" >/dev/null 2>&1
    ir=$(sed -n 's/^totals: *//p' "$out/callgrind.$$")
    awk -v id="$id" -v ir="$ir" -v n="$count" -v s="$subs" \
      'BEGIN { printf "%-18s %8.0f instructions per forwarded packet\n", id, ir / (n * s) }' >> "$out/callgrind.txt"
    rm -f "$out/callgrind.$$"
  done
  cat "$out/callgrind.txt"
  args+=(--criterion "$root/target/criterion" --callgrind "$out/callgrind.txt")
fi

step "report"
# The summaries are kept beside the page, so the numbers can be re-read or re-reported.
keep="docs/bench-results/$(basename "$out")"
mkdir -p "$keep"
cp "$out"/*.json "$keep"/
[ -f "$out/callgrind.txt" ] && cp "$out/callgrind.txt" "$keep"/
target/release/plaza-load report --out docs/benchmarks.md --plot docs/benchmarks-ramp.png \
  --command "scripts/bench.sh $*" "${args[@]}" "$keep"/*.json
echo "raw results: $out (summaries kept in $keep)"
exit "$runs_status"
