#!/usr/bin/env bash
# Runs the docker-compose deployment for real: builds the images from the real
# Dockerfile, starts the real docker-compose.yml with a test .env, and checks it the way
# a user would, from test hosts that reach it only through its published ports.
#
#   scripts/compose-check.sh            # as root, on Debian bookworm (the project's machines)
#   scripts/compose-check.sh --keep     # leave the stack and namespaces up after the
#                                       # checks, to look around (the next run removes them)
#
# Engine: podman, rootful, driven by Debian's docker-compose (1.29) through podman's
# Docker-compatible API, because this machine has no Docker engine and no image
# registry. Base images are made locally and kept in podman's storage between runs:
# debian:bookworm-slim from debootstrap, and a stand-in for coturn/coturn:4.6 from
# Debian's coturn package (scripts/compose-check/coturn.Dockerfile says how it differs).
# The plaza binary is built on the host (`cargo build --release --locked -p plaza --bin
# plaza`: the Dockerfile's own command but for the profile, `release` here to keep the
# check's cold time down, fat-LTO `dist` in the image users build) and handed to the
# Dockerfile's build stage with --build-arg PLAZA_BUILDER; everything from the runtime
# stage on, the entrypoint, the healthcheck and every line of docker-compose.yml are the
# real ones.
#
# Test network (198.18.0.0/15, nothing leaves the machine): a namespace "pzc-host" is the
# server host. Its bridge holds PUBLIC_IP (198.18.0.1); podman runs the stack there, so
# coturn's host network and plaza's published ports are that namespace's. Three client
# namespaces hang off the bridge: ann (.11) and bob (.12) reach the stack directly, cy
# (.13) is relay-only behind a firewall that lets out only HTTP to 8080 and TURN to
# 3478. /etc/netns/pzc-*/hosts resolves TURN_DOMAIN to PUBLIC_IP for them.
#
# Everything made here (namespaces, containers, networks, volumes, podman API services,
# the test .env, certificates) is removed at the end, also on failure. It refuses to run
# over a .env it did not write (a real deployment's settings). The last line is a
# summary: "compose-check: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
state=$root/target/compose-check
mkdir -p "$state"
exec 9>"$state/lock"
flock -n 9 || { echo "compose-check: another run holds $state/lock" >&2; exit 2; }

keep=
case "${1:-}" in
  --keep) keep=1 ;;
  "") ;;
  *) echo "usage: $0 [--keep]" >&2; exit 2 ;;
esac
project=plazacheck
public_ip=198.18.0.1
turn_domain=turn.plaza.test
udp_port=50000
declare -A client_ip=([ann]=198.18.0.11 [bob]=198.18.0.12 [cy]=198.18.0.13)
env_marker="# Written by scripts/compose-check.sh for its test host; removed when it ends."
started=$(date +%s)
passed=0
failed=0
failures=()

step() { printf '\n==> %s (%ds)\n' "$*" "$(($(date +%s) - started))"; }
pass() { passed=$((passed + 1)); echo "PASS: $*"; }
fail() { failed=$((failed + 1)); failures+=("$*"); echo "FAIL: $*"; }
summary() {
  echo
  for f in "${failures[@]}"; do echo "  failed: $f"; done
  echo "took $(($(date +%s) - started)) s; logs in $state"
  echo "compose-check: $passed passed, $failed failed"
}
die() {
  fail "$*"
  summary
  exit 1
}

[ "$(id -u)" = 0 ] || { echo "compose-check: run as root (podman, namespaces)" >&2; exit 2; }

# podman on this kind of machine: runc (crun fails on its cgroups), cgroupfs (no
# systemd), and no default ulimits (they cannot be set here).
export CONTAINERS_CONF=$state/containers.conf
cat >"$CONTAINERS_CONF" <<'EOF'
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
EOF
build_sock=$state/build.sock
run_sock=$state/run.sock
compose() { docker-compose --ansi never -p "$project" "$@"; }
# `ip netns exec` (not nsenter) for clients: it bind-mounts /etc/netns/NAME/hosts.
in_client() { local who=$1; shift; ip netns exec "pzc-$who" "$@"; }

# --- teardown: everything this script makes, whether or not it exists -------------------
stop_service() {
  local pidfile=$state/$1.pid
  if [ -f "$pidfile" ]; then
    local pid
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$pidfile"
  fi
  rm -f "$state/$1.sock"
}
teardown() {
  set +e
  if [ -S "$run_sock" ]; then DOCKER_HOST=unix://$run_sock compose down -t 5 >/dev/null 2>&1; fi
  local ids
  ids=$(podman ps -aq --filter "label=com.docker.compose.project=$project" 2>/dev/null)
  # shellcheck disable=SC2086 # one id per word
  [ -z "$ids" ] || podman rm -f -v $ids >/dev/null 2>&1
  podman network exists "${project}_default" 2>/dev/null && podman network rm -f "${project}_default" >/dev/null 2>&1
  if [ -f "$state/volumes" ]; then
    while read -r v; do [ -z "$v" ] || podman volume rm -f "$v" >/dev/null 2>&1; done <"$state/volumes"
    rm -f "$state/volumes"
  fi
  if [ -f "$state/external-before" ]; then
    for c in $(podman ps -aq --external --no-trunc 2>/dev/null | sort | comm -13 "$state/external-before" -); do
      podman rm -f "$c" >/dev/null 2>&1
    done
    rm -f "$state/external-before"
  fi
  stop_service run
  stop_service build
  for ns in pzc-ann pzc-bob pzc-cy pzc-host; do
    ip netns del "$ns" 2>/dev/null
    rm -rf "/etc/netns/$ns"
  done
  if [ -f "$root/.env" ] && [ "$(head -n1 "$root/.env")" = "$env_marker" ]; then rm -f "$root/.env"; fi
  rm -rf "$state/certs" "$state/builder"
  set -e
}
on_exit() {
  local status=$?
  if [ -n "$keep" ] && [ -S "$run_sock" ]; then
    echo "--keep: the stack is still up. DOCKER_HOST=unix://$run_sock CONTAINERS_CONF=$CONTAINERS_CONF"
    echo "docker-compose -p $project ...; clients: ip netns exec pzc-ann|pzc-bob|pzc-cy ...; the next run removes it all."
  else
    teardown
  fi
  exit "$status"
}

if [ -f "$root/.env" ] && [ "$(head -n1 "$root/.env")" != "$env_marker" ]; then
  echo "compose-check: $root/.env exists (a deployment's settings?). The check writes its own" >&2
  echo "test .env there; move yours away or run the check from a clean clone." >&2
  exit 2
fi
teardown # what a killed earlier run may have left
trap on_exit EXIT
trap 'exit 130' INT TERM

step "system packages"
packages=(podman runc netavark aardvark-dns iptables catatonit debootstrap docker-compose
  iproute2 nftables util-linux curl openssl coturn python3)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "present: ${packages[*]}"

step "base images (made once, kept in podman's storage)"
# Made by this script's recipe number base_recipe (a label); a different one is remade.
base_recipe=2
base_label=$(podman image inspect docker.io/library/debian:bookworm-slim \
  --format '{{index .Labels "org.plaza.compose-check.base"}}' 2>/dev/null || true)
if [ "$base_label" = "$base_recipe" ]; then
  echo "debian:bookworm-slim: present (made by this script)"
elif [ -n "$base_label" ] || ! podman image exists docker.io/library/debian:bookworm-slim; then
  # The Debian mirror apt already uses (the only one reachable).
  mirror=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | awk '{print $1; exit}')
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
  [ -n "$mirror" ] || die "no Debian mirror found in the apt sources"
  rootfs=$state/rootfs
  rm -rf "$rootfs"
  echo "debootstrap --variant=minbase bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$state/debootstrap.log" 2>&1 ||
    die "debootstrap failed (see $state/debootstrap.log)"
  # Like the official slim image: no package lists, caches, manuals, locales or docs,
  # dpkg told to leave them out of later installs too, and apt told to delete the
  # packages it downloaded (its docker-clean), which Dockerfiles rely on.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/man/* \
    "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Acquire::GzipIndexes "true";' >"$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"
  # The same apt sources as the host (its mirror, with updates and security).
  rm -f "$rootfs/etc/apt/sources.list"
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/"
  else
    echo "deb $mirror bookworm main" >"$rootfs/etc/apt/sources.list"
  fi
  tar --numeric-owner -C "$rootfs" -c . |
    podman import --change 'CMD ["bash"]' --change "LABEL org.plaza.compose-check.base=$base_recipe" \
      - docker.io/library/debian:bookworm-slim >/dev/null
  rm -rf "$rootfs"
  echo "debian:bookworm-slim: made"
else
  echo "debian:bookworm-slim: present (not made by this script; used as it is)"
fi
# The layer cache makes this a no-op once built.
podman build -q -f scripts/compose-check/coturn.Dockerfile -t docker.io/coturn/coturn:4.6 \
  scripts/compose-check >"$state/coturn-build.log" 2>&1 ||
  die "the coturn stand-in did not build (see $state/coturn-build.log)"
echo "coturn/coturn:4.6 (stand-in): ready"

step "plaza release binary and the test client (host build)"
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
cargo build --release --locked -p plaza --bin plaza
cargo build --locked -p plaza-tools --bin plaza-call
call_bin=$target_dir/debug/plaza-call

step "plaza image from the real Dockerfile (docker-compose build)"
mkdir -p "$state/builder"
install -m 0755 "$target_dir/release/plaza" "$state/builder/plaza"
printf 'FROM debian:bookworm-slim\nCOPY plaza /out/plaza\n' >"$state/builder/Dockerfile"
podman build -q -t localhost/plaza-compose-check-builder:latest "$state/builder" >/dev/null
# A podman API service in this (the machine's) namespace for the build: the runtime
# stage installs curl from the Debian mirror.
podman system service --time=0 "unix://$build_sock" >"$state/build-service.log" 2>&1 9>&- &
echo $! >"$state/build.pid"
for _ in $(seq 50); do [ -S "$build_sock" ] && break; sleep 0.1; done
# The test .env: PUBLIC_IP is the test host's, the certificate is self-signed for
# TURN_DOMAIN and installed as the README says (uid 65534).
secret=$(openssl rand -hex 32)
admin_key=$(openssl rand -hex 16)
mkdir -p "$state/certs-src"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$turn_domain" \
  -addext "subjectAltName=DNS:$turn_domain" -keyout "$state/certs-src/privkey.pem" \
  -out "$state/certs-src/fullchain.pem" >/dev/null 2>&1
install -D -o 65534 -g 65534 -m 0400 "$state/certs-src/privkey.pem" "$state/certs/privkey.pem"
install -D -o 65534 -g 65534 -m 0444 "$state/certs-src/fullchain.pem" "$state/certs/fullchain.pem"
rm -rf "$state/certs-src"
{
  echo "$env_marker"
  echo "PUBLIC_IP=$public_ip"
  echo "TURN_DOMAIN=$turn_domain"
  echo "TURN_SECRET=$secret"
  # The rest as in .env.example, but the certificates' folder and the admin API key.
  sed -n '/^# --- optional ---/,$p' .env.example | grep -E '^[A-Z_]+=' |
    grep -v -E '^(TURN_CERT_DIR|PLAZA_ADMIN_API_KEY)='
  echo "TURN_CERT_DIR=$state/certs"
  echo "PLAZA_ADMIN_API_KEY=$admin_key"
} >"$root/.env"
# Build containers podman keeps (`podman ps --external`) from before, to tell ours apart.
podman ps -aq --external --no-trunc | sort >"$state/external-before"
build_started=$(date +%s)
old_image=$(podman image inspect docker.io/library/plaza:local --format '{{.Id}}' 2>/dev/null || true)
podman images -q --no-trunc --filter dangling=true | sort >"$state/dangling-before"
if DOCKER_HOST=unix://$build_sock compose build \
  --build-arg PLAZA_BUILDER=localhost/plaza-compose-check-builder:latest \
  >"$state/build.log" 2>&1; then
  # Not kept: the builder image (made again each run) and the plaza:local this replaced.
  podman rmi localhost/plaza-compose-check-builder:latest >/dev/null 2>&1 || true
  new_image=$(podman image inspect docker.io/library/plaza:local --format '{{.Id}}')
  if [ -n "$old_image" ] && [ "$old_image" != "$new_image" ]; then podman rmi "$old_image" >/dev/null 2>&1 || true; fi
  # and the build stage's image, left untagged.
  for i in $(podman images -q --no-trunc --filter dangling=true | sort | comm -13 "$state/dangling-before" -); do
    podman rmi "$i" >/dev/null 2>&1 || true
  done
  size=$(podman image inspect docker.io/library/plaza:local --format '{{.Size}}')
  health=$(podman image inspect docker.io/library/plaza:local --format '{{json .Config.Healthcheck}}' 2>/dev/null ||
    podman inspect --type image docker.io/library/plaza:local | python3 -c 'import json,sys; print(json.load(sys.stdin)[0].get("Config", {}).get("Healthcheck"))')
  pass "plaza:local built from the Dockerfile in $(($(date +%s) - build_started)) s, $((size / 1000000)) MB"
  echo "  healthcheck in the image: $health"
else
  tail -20 "$state/build.log"
  die "docker-compose build failed (see $state/build.log)"
fi
stop_service build

step "test host and clients (network namespaces, 198.18.0.0/24)"
ip netns add pzc-host
ip -n pzc-host link set lo up
ip -n pzc-host link add pzc-br0 type bridge
ip -n pzc-host addr add "$public_ip/24" dev pzc-br0
ip -n pzc-host link set pzc-br0 up
for who in ann bob cy; do
  ip netns add "pzc-$who"
  ip -n "pzc-$who" link set lo up
  ip link add "pzc-$who" type veth peer name eth0 netns "pzc-$who"
  ip link set "pzc-$who" netns pzc-host
  ip -n pzc-host link set "pzc-$who" master pzc-br0 up
  ip -n "pzc-$who" addr add "${client_ip[$who]}/24" dev eth0
  ip -n "pzc-$who" link set eth0 up
  mkdir -p "/etc/netns/pzc-$who"
  printf '127.0.0.1 localhost\n%s %s\n' "$public_ip" "$turn_domain" >"/etc/netns/pzc-$who/hosts"
done
# cy: a client behind a firewall that lets out only the page, the WebSocket and TURN.
in_client cy nft -f - <<EOF
table inet pzc {
  chain out {
    type filter hook output priority 0; policy drop;
    oifname "lo" accept
    ct state established,related accept
    ip daddr $public_ip tcp dport { 8080, 3478 } accept
    ip daddr $public_ip udp dport 3478 accept
  }
}
EOF
echo "pzc-host $public_ip; ann ${client_ip[ann]}, bob ${client_ip[bob]}, cy ${client_ip[cy]} (firewalled: 8080/tcp, 3478 only)"

step "docker-compose up -d (in the test host's namespace)"
# nsenter execs podman, so $! is podman's pid.
nsenter --net=/run/netns/pzc-host podman system service --time=0 "unix://$run_sock" \
  >"$state/run-service.log" 2>&1 9>&- &
echo $! >"$state/run.pid"
for _ in $(seq 50); do [ -S "$run_sock" ] && break; sleep 0.1; done
export DOCKER_HOST=unix://$run_sock
if ! compose up -d >"$state/up.log" 2>&1; then
  cat "$state/up.log"
  die "docker-compose up failed"
fi
cat "$state/up.log"
plaza_ctr=${project}_plaza_1
coturn_ctr=${project}_coturn_1
# Anonymous volumes the containers got (the image's VOLUMEs): for the leftover check.
podman inspect "$plaza_ctr" "$coturn_ctr" --format '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}}{{"\n"}}{{end}}{{end}}' >"$state/volumes" 2>/dev/null || true
sleep 1
for c in "$plaza_ctr" "$coturn_ctr"; do
  if [ "$(podman inspect "$c" --format '{{.State.Status}}' 2>/dev/null)" != running ]; then
    compose logs --no-color | tail -40
    die "$c is not running"
  fi
done
pass "both containers running"

step "plaza's healthcheck"
# podman runs healthchecks from systemd timers; without systemd (this machine) nothing
# runs them, so run the image's HEALTHCHECK here at its interval, as the timer would.
healthy=
for _ in $(seq 12); do
  if podman healthcheck run "$plaza_ctr" >/dev/null 2>&1; then healthy=1; break; fi
  sleep 2
done
compose ps | tee "$state/ps.txt"
if [ -n "$healthy" ] && grep -E "^${plaza_ctr} .*\(healthy\)" "$state/ps.txt" >/dev/null; then
  pass "plaza healthy through its own healthcheck (docker-compose ps: healthy)"
else
  compose logs --no-color plaza | tail -30
  fail "plaza never became healthy"
fi

step "what a user reaches at PUBLIC_IP"
if in_client ann curl -fsS --max-time 5 "http://$public_ip:8080/healthz" >"$state/healthz.json" &&
  in_client ann curl -fsS --max-time 5 "http://$public_ip:8080/" >"$state/index.html" &&
  grep -q -i "<html" "$state/index.html"; then
  pass "page and /healthz on $public_ip:8080 from a client namespace: $(cat "$state/healthz.json")"
else
  fail "page or /healthz not reachable at $public_ip:8080"
fi
stun=$(in_client ann timeout 5 turnutils_stunclient -p 3478 "$public_ip" 2>&1 || true)
tls=$(echo | in_client ann timeout 5 openssl s_client -connect "$public_ip:443" -servername "$turn_domain" 2>/dev/null || true)
if grep -q "UDP reflexive addr: ${client_ip[ann]}:" <<<"$stun" && grep -q "subject=CN *= *$turn_domain" <<<"$tls"; then
  pass "coturn answers STUN on $public_ip:3478/udp and TLS on :443 with the certificate for $turn_domain"
else
  echo "$stun" | tail -3
  echo "$tls" | grep -E "subject|error" | head -3
  fail "coturn does not answer STUN on 3478/udp or TLS on 443"
fi

# One call: each participant a plaza-call process in its own namespace. Prints every
# participant's output; returns non-zero if one of them failed.
call() {
  local room=$1; shift
  local pids=() who status=0
  for spec in "$@"; do
    who=${spec%%:*}
    local extra=${spec#*:}
    [ "$extra" = "$spec" ] && extra=
    # shellcheck disable=SC2086 # extra holds flags
    in_client "$who" "$call_bin" --url "ws://$public_ip:8080/ws" --room "$room" --name "$who" \
      --ice-ip "${client_ip[$who]}" --timeout 40s $extra >"$state/call-$room-$who.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || status=1; done
  for spec in "$@"; do who=${spec%%:*}; sed "s/^/  /" "$state/call-$room-$who.log"; done
  return "$status"
}

step "a call with direct media: ann and bob, both to $public_ip:$udp_port/udp"
if call direct "ann:--expect-remote $public_ip:$udp_port" "bob:--expect-remote $public_ip:$udp_port"; then
  pass "ann and bob: media both ways through $public_ip:$udp_port only"
else
  fail "direct call between ann and bob"
fi

step "a call through coturn: cy relay-only behind its firewall, with bob"
# Both stay in the call after their checks until told, so the admin API and /metrics
# can be read while it runs.
hold=$state/call-relay.hold
rm -f "$hold" "$state"/call-relay-*.log
call relay "cy:--relay-only --expect-relay $public_ip --hold-until $hold" "bob:--hold-until $hold" &
relay_call=$!
for _ in $(seq 300); do
  [ "$(cat "$state"/call-relay-*.log 2>/dev/null | grep -c "checks passed; staying")" = 2 ] && break
  kill -0 "$relay_call" 2>/dev/null || break
  sleep 0.1
done
admin=$(in_client ann curl -sS --max-time 5 -H "X-Api-Key: $admin_key" "http://$public_ip:8080/admin/rooms" 2>&1 || true)
echo "$admin" >"$state/admin-rooms.json"
metrics_during=$(in_client ann curl -fsS --max-time 5 "http://$public_ip:8080/metrics" || true)
touch "$hold"
if wait "$relay_call"; then
  # A relayed candidate exists only if coturn accepted the Allocate, signed with the
  # credentials from cy's `joined`; its port comes from deploy/turnserver.conf's range.
  user=$(sed -n 's/.* as \([0-9]*:[A-Za-z0-9]*\)$/\1/p' "$state/call-relay-cy.log" | head -1)
  ports=$(sed -n 's/.* relayed from [0-9.]*:\([0-9]*\)$/\1/p' "$state/call-relay-cy.log" | tr '\n' ' ')
  in_range=1
  for port in $ports; do [ "$port" -ge 49160 ] && [ "$port" -le 49659 ] || in_range=; done
  if [ -n "$user" ] && [ -n "$ports" ] && [ -n "$in_range" ]; then
    pass "cy: media both ways through coturn, relayed from $public_ip ports ${ports% } (range 49160-49659), with the credentials Plaza minted ($user)"
  else
    fail "cy's relay ports ($ports) or minted username (${user:-none}) are not what the deployment sets"
  fi
else
  fail "relay-only call between cy and bob"
fi

step "/metrics and the admin API"
metrics=$(in_client ann curl -fsS --max-time 5 "http://$public_ip:8080/metrics" || true)
echo "$metrics" >"$state/metrics.txt"
gauge() { awk -v m="$1" '$1 == m {print $2 + 0; exit}' <<<"$2"; }
sum() { awk -v m="$1" '$1 == m || index($1, m "{") == 1 {s += $2} END {print s + 0}' <<<"$2"; }
forwarded=$(sum plaza_packets_forwarded_total "$metrics")
joins=$(sum plaza_join_seconds_count "$metrics")
during=$(gauge plaza_participants "$metrics_during")
after=$(gauge plaza_participants "$metrics")
if [ "${forwarded%.*}" -gt 0 ] && [ "${joins%.*}" -ge 4 ] && [ "$during" = 2 ] && [ "$after" = 0 ]; then
  pass "/metrics: $forwarded packets forwarded, $joins joins, participants $during during the call and $after after"
else
  grep -v '^#' "$state/metrics.txt" | head -20
  fail "/metrics does not show the calls (forwarded $forwarded, joins $joins, participants $during during, $after after)"
fi
no_key=$(in_client ann curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$public_ip:8080/admin/rooms" || true)
wrong_key=$(in_client ann curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "X-Api-Key: wrong-key-0123456789" "http://$public_ip:8080/admin/rooms" || true)
listed=$(python3 -c 'import json,sys; r=[x for x in json.loads(sys.argv[1]) if x["room"] == "relay"]; print(len(r[0]["participants"]) if r else 0)' "$admin" 2>/dev/null || echo "?")
if [ "$listed" = 2 ] && [ "$no_key" = 401 ] && [ "$wrong_key" = 401 ]; then
  pass "admin API: the relay call's room with 2 participants under X-Api-Key; 401 without or with a wrong key"
else
  echo "  /admin/rooms with the key during the call: $admin"
  fail "admin API (room listed with $listed participants; no key: $no_key, wrong key: $wrong_key)"
fi

step "docker-compose down"
compose logs --no-color >"$state/stack.log" 2>&1 || true
podman wait "$plaza_ctr" "$coturn_ctr" >"$state/exit-codes" 2>&1 &
waiter=$!
down_started=$(date +%s%N)
compose down >"$state/down.log" 2>&1 || { cat "$state/down.log"; fail "docker-compose down failed"; }
down_ms=$((($(date +%s%N) - down_started) / 1000000))
wait "$waiter" 2>/dev/null || true
codes=$(tr '\n' ' ' <"$state/exit-codes")
mapfile -t exits <"$state/exit-codes"
plaza_exit=${exits[0]:-?}
coturn_exit=${exits[1]:-?}
down_s=$(awk -v ms="$down_ms" 'BEGIN {printf "%.1f", ms / 1000}')
# Budget: Docker's stop timeout (10 s), after which a container is killed. Plaza stops
# within its shutdown_timeout (5 s) and exits 0; coturn exits on SIGTERM (0 from 4.6.2's
# handler, 143 from the default action) rather than being killed (137).
if [ "$down_ms" -lt 10000 ] && [ "$plaza_exit" = 0 ] && { [ "$coturn_exit" = 0 ] || [ "$coturn_exit" = 143 ]; }; then
  pass "down in $down_s s: plaza exited 0, coturn $coturn_exit"
else
  fail "down took $down_s s; exit codes plaza, coturn: $codes"
fi
left=$(
  podman ps -aq --filter "label=com.docker.compose.project=$project"
  podman network ls -q --filter "name=^${project}_"
  podman volume ls -q --filter "label=com.docker.compose.project=$project"
  while read -r v; do [ -z "$v" ] || ! podman volume exists "$v" || echo "$v"; done <"$state/volumes"
  # Build containers the image builds left (podman keeps those of failed steps).
  podman ps -aq --external --no-trunc | sort | comm -13 "$state/external-before" -
)
if [ -z "$left" ]; then
  pass "no container, network or volume left after down"
else
  fail "left after down: $(echo "$left" | tr '\n' ' ')"
fi

step "summary"
summary
[ "$failed" = 0 ]
