#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: the CPU build of torch first (an unpinned
# torch would pull a multi-GB CUDA build), then llmspec with its train + dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.13.0") else 1)' 2>/dev/null; then
  "$PY" -m pip install -q torch==2.13.0
fi
"$PY" -m pip install -q --disable-pip-version-check -e ".[dev]" 2>&1 | grep -v "Running pip as the 'root' user" || true
"$PY" -c 'import llmspec, deepspeed, tokenizers' # fail loudly if the install did not take
# Debian's packages the tests use when present (best effort): shellcheck lints the
# generated launch scripts; chromium loads `llmspec report` pages headless.
missing=""
command -v shellcheck >/dev/null 2>&1 || missing="$missing shellcheck"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
if [ -n "$missing" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  # shellcheck disable=SC2086  # word splitting of the package list is intended
  (apt-get update -qq && apt-get install -y -qq $missing) >/dev/null 2>&1 || echo "setup: could not install$missing; the tests that need them will be skipped" >&2
fi
