#!/usr/bin/env bash
# The README's test command: set everything up, then lint, type-check, build the docs,
# run the whole test suite and a smoke run of the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev --require-docker
BIN=.venv/bin
site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT

echo "test: ruff"
"$BIN/ruff" check .
"$BIN/ruff" format --check .
echo "test: mypy"
"$BIN/mypy"
echo "test: docs"
"$BIN/mkdocs" build --strict --quiet --site-dir "$site"
echo "test: pytest"
DXFLOW_REQUIRE_DOCKER=1 "$BIN/python" -m pytest -q "$@"
echo "test: benchmarks (smoke)"
"$BIN/python" benchmarks/run_all.py --quick
