#!/usr/bin/env bash
# Run docker-py's own integration suite against a private skiffd (issue 4's yardstick).
#
#   tools/dockerpy_suite.sh /path/to/docker-py-checkout [pytest args...]
#
# The docker-py checkout stays outside this repository (never commit it). This script makes a
# throwaway virtualenv with docker 7.1 + paramiko + pytest, starts skiffd with private state,
# networks and iptables chains, bootstraps busybox (every applet) and tags it as the images the
# suite needs (alpine:3.10, alpine:latest; hello-world:latest is built from it), optionally starts a skiff registry
# on loopback as a docker.io mirror holding those images (SKIFF_MIRROR=1), runs the suite with
# the swarm/service/config/secret/plugin/credential files left out, and removes everything.
set -euo pipefail
DOCKERPY=${1:?usage: $0 DOCKER_PY_CHECKOUT [pytest args...]}
shift || true
DOCKERPY=$(cd "$DOCKERPY" && pwd)
HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=$HERE/.venv/bin
WORK=$(mktemp -d /tmp/skiff-dockerpy.XXXXXX)
TAG=dpy$$
SOCK=$WORK/run/skiff.sock
MIRROR_PORT=${MIRROR_PORT:-5599}
PIDS=()

cleanup() {
  set +e
  if [ -S "$SOCK" ]; then  # what the suite left: containers, then networks and volumes
    ids=$("$BIN/skiff" -H "unix://$SOCK" ps -aq)
    [ -n "$ids" ] && "$BIN/skiff" -H "unix://$SOCK" rm -f $ids >/dev/null
    "$BIN/skiff" -H "unix://$SOCK" network prune -f >/dev/null
    "$BIN/skiff" -H "unix://$SOCK" volume prune -f >/dev/null
  fi
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  ip link del "skd$TAG" 2>/dev/null
  for t in filter nat; do
    iptables -t $t -S 2>/dev/null | grep -E "^-A .* -j SKD${TAG^^}" | sed 's/^-A/-D/' | while read -r r; do iptables -t $t $r; done
    for c in $(iptables -t $t -S 2>/dev/null | awk "/^-N SKD${TAG^^}/{print \$2}"); do iptables -t $t -F "$c"; done
    for c in $(iptables -t $t -S 2>/dev/null | awk "/^-N SKD${TAG^^}/{print \$2}"); do iptables -t $t -X "$c"; done
  done
  grep " $WORK" /proc/self/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rmdir /sys/fs/cgroup/*/skiff-$TAG /sys/fs/cgroup/skiff-$TAG 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q "docker==7.1.0" paramiko pytest pytest-timeout websocket-client >/dev/null

mkdir -p "$WORK/run"
"$BIN/skiffd" --root "$WORK/root" --run-dir "$WORK/run" -H "unix://$SOCK" --cgroup-parent "skiff-$TAG" \
  -b "skd$TAG" --bip 10.236.0.1/16 --default-address-pool 10.237.0.0/16 --iptables-chain-prefix "SKD${TAG^^}" \
  ${SKIFF_MIRROR:+--registry-mirror http://127.0.0.1:$MIRROR_PORT} >"$WORK/skiffd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
export DOCKER_HOST=unix://$SOCK SKIFF_HOST=unix://$SOCK
"$BIN/skiff" image bootstrap busybox >/dev/null
for t in alpine:3.10 alpine:latest; do "$BIN/skiff" tag busybox:latest "$t"; done
# hello-world must be an image of its own (prune tests delete it while busybox stays in use)
mkdir -p "$WORK/hello"
printf 'FROM busybox\nCMD ["echo", "Hello from skiff!"]\n' >"$WORK/hello/Dockerfile"
"$BIN/skiff" build -q -t hello-world:latest "$WORK/hello" >/dev/null

if [ -n "${SKIFF_MIRROR:-}" ]; then
  "$BIN/skiff" registry serve --addr "127.0.0.1:$MIRROR_PORT" --root "$WORK/registry" >"$WORK/registry.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$MIRROR_PORT/v2/" >/dev/null && break; sleep 0.1; done
  for t in alpine:3.10 alpine:latest busybox:latest hello-world:latest; do
    "$BIN/skiff" tag "$t" "127.0.0.1:$MIRROR_PORT/library/$t"
    "$BIN/skiff" push -q "127.0.0.1:$MIRROR_PORT/library/$t" >/dev/null
    "$BIN/skiff" rmi "127.0.0.1:$MIRROR_PORT/library/$t" >/dev/null
  done
fi

cd "$DOCKERPY"
rm -rf contexts
export DOCKER_TEST_API_VERSION=1.41
set +e
"$WORK/venv/bin/python" -m pytest tests/integration -p no:cacheprovider -q -rfEsxX --timeout 120 \
  --ignore=tests/integration/api_swarm_test.py --ignore=tests/integration/api_service_test.py \
  --ignore=tests/integration/api_config_test.py --ignore=tests/integration/api_secret_test.py \
  --ignore=tests/integration/api_plugin_test.py --ignore=tests/integration/models_swarm_test.py \
  --ignore=tests/integration/models_services_test.py --ignore=tests/integration/models_nodes_test.py \
  --ignore=tests/integration/credentials "$@"
status=$?
rm -rf contexts
exit $status
