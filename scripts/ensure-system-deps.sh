#!/usr/bin/env bash
# Installs the real servers the tests and the demo start (etcd, redis), when missing.
# Usage: scripts/ensure-system-deps.sh [extra Debian packages...]
set -euo pipefail
need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
for extra in "$@"; do
  case "$extra" in
    nghttp2-client) command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client) ;;
    nginx) command -v nginx >/dev/null 2>&1 || need+=(nginx) ;;
    haproxy) command -v haproxy >/dev/null 2>&1 || need+=(haproxy) ;;
    *) need+=("$extra") ;;
  esac
done
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing Debian packages: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
