"""Run Claude Code and Codex CLI (as installed by scripts/setup-test-deps.sh) at a target."""

import json
import re

from procs import base_env, run, tool

CLAUDE = ".tools/node/node_modules/.bin/claude"
CODEX = ".tools/node/node_modules/.bin/codex"
CLIENT_KEY = "sk-ant-e2e-client-key-0001"


def claude(target, tmp_path, prompt, auth="api_key", allowed_tools=(), key=CLIENT_KEY):
    """`claude -p PROMPT --output-format json` with `key` as ANTHROPIC_API_KEY (`auth="api_key"`,
    sent as `x-api-key`) or ANTHROPIC_AUTH_TOKEN (`auth="auth_token"`, sent as a Bearer token);
    returns (process, parsed result or None)."""
    home = tmp_path / "claude-home"
    work = tmp_path / "claude-work"
    home.mkdir(exist_ok=True)
    work.mkdir(exist_ok=True)
    env = base_env(home)
    env.update(
        ANTHROPIC_BASE_URL=target.anthropic,
        DISABLE_TELEMETRY="1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_AUTOUPDATER="1",
    )
    env["ANTHROPIC_API_KEY" if auth == "api_key" else "ANTHROPIC_AUTH_TOKEN"] = key
    argv = [tool(CLAUDE), "-p", prompt, "--output-format", "json"]
    if allowed_tools:
        argv += ["--allowedTools", ",".join(allowed_tools)]
    proc = run(argv, env=env, cwd=work)
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError:
        result = None
    return proc, result


def codex(target, tmp_path, prompt, key=CLIENT_KEY):
    """`codex exec PROMPT` with a provider at the target and `key` as OPENAI_API_KEY; returns
    (process, session id or None)."""
    home = tmp_path / "codex-user-home"
    codex_home = tmp_path / "codex-home"
    work = tmp_path / "codex-work"
    for d in (home, codex_home, work):
        d.mkdir(exist_ok=True)
    (codex_home / "config.toml").write_text(
        f"""model = "gpt-5.5"
model_provider = "aibridge"

[model_providers.aibridge]
name = "aibridge"
base_url = "{target.openai}"
wire_api = "responses"
env_key = "OPENAI_API_KEY"
"""
    )
    env = base_env(home)
    env.update(CODEX_HOME=str(codex_home), OPENAI_API_KEY=key)
    argv = [
        tool(CODEX),
        "exec",
        "--skip-git-repo-check",
        "--dangerously-bypass-approvals-and-sandbox",
        prompt,
    ]
    proc = run(argv, env=env, cwd=work)
    found = re.search(r"session id: ([0-9a-f-]{36})", proc.stderr)
    return proc, found.group(1) if found else None


def describe(proc):
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"


# The mock binary's deterministic usage (mock-upstream/src/lib.rs, "Deterministic usage"):
# input = 10 + messages (Anthropic `messages`, Responses `input` items); output = 1 + text
# deltas + 2 per tool call, the binary streaming text in 20 deltas (fewer for shorter text).
MOCK_TEXT_DELTAS = 20


def mock_output_tokens(text="", calls=0):
    return 1 + min(MOCK_TEXT_DELTAS, len(text)) + 2 * calls


def mask(key):
    """The bridge's masked hint of a key (src/secret.rs): first and last four characters."""
    return f"{key[:4]}…{key[-4:]}" if len(key) >= 16 else "…"
