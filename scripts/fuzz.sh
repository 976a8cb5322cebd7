#!/usr/bin/env bash
# Fuzzes the signalling path with libFuzzer (cargo-fuzz): each target in fuzz/ for N
# seconds (default 300), starting from the committed corpus fuzz/corpus/<target>.
# Prints executions and executions/s per target; fails if any target crashes (the
# crashing input is left in fuzz/artifacts/<target>/).
#
#   scripts/fuzz.sh [--smoke] [--save] [seconds-per-target]
#     --smoke   15 s per target (a quick check, e.g. in CI)
#     --save    new inputs go into fuzz/corpus/<target> (then minimise them with
#               `cargo fuzz cmin`, see fuzz/README.md); by default they go to a
#               scratch directory and the committed corpus is left as it is
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a C++ compiler. cargo-fuzz's `-Z`
# flags are enabled on the stable toolchain with RUSTC_BOOTSTRAP=1. The sanitizer is
# none by default (the code under test is safe Rust; panics are what is looked for);
# FUZZ_SANITIZER=address turns AddressSanitizer on. No network is needed or used.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=300
save=0
for arg in "$@"; do
  case "$arg" in
    --smoke) seconds=15 ;;
    --save) save=1 ;;
    [0-9]*) seconds=$arg ;;
    *) echo "usage: $0 [--smoke] [--save] [seconds-per-target]" >&2; exit 2 ;;
  esac
done
targets=(decode signalling)
sanitizer=${FUZZ_SANITIZER:-none}
export RUSTC_BOOTSTRAP=1

command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2; exit 1; }

echo "==> build (sanitizer: $sanitizer)"
cargo fuzz build -s "$sanitizer"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
summary=()
status=0
for t in "${targets[@]}"; do
  echo "==> fuzz $t for ${seconds}s"
  if [ "$save" = 1 ]; then corpus=(corpus/"$t"); else mkdir -p "$scratch/$t"; corpus=("$scratch/$t" corpus/"$t"); fi
  log="$scratch/$t.log"
  start=$(date +%s.%N)
  set +e
  cargo fuzz run -s "$sanitizer" "$t" "${corpus[@]}" -- \
    -max_total_time="$seconds" -max_len=70000 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 2>&1 | tee "$log" | grep -E '^#[0-9]+.*(pulse|DONE)|^==|panicked|SUMMARY|Test unit written'
  rc=${PIPESTATUS[0]}
  set -e
  elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  execs=${execs:-0}
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  line=$(printf '%-10s %10s execs  %8s execs/s  %6.0f s  %s' "$t" "$execs" "${rate:-?}" "$elapsed" \
    "$([ "$rc" = 0 ] && echo ok || echo "CRASH (exit $rc, see fuzz/artifacts/$t/)")")
  summary+=("$line")
  [ "$rc" = 0 ] || status=1
done

echo "==> summary"
printf '%s\n' "${summary[@]}"
exit "$status"
