#!/usr/bin/env bash
# Installs and starts what the platform and its tests need on a fresh Debian machine
# (run as root): Docker engine, PostgreSQL, Redis, debootstrap, Chromium, Prometheus and
# Alertmanager (promtool tests the alert rules); then the local base
# and runtime images. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v pg_ctlcluster >/dev/null || need+=(postgresql)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v chromium >/dev/null || need+=(chromium)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v redis-server >/dev/null || need+=(redis-server)
# Alert rules are unit-tested with promtool; `up` runs both when TCC_LOCAL_ALERTING=1.
command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
# The runtime image's libraries (runtime/requirements.txt) are fetched from PyPI with pip.
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" iptables >/dev/null
fi

# One bridge network per tenant: Docker's default pools allow only ~30 networks, so give
# it a pool of small subnets (4096 tenant networks of /28) before the engine starts.
if [ ! -f /etc/docker/daemon.json ]; then
  mkdir -p /etc/docker
  cat >/etc/docker/daemon.json <<'JSON'
{"default-address-pools": [{"base": "10.213.0.0/16", "size": 28}]}
JSON
  if docker info >/dev/null 2>&1 && [ -f /var/run/docker.pid ]; then
    echo "restarting dockerd to apply /etc/docker/daemon.json"
    kill "$(cat /var/run/docker.pid)"
    for _ in $(seq 1 60); do [ -f /var/run/docker.pid ] || break; sleep 0.5; done
  fi
fi

# Docker engine: start it in the background when nothing answers.
if ! docker info >/dev/null 2>&1; then
  echo "starting dockerd"
  (dockerd >/var/log/tcc-dockerd.log 2>&1 &)
  for _ in $(seq 1 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/tcc-dockerd.log" >&2; exit 1; }
fi

# PostgreSQL: the Debian cluster, a role and a database for the tests.
if ! pg_lsclusters -h 2>/dev/null | grep -q online; then
  cluster=$(pg_lsclusters -h | awk 'NR==1{print $1" "$2}')
  if [ -z "$cluster" ]; then
    ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
    pg_createcluster "$ver" main >/dev/null
    cluster="$ver main"
  fi
  pg_ctlcluster $cluster start
fi
su postgres -c "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname='tcc'\"" | grep -q 1 \
  || su postgres -c "psql -qc \"CREATE ROLE tcc LOGIN SUPERUSER PASSWORD 'tcc'\""
su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname='tcc_test'\"" | grep -q 1 \
  || su postgres -c "createdb -O tcc tcc_test"

# Redis: shared gateway limits (TCC_REDIS_URL). Tests start private instances on free
# ports from this binary; this one serves development on the default port.
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save "" --appendonly no \
    --logfile /var/log/tcc-redis.log
fi

# axe-core from npm: the dashboard's accessibility check, injected into Chromium by the tests.
AXE=.cache/axe/node_modules/axe-core/axe.min.js
if [ ! -f "$AXE" ]; then
  command -v npm >/dev/null || apt-get install -y -qq --no-install-recommends npm >/dev/null
  npm install --silent --no-save --no-package-lock --prefix .cache/axe axe-core@4.14.1 >/dev/null
fi

scripts/build-runtime-image.sh
