#!/usr/bin/env bash
# Installs the Debian packages that cairn's tests run against (real servers,
# not mocks). Installs only what is missing, so a second run is instant.
# Needs root (or sudo) on a Debian-based machine; elsewhere it says what to
# install by hand and exits without failing, and the tests that need a
# missing program skip, naming it.
set -euo pipefail

# package:command-that-proves-it-is-there
wanted=(
  prometheus:promtool   # promtool checks /metrics; a real Prometheus scrapes via HTTP SD
  etcd-server:etcd      # the etcd registry backend runs against a real etcd
  chromium:chromium     # the dashboard's browser tests run in real headless Chromium
  nodejs:node           # OpenTelemetry JS, a non-Python OTLP client of the collector
  npm:npm               # installs OpenTelemetry JS from the npm registry
)

missing=()
for entry in "${wanted[@]+"${wanted[@]}"}"; do
  pkg=${entry%%:*}
  cmd=${entry#*:}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: no apt-get here; please install: ${missing[*]}" >&2
  exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
    echo "install-system-deps: not root and no sudo; please install: ${missing[*]}" >&2
    exit 0
  fi
fi

echo "install-system-deps: installing ${missing[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
