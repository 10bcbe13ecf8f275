#!/usr/bin/env bash
# Builds the tenant runtime image from runtime/Dockerfile on top of the local base image.
# Idempotent and fast: when the image already carries the hash of runtime/'s sources
# (label tinyclaw.runtime.hash) nothing is rebuilt.
# Usage: scripts/build-runtime-image.sh [IMAGE_NAME]   (default tinyclaw/runtime:dev)
# Env: BASE_IMAGE (default tinyclaw/base:bookworm, built by scripts/build-base-image.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:-tinyclaw/runtime:dev}"
base="${BASE_IMAGE:-tinyclaw/base:bookworm}"

if [[ "$base" == tinyclaw/base:* ]]; then
  scripts/build-base-image.sh "$base"
fi

# The runtime's few libraries (runtime/requirements.txt: the Discord Gateway's websocket
# client) come from PyPI as pure-Python wheels, fetched here on the host (the image has no
# pip) into the build context, and unpacked into the image by the Dockerfile.
rm -rf runtime/.deps && mkdir -p runtime/.deps
pyver="$(docker run --rm --network none --entrypoint python3 "$base" \
  -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --platform any --python-version "$pyver" -r runtime/requirements.txt -d runtime/.deps 2>&1 \
  | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
ls runtime/.deps/*.whl >/dev/null 2>&1 || { echo "could not download runtime/requirements.txt" >&2; exit 1; }

# Hash exactly what the build context sends (sources + Dockerfile), plus the base image id.
hash="$( (cd runtime && find . -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 \
           | LC_ALL=C sort -z | xargs -0 sha256sum; \
         docker image inspect --format '{{.Id}}' "$base" 2>/dev/null || echo "$base") \
       | sha256sum | cut -c1-16)"
current="$(docker image inspect --format '{{index .Config.Labels "tinyclaw.runtime.hash"}}' "$name" 2>/dev/null || true)"
if [[ "$current" == "$hash" ]]; then
  echo "runtime image $name is up to date ($hash)"
  exit 0
fi
# The classic builder needs no buildx plugin, which these hosts do not have.
if ! out="$(DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}" docker build -q \
      --build-arg "BASE_IMAGE=$base" \
      --label "tinyclaw.runtime.hash=$hash" \
      -t "$name" -f runtime/Dockerfile runtime 2>&1)"; then
  echo "$out" >&2
  exit 1
fi
echo "built runtime image $name ($hash)"
