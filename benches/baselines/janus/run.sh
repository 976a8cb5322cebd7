#!/usr/bin/env bash
# Starts Janus 1.1.2 (Debian package `janus`) with the VideoRoom plugin and the
# WebSocket transport, in the foreground, for the Plaza benchmarks.
#
#   benches/baselines/janus/run.sh --port 8188             # installs if needed, then serves
#   benches/baselines/janus/run.sh --setup-only            # only installs and prepares
#   benches/baselines/janus/run.sh --port 8188 -- -d 5     # extra arguments go to janus
#
# Nothing in /etc is used: the configs of this directory are copied to
# target/baselines/janus/conf (port filled in) and janus gets -F/-C pointing there.
# The apt install only runs when /usr/bin/janus is missing (it needs the network, so do
# it outside the loopback namespace: --setup-only). `exec` keeps the PID: the PID of
# this script is Janus' PID (for /proc CPU reads).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
out="${PLAZA_BASELINE_JANUS_DIR:-$root/target/baselines/janus}"
port=8188
setup_only=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port="$2"; shift 2 ;;
    --port=*) port="${1#--port=}"; shift ;;
    --setup-only) setup_only=1; shift ;;
    --) shift; extra+=("$@"); break ;;
    *) extra+=("$1"); shift ;;
  esac
done

if ! command -v janus >/dev/null 2>&1; then
  echo "janus not installed: apt-get install janus" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends janus >/dev/null \
    || { apt-get update -qq && apt-get install -y --no-install-recommends janus >/dev/null; }
fi

conf="$out/conf"
mkdir -p "$conf"
for f in janus.jcfg janus.transport.websockets.jcfg janus.plugin.videoroom.jcfg; do
  sed -e "s|@CONF_DIR@|$conf|g" -e "s|@WS_PORT@|$port|g" "$here/$f" > "$conf/$f"
done
shim="$out/loopback_ifaddrs.so"
if [ ! -f "$shim" ] || [ "$here/loopback_ifaddrs.c" -nt "$shim" ]; then
  gcc -shared -fPIC -O2 -o "$shim" "$here/loopback_ifaddrs.c" -ldl
fi
[ "$setup_only" = 1 ] && exit 0

export LD_PRELOAD="$shim${LD_PRELOAD:+:$LD_PRELOAD}"
exec janus -F "$conf" -C "$conf/janus.jcfg" -o ${extra[@]+"${extra[@]}"}
