"""Claude Code and Codex through a bridge with virtual keys and a centralized provider key.

The clients hold only a virtual key (`[[auth.keys]]`, actor `e2e-alice`); the bridge sends its
own provider key upstream. The mock behind this bridge is started with `--require-key`, so it
answers 401 to any other key: a client answer proves the provider key reached the upstream and
the virtual key did not (the bridge sends one key, and the mock accepted it).
"""

import json
import os
import uuid

import pytest
import requests

from audit import AuditDb, as_json
from clients import claude, codex, describe, mask, mock_output_tokens
from procs import Service, binary, wait_ready

pytestmark = [pytest.mark.bridge, pytest.mark.audit]

ACTOR = "e2e-alice"
VIRTUAL_KEY = "vk-e2e-alice-virtual-0042"
PROVIDER_KEY = "sk-e2e-provider-central-9999"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """A mock that accepts only PROVIDER_KEY, and a bridge that knows VIRTUAL_KEY as e2e-alice
    and sends PROVIDER_KEY to both providers."""
    work = tmp_path_factory.mktemp("bridge-keyed")
    mock = Service(
        "mock-upstream-keyed",
        [binary("aibridge-mock-upstream"), "--listen", "127.0.0.1:0", "--require-key", PROVIDER_KEY],
        work,
    )
    db_path = work / "audit.db"
    config = work / "aibridge.toml"
    config.write_text(
        f"""
listen = "127.0.0.1:0"
database_url = "sqlite://{db_path}?mode=rwc"

[recording]
spool_dir = "{work}"

[[auth.keys]]
actor_id = "{ACTOR}"
key_env = "E2E_ALICE_KEY"
metadata = {{ team = "e2e" }}

[[providers]]
name = "anthropic"
kind = "anthropic"
base_url = "{mock.url}"
api_key_env = "E2E_PROVIDER_KEY"

[[providers]]
name = "openai"
kind = "openai"
base_url = "{mock.url}/v1"
api_key_env = "E2E_PROVIDER_KEY"
"""
    )
    env = {**os.environ, "E2E_ALICE_KEY": VIRTUAL_KEY, "E2E_PROVIDER_KEY": PROVIDER_KEY}
    bridge = Service("aibridge-keyed", [binary("aibridge"), "serve", "--config", config], work, env=env)
    try:
        wait_ready(f"{bridge.url}/readyz")
        yield bridge, AuditDb(db_path), mock
    finally:
        bridge.stop()
        mock.stop()


def target(bridge):
    from conftest import Target

    return Target("bridge", anthropic=f"{bridge.url}/anthropic", openai=f"{bridge.url}/openai/v1")


def assert_alice(row):
    assert row["initiator_id"] == ACTOR
    assert (row["credential_kind"], row["credential_hint"]) == ("centralized", mask(PROVIDER_KEY))
    assert as_json(row["metadata"])["actor_metadata"] == {"team": "e2e"}
    text = json.dumps(row, default=str)
    assert VIRTUAL_KEY not in text and PROVIDER_KEY not in text


@pytest.mark.messages
@pytest.mark.parametrize("auth", ["api_key", "auth_token"])
def test_claude_code_with_a_virtual_key(keyed, tmp_path, auth):
    bridge, audit, _ = keyed
    prompt = f"say hi {uuid.uuid4().hex[:8]}"
    proc, result = claude(target(bridge), tmp_path, prompt, auth=auth, key=VIRTUAL_KEY)
    assert proc.returncode == 0, describe(proc)
    assert result is not None and result["is_error"] is False, describe(proc)
    answer = f"Mock answer: {prompt}"
    assert result["result"] == answer

    rows = audit.interceptions_for_session(result["session_id"], count=1)
    assert len(rows) == 1, rows
    row = rows[0]
    assert_alice(row)
    assert row["client"] == "claude-code"
    assert row["outcome"] == "completed"
    tokens = [(u["input_tokens"], u["output_tokens"]) for u in audit.token_usages(row["id"])]
    assert tokens == [(12, mock_output_tokens(answer))], tokens
    assert tokens == [(12, 21)]


@pytest.mark.messages
def test_the_mock_behind_refuses_the_virtual_key_and_the_bridge_refuses_a_wrong_one(keyed):
    """What makes the client tests above able to fail: had the bridge forwarded the virtual
    key, the mock would have refused it."""
    bridge, audit, mock = keyed
    body = {"model": "claude-x", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    for key, status in [(VIRTUAL_KEY, 401), (PROVIDER_KEY, 200)]:
        resp = requests.post(f"{mock.url}/v1/messages", json=body, headers={"x-api-key": key}, timeout=30)
        assert resp.status_code == status, resp.text
    resp = requests.post(
        f"{bridge.url}/anthropic/v1/messages", json=body, headers={"x-api-key": "vk-e2e-nobody-0000000"}, timeout=30
    )
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"]["type"] == "authentication_error"


@pytest.mark.responses
def test_codex_with_a_virtual_key(keyed, tmp_path):
    bridge, audit, _ = keyed
    prompt = f"say hi {uuid.uuid4().hex[:8]}"
    proc, session_id = codex(target(bridge), tmp_path, prompt, key=VIRTUAL_KEY)
    assert proc.returncode == 0, describe(proc)
    answer = f"Mock answer: {prompt}"
    assert proc.stdout.strip() == answer, describe(proc)

    rows = audit.interceptions_for_session(session_id, count=1)
    assert len(rows) == 1, rows
    row = rows[0]
    assert_alice(row)
    assert row["client"] == "codex"
    assert row["outcome"] == "completed"
    tokens = [(u["input_tokens"], u["output_tokens"]) for u in audit.token_usages(row["id"])]
    assert tokens == [(14, mock_output_tokens(answer))], tokens
