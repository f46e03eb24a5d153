#!/usr/bin/env bash
# Install the system programs the pictures need, from Debian's packages:
#   dot       (package graphviz) renders the DOT drawings of surgeon.viz
#   chromium  (package chromium) renders the HTML report headless in the tests
# Idempotent: a program already on PATH is not installed again, and apt-get
# runs (one update, then one install) only when something is missing.
# Runs as root (CI, dev containers); otherwise it uses sudo when there is one.
set -euo pipefail

missing=()
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-system-deps: dot and chromium are already installed"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps: apt-get not found; install ${missing[*]} with your package manager" >&2
    exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install-system-deps: run as root to install ${missing[*]}" >&2
        exit 1
    fi
    sudo=(sudo)
fi

echo "install-system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for program in dot chromium; do
    if ! command -v "$program" >/dev/null 2>&1; then
        echo "install-system-deps: $program is still not on PATH after installing" >&2
        exit 1
    fi
done
echo "install-system-deps: done ($(dot -V 2>&1); $(chromium --version 2>/dev/null))"
