#!/usr/bin/env bash
# Runs the real clients against scripts/capture_server.py and keeps what they sent.
# Usage: scripts/capture_clients.sh OUT_DIR   (one sub-directory per scenario)
# Needs scripts/setup-test-deps.sh first. Touches nothing outside OUT_DIR.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(mkdir -p "$1" && cd "$1" && pwd)"
BIN="$ROOT/.tools/node/node_modules/.bin"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

# start_server DIR: starts a capture server logging into DIR, sets URL.
start_server() {
  mkdir -p "$1"
  python3 "$ROOT/scripts/capture_server.py" "$1/requests" >"$1/server.out" 2>"$1/server.err" &
  PIDS+=($!)
  mkdir -p "$1/requests"
  for _ in $(seq 50); do
    URL="$(sed -n 's/^listening on //p' "$1/server.out")"
    [[ -n "$URL" ]] && return 0
    sleep 0.1
  done
  echo "capture server did not start" >&2
  return 1
}

# claude_run NAME PROMPT ENV...: one Claude Code print-mode run in an isolated HOME;
# extra CLI arguments come from the CLAUDE_ARGS array.
CLAUDE_ARGS=()
claude_run() {
  local name="$1" prompt="$2"
  shift 2
  local dir="$OUT/claude-code/$name"
  start_server "$dir"
  mkdir -p "$dir/home" "$dir/work"
  (cd "$dir/work" && env -i PATH="$PATH" HOME="$dir/home" ANTHROPIC_BASE_URL="$URL" "$@" \
    timeout 120 "$BIN/claude" -p "$prompt" --output-format json ${CLAUDE_ARGS[@]+"${CLAUDE_ARGS[@]}"} \
    >"$dir/stdout.json" 2>"$dir/stderr.txt"; echo $? >"$dir/rc")
  echo "claude-code/$name rc=$(cat "$dir/rc") requests=$(ls "$dir/requests" | wc -l)"
}

# codex_run NAME PROMPT EXTRA_ARGS...: one `codex exec` run with an isolated CODEX_HOME.
codex_run() {
  local name="$1" prompt="$2"
  shift 2
  local dir="$OUT/codex/$name"
  start_server "$dir"
  mkdir -p "$dir/home" "$dir/codex-home" "$dir/work"
  cat >"$dir/codex-home/config.toml" <<TOML
model = "gpt-5.5"
model_provider = "mock"

[model_providers.mock]
name = "Mock"
base_url = "$URL/v1"
wire_api = "responses"
env_key = "OPENAI_API_KEY"
TOML
  (cd "$dir/work" && env -i PATH="$PATH" HOME="$dir/home" CODEX_HOME="$dir/codex-home" \
    OPENAI_API_KEY=sk-test-capture-000 \
    timeout 120 "$BIN/codex" exec --skip-git-repo-check "$@" "$prompt" \
    >"$dir/stdout.txt" 2>"$dir/stderr.txt" </dev/null; echo $? >"$dir/rc")
  echo "codex/$name rc=$(cat "$dir/rc") requests=$(ls "$dir/requests" | wc -l)"
}

QUIET=(DISABLE_TELEMETRY=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_AUTOUPDATER=1)
TOOL_PROMPT='Run this: [[tool:Bash {"command":"echo hi-from-bash","description":"Say hi"}]]'

claude_run plain-api-key "say hi" ANTHROPIC_API_KEY=sk-ant-test-capture-000 "${QUIET[@]}"
claude_run plain-auth-token "say hi" ANTHROPIC_AUTH_TOKEN=sk-ant-test-capture-000 "${QUIET[@]}"
claude_run default-env "say hi" ANTHROPIC_API_KEY=sk-ant-test-capture-000
CLAUDE_ARGS=(--allowedTools Bash)
claude_run bash-tool "$TOOL_PROMPT" ANTHROPIC_API_KEY=sk-ant-test-capture-000 "${QUIET[@]}"
CLAUDE_ARGS=()

codex_run plain "say hi"
codex_run exec-command 'Run this: [[tool:exec_command {"cmd":"echo hi-from-codex"}]]' \
  --dangerously-bypass-approvals-and-sandbox

# Keep sanitized copies as fixtures when asked: local paths and ports become placeholders;
# credentials were already masked by the capture server.
if [[ -n "${2:-}" ]]; then
  python3 - "$OUT" "$2" <<'PY'
import json, pathlib, re, sys
out, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for client in ("claude-code", "codex"):
    for scenario in sorted((out / client).iterdir()):
        files = sorted((scenario / "requests").glob("*.json"))
        for n, f in enumerate(files, 1):
            text = f.read_text()
            text = text.replace(str(scenario), "/workspace")
            text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
            name = scenario.name if len(files) == 1 else f"{scenario.name}-{n}"
            target = dest / client / f"{name}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n")
PY
fi
