"""Claude Code in print mode, against the mock and through the bridge."""

import json
import uuid

import pytest

from audit import as_json
from clients import CLIENT_KEY, claude, describe, mask, mock_output_tokens

pytestmark = pytest.mark.messages

# printf's output ("hi-from-bash") does not occur in the prompt, so only a real tool run
# can put it in the final answer.
BASH_DIRECTIVE = '[[tool:Bash {"command":"printf hi-from-%s bash"}]]'


@pytest.mark.parametrize("auth", ["api_key", "auth_token"])
def test_claude_code_plain_answer(target, tmp_path, auth):
    prompt = f"say hi {uuid.uuid4().hex[:8]}"
    proc, result = claude(target, tmp_path, prompt, auth=auth)
    assert proc.returncode == 0, describe(proc)
    assert result is not None and result["is_error"] is False, describe(proc)
    assert result["result"] == f"Mock answer: {prompt}"
    assert result["num_turns"] == 1


def test_claude_code_bash_round_trip(target, tmp_path):
    proc, result = claude(target, tmp_path, f"Run this: {BASH_DIRECTIVE}", allowed_tools=["Bash"])
    assert proc.returncode == 0, describe(proc)
    assert result is not None and result["is_error"] is False, describe(proc)
    assert result["num_turns"] == 2, result
    assert result["result"].startswith("Tool result:"), result["result"]
    assert "hi-from-bash" in result["result"]


@pytest.mark.bridge
@pytest.mark.audit
@pytest.mark.parametrize("auth", ["api_key", "auth_token"])
def test_claude_code_audit(audited, via_bridge, tmp_path, auth):
    marker = uuid.uuid4().hex
    proc, result = claude(via_bridge, tmp_path, f"Run this {marker}: {BASH_DIRECTIVE}", auth=auth, allowed_tools=["Bash"])
    assert proc.returncode == 0, describe(proc)
    assert "hi-from-bash" in result["result"], result
    session_id = result["session_id"]

    # One interception per model turn: the tool call, then the answer to the tool result.
    rows = audited.audit.interceptions_for_session(session_id, count=2)
    assert len(rows) == 2, rows
    for row in rows:
        assert row["client"] == "claude-code"
        assert row["client_session_id"] == session_id
        assert row["initiator_id"] == "local"
        # No centralized key: Claude Code's own key went upstream, recorded as a hint only.
        assert (row["credential_kind"], row["credential_hint"]) == ("byok", mask(CLIENT_KEY))
        assert row["api"] == "messages"
        assert row["provider"] == "anthropic"
        assert bool(row["streaming"]) is True
        assert row["outcome"] == "completed"
        assert row["user_agent"].startswith("claude-cli/")
        assert CLIENT_KEY not in json.dumps(row, default=str)

    # Exactly what the mock sent: the pinned Claude Code's first request has two messages
    # (input 10 + 2);
    # the second turn adds the tool call and its result. The tool call costs 1 + 2 output
    # tokens, the answer quoting the result 1 + 20 text deltas.
    tokens = [
        [(u["input_tokens"], u["output_tokens"]) for u in audited.audit.token_usages(row["id"])] for row in rows
    ]
    answer = result["result"]
    assert tokens == [[(12, mock_output_tokens(calls=1))], [(14, mock_output_tokens(answer))]], tokens
    assert tokens == [[(12, 3)], [(14, 21)]]
    # The same totals Claude Code itself counted from the responses.
    assert (result["usage"]["input_tokens"], result["usage"]["output_tokens"]) == (26, 24), result["usage"]

    prompts = audited.audit.interceptions_for_prompt(marker)
    assert {p["interception_id"] for p in prompts} == {rows[0]["id"]}
    assert prompts[0]["prompt"] == f"Run this {marker}: {BASH_DIRECTIVE}"

    tools = audited.audit.tool_usages(rows[0]["id"])
    assert [(t["tool"], bool(t["injected"])) for t in tools] == [("Bash", False)]
    assert as_json(tools[0]["input"]) == {"command": "printf hi-from-%s bash"}
