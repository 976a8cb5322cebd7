#!/usr/bin/env bash
# Starts the aiortc + aiohttp baseline of Plaza (protocol v1) in the foreground.
#
#   benches/baselines/aiortc/run.sh --port 8090            # creates/updates the venv, then serves
#   benches/baselines/aiortc/run.sh --setup-only           # only creates/updates the venv
#
# The venv lives in target/baselines/venv (created once; pip runs again only when
# requirements.txt changes), so the server can later be started inside a network
# namespace without network. Every other argument goes to server.py (see --help there).
# `exec` keeps the PID: the PID of this script is the server's PID (for /proc CPU reads).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
venv="${PLAZA_BASELINE_VENV:-$root/target/baselines/venv}"
python="${PYTHON:-python3}"

setup_only=0
args=()
for a in "$@"; do
  if [ "$a" = "--setup-only" ]; then setup_only=1; else args+=("$a"); fi
done

want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ]; then
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
fi
if [ "$(cat "$venv/.plaza-requirements.sha256" 2>/dev/null || true)" != "$want" ]; then
  "$venv/bin/pip" install --disable-pip-version-check -q -r "$here/requirements.txt"
  echo "$want" > "$venv/.plaza-requirements.sha256"
fi
[ "$setup_only" = 1 ] && exit 0

exec "$venv/bin/python" -u "$here/server.py" ${args[@]+"${args[@]}"}
