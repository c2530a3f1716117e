#!/usr/bin/env bash
# README command 2: set up, then lint, check generated/ for drift, and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
python3 -m ruff check llmspec tests benchmarks
python3 -m ruff format --check llmspec tests benchmarks
python3 -m pytest -q "$@"
