#!/usr/bin/env bash
# System packages the test suite runs for real: Debian's docker-registry (an OCI registry on
# loopback, for the image-push tests). A no-op when present; needs root and apt otherwise.
set -euo pipefail
missing=()
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: ${missing[*]} not installed and cannot apt-get here; those tests will skip" >&2
  exit 0
fi
echo "==> installing ${missing[*]} (Debian packages, once)"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
  || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
