#!/usr/bin/env bash
# THE test command: unit + integration tests (cargo), then the end-to-end suite (pytest) that
# drives real clients (Claude Code, Codex CLI, Python SDKs) through the bridge to the mock.
# Fails if any step fails. Needs PostgreSQL for the PostgreSQL tests:
# AIBRIDGE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test (see README).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# The e2e markers whose parts are in main (e2e/pytest.ini): `mock`, `bridge`, `audit`, `mcp`.
# A test needing a part not listed here is not run; keep this in step with main.
# E2E_MARKERS in the environment overrides it (e.g. E2E_MARKERS="mock or bridge").
E2E_MARKERS_IN_MAIN="mock or bridge"
E2E_MARKERS="${E2E_MARKERS:-$E2E_MARKERS_IN_MAIN}"
# The PostgreSQL tests use AIBRIDGE_TEST_POSTGRES_URL; unset, the local server of the
# development machine is used if it listens, else they are skipped (and this says so).
if [[ -z "${AIBRIDGE_TEST_POSTGRES_URL:-}" ]]; then
  if (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
    export AIBRIDGE_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:5432/test"
    echo "== PostgreSQL tests: $AIBRIDGE_TEST_POSTGRES_URL (AIBRIDGE_TEST_POSTGRES_URL was not set)"
  else
    echo "== PostgreSQL tests SKIPPED: AIBRIDGE_TEST_POSTGRES_URL is not set and nothing listens on 127.0.0.1:5432"
  fi
fi

scripts/setup-test-deps.sh

echo "== cargo build --workspace --bins"
cargo build --workspace --bins

echo "== cargo test --workspace"
cargo test --workspace

TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
  .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
export AIBRIDGE_BIN_DIR="$TARGET_DIR/debug"

if [[ -z "$E2E_MARKERS" ]]; then
  echo "== e2e: not run (no part it needs is in main yet)"
  exit 0
fi
echo "== e2e (pytest -m \"$E2E_MARKERS\")"
start=$(date +%s)
(cd e2e && "$ROOT/.venv/bin/pytest" -m "$E2E_MARKERS")
echo "e2e suite took $(($(date +%s) - start))s"
