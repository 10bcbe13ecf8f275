#!/usr/bin/env bash
# Builds a local Debian bookworm base image with python3 when no registry can be
# reached (these machines reach none). The image trusts the host's CA bundle so
# that a container can still use the package mirrors the host trusts.
# Usage: scripts/build-base-image.sh [IMAGE_NAME]   (default tinyclaw/base:bookworm)
set -euo pipefail
name="${1:-tinyclaw/base:bookworm}"
if docker image inspect "$name" >/dev/null 2>&1; then
  echo "base image $name already present"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install -y debootstrap" >&2; exit 1; }
dir="$(mktemp -d /tmp/tcc-base.XXXXXX)"
trap 'rm -rf "$dir"' EXIT
mirror="${DEBIAN_MIRROR:-}"
debootstrap --variant=minbase --include=python3,ca-certificates bookworm "$dir" $mirror >/tmp/tcc-debootstrap.log 2>&1 \
  || { tail -20 /tmp/tcc-debootstrap.log >&2; exit 1; }
cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
# Trim what a runtime never needs: docs, man pages, apt lists, caches.
rm -rf "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*
tar -C "$dir" -c . | docker import -c 'ENV LANG=C.UTF-8' - "$name" >/dev/null
echo "built base image $name"
