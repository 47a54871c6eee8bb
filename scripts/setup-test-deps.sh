#!/usr/bin/env bash
# Installs the real clients and servers the end-to-end suite drives, at pinned versions:
#   .tools/node  (npm --prefix): Claude Code, Codex CLI, the reference "everything" MCP server
#   .venv        (Python venv):  anthropic + openai SDKs, mcp-server-time, pytest, requests
# Idempotent: a stamp file records what was installed, so a second run returns at once.
# Reaches only the npm registry and PyPI (Codex's platform binary is an npm optional dependency).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

NODE_PACKAGES=(
  "@anthropic-ai/claude-code@2.1.330"
  "@openai/codex@0.169.0"
  "@modelcontextprotocol/server-everything@2026.8.31"
)
PY_PACKAGES=(
  "anthropic==2.12.0"
  "openai==3.54.0"
  "mcp-server-time==2026.10.19"
  "pytest==9.2.0"
  "requests==2.34.2"
)

NODE_DIR="$ROOT/.tools/node"
VENV="$ROOT/.venv"
NODE_STAMP="$NODE_DIR/.installed"
PY_STAMP="$VENV/.installed"
NODE_WANT="${NODE_PACKAGES[*]}"
PY_WANT="${PY_PACKAGES[*]}"

log() { echo "setup-test-deps: $*" >&2; }

node_ok() {
  [[ -f "$NODE_STAMP" && "$(cat "$NODE_STAMP")" == "$NODE_WANT" ]] || return 1
  local bin
  for bin in claude codex mcp-server-everything; do
    [[ -x "$NODE_DIR/node_modules/.bin/$bin" ]] || return 1
  done
}

py_ok() {
  [[ -f "$PY_STAMP" && "$(cat "$PY_STAMP")" == "$PY_WANT" ]] || return 1
  local bin
  for bin in python mcp-server-time pytest; do
    [[ -x "$VENV/bin/$bin" ]] || return 1
  done
}

pick_python() {
  local candidate
  for candidate in python3.11 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1; then
      command -v "$candidate"
      return 0
    fi
  done
  log "no python3 found"
  return 1
}

if node_ok; then
  log "node tools up to date"
else
  command -v npm >/dev/null || { log "npm not found (need node >= 20)"; exit 1; }
  log "installing node tools into .tools/node: $NODE_WANT"
  mkdir -p "$NODE_DIR"
  # A package.json of our own keeps npm from walking up to the repository root.
  [[ -f "$NODE_DIR/package.json" ]] || echo '{"name":"aibridge-test-tools","private":true}' >"$NODE_DIR/package.json"
  npm install --prefix "$NODE_DIR" --no-audit --no-fund --save-exact --loglevel=error \
    "${NODE_PACKAGES[@]}" >&2
  # Codex and Claude Code ship their native binaries as optional platform packages; fail
  # here, not in a test, if the one for this machine is missing.
  "$NODE_DIR/node_modules/.bin/codex" --version >/dev/null
  "$NODE_DIR/node_modules/.bin/claude" --version >/dev/null
  echo "$NODE_WANT" >"$NODE_STAMP"
fi

if py_ok; then
  log "python venv up to date"
else
  PYTHON="$(pick_python)"
  log "installing python packages into .venv: $PY_WANT"
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}" >&2
  echo "$PY_WANT" >"$PY_STAMP"
fi
