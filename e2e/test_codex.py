"""Codex CLI (`codex exec`) against the mock and through the bridge."""

import json
import uuid

import pytest

from audit import as_json
from clients import CLIENT_KEY, codex, describe, mask

pytestmark = pytest.mark.responses

# Codex's shell tool is `exec_command` (see docs/clients.md); printf's output does not occur
# in the prompt, so only a real tool run can put it in the final answer.
SHELL_DIRECTIVE = '[[tool:exec_command {"cmd":"printf hi-from-%s codex"}]]'


def test_codex_plain_answer(target, tmp_path):
    prompt = f"say hi {uuid.uuid4().hex[:8]}"
    proc, session_id = codex(target, tmp_path, prompt)
    assert proc.returncode == 0, describe(proc)
    assert session_id, describe(proc)
    assert proc.stdout.strip() == f"Mock answer: {prompt}", describe(proc)


def test_codex_shell_round_trip(target, tmp_path):
    proc, _ = codex(target, tmp_path, f"Run this: {SHELL_DIRECTIVE}")
    assert proc.returncode == 0, describe(proc)
    answer = proc.stdout.strip()
    assert answer.startswith("Tool result:"), describe(proc)
    assert "hi-from-codex" in answer


@pytest.mark.bridge
@pytest.mark.audit
def test_codex_audit(audited, via_bridge, tmp_path):
    marker = uuid.uuid4().hex
    proc, session_id = codex(via_bridge, tmp_path, f"Run this {marker}: {SHELL_DIRECTIVE}")
    assert proc.returncode == 0, describe(proc)
    assert "hi-from-codex" in proc.stdout, describe(proc)

    rows = audited.audit.interceptions_for_session(session_id, count=2)
    assert len(rows) == 2, rows
    for row in rows:
        assert row["client"] == "codex"
        assert row["client_session_id"] == session_id
        assert row["initiator_id"] == "local"
        assert (row["credential_kind"], row["credential_hint"]) == ("byok", mask(CLIENT_KEY))
        assert row["api"] == "responses"
        assert row["provider"] == "openai"
        assert row["model"] == "gpt-5.5"
        assert bool(row["streaming"]) is True
        assert row["outcome"] == "completed"
        assert row["user_agent"].startswith("codex_exec/")
        assert CLIENT_KEY not in json.dumps(row, default=str)

    # Exactly what the mock sent: the pinned Codex's first request has four input items
    # (input 10 + 4); the second adds the function call and its output. The call costs 1 + 2 output tokens; the answer quoting the
    # shell output is longer than 20 characters, so 1 + 20 text deltas.
    tokens = [
        [(u["input_tokens"], u["output_tokens"]) for u in audited.audit.token_usages(row["id"])] for row in rows
    ]
    assert tokens == [[(14, 3)], [(16, 21)]], tokens

    prompts = audited.audit.interceptions_for_prompt(marker)
    assert {p["interception_id"] for p in prompts} == {rows[0]["id"]}
    assert prompts[0]["prompt"] == f"Run this {marker}: {SHELL_DIRECTIVE}"

    tools = audited.audit.tool_usages(rows[0]["id"])
    assert [(t["tool"], bool(t["injected"])) for t in tools] == [("exec_command", False)]
    assert as_json(tools[0]["input"]) == {"cmd": "printf hi-from-%s codex"}
