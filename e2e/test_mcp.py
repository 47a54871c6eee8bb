"""Injected MCP tools (bmcp_<server>_<tool>): the bridge runs the tool loop, the client sees text."""

import json
import uuid

import anthropic
import openai
import pytest

from audit import as_json
from clients import claude, codex, describe
from conftest import Target

pytestmark = [pytest.mark.bridge, pytest.mark.mcp]

KEY = "sk-e2e-mcp-key-0001"


def echo_directive(marker, server="everything"):
    return f'[[tool:bmcp_{server}_echo {{"message":"echo-{marker}"}}]]'


@pytest.fixture
def mcp_target(bridge_mcp):
    return Target("bridge", anthropic=f"{bridge_mcp.url}/anthropic", openai=f"{bridge_mcp.url}/openai/v1")


def assert_injected_echo(bridge, marker, server_url=None):
    """The loop ran inside the bridge: one injected tool usage with the model's input."""
    prompts = bridge.audit.interceptions_for_prompt(marker)
    interception_id = prompts[0]["interception_id"]
    row = bridge.audit.interception(interception_id)
    assert row["outcome"] == "completed"
    tools = bridge.audit.tool_usages(interception_id)
    injected = [t for t in tools if t["injected"]]
    assert len(injected) == 1, tools
    assert "echo" in injected[0]["tool"]
    assert as_json(injected[0]["input"]) == {"message": f"echo-{marker}"}
    assert not injected[0]["invocation_error"]
    if server_url is not None:
        assert injected[0]["server_url"] == server_url, injected


def assert_client_row(bridge, marker, client, session_id, tokens):
    """The interception of a real client's run: who, which session, and per upstream round
    exactly the tokens the mock sent."""
    interception_id = bridge.audit.interceptions_for_prompt(marker)[0]["interception_id"]
    row = bridge.audit.interception(interception_id)
    assert (row["client"], row["client_session_id"], row["initiator_id"]) == (client, session_id, "local")
    usages = bridge.audit.token_usages(interception_id)
    assert [(u["input_tokens"], u["output_tokens"]) for u in usages] == tokens, usages


@pytest.mark.messages
@pytest.mark.parametrize("streaming", [False, True], ids=["blocking", "streaming"])
def test_mcp_anthropic_sdk(bridge_mcp, mcp_target, streaming):
    marker = uuid.uuid4().hex[:12]
    client = anthropic.Anthropic(base_url=mcp_target.anthropic, api_key=KEY, max_retries=0)
    request = dict(model="claude-opus-5-5", max_tokens=256, messages=[{"role": "user", "content": echo_directive(marker)}])
    if streaming:
        with client.messages.stream(**request) as stream:
            message = stream.get_final_message()
    else:
        message = client.messages.create(**request)
    # The client sees one message with no trace of the injected tool call.
    assert [b.type for b in message.content] == ["text"], message
    assert message.stop_reason == "end_turn"
    assert message.content[0].text == f"Tool result: Echo: echo-{marker}"
    assert_injected_echo(bridge_mcp, marker)


@pytest.mark.chat
@pytest.mark.parametrize("streaming", [False, True], ids=["blocking", "streaming"])
def test_mcp_openai_chat(bridge_mcp, mcp_target, streaming):
    marker = uuid.uuid4().hex[:12]
    client = openai.OpenAI(base_url=mcp_target.openai, api_key=KEY, max_retries=0)
    messages = [{"role": "user", "content": echo_directive(marker)}]
    if streaming:
        text, finish = [], None
        for chunk in client.chat.completions.create(model="gpt-5", messages=messages, stream=True):
            for choice in chunk.choices:
                assert not choice.delta.tool_calls, chunk
                text.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
        text = "".join(text)
    else:
        completion = client.chat.completions.create(model="gpt-5", messages=messages)
        assert not completion.choices[0].message.tool_calls
        text, finish = completion.choices[0].message.content, completion.choices[0].finish_reason
    assert finish == "stop"
    assert text == f"Tool result: Echo: echo-{marker}"
    assert_injected_echo(bridge_mcp, marker)


@pytest.mark.responses
@pytest.mark.parametrize("streaming", [False, True], ids=["blocking", "streaming"])
def test_mcp_openai_responses(bridge_mcp, mcp_target, streaming):
    marker = uuid.uuid4().hex[:12]
    client = openai.OpenAI(base_url=mcp_target.openai, api_key=KEY, max_retries=0)
    if streaming:
        with client.responses.stream(model="gpt-5", input=echo_directive(marker)) as stream:
            response = stream.get_final_response()
    else:
        response = client.responses.create(model="gpt-5", input=echo_directive(marker))
    assert response.status == "completed"
    assert all(item.type not in ("function_call", "custom_tool_call") for item in response.output), response
    assert response.output_text == f"Tool result: Echo: echo-{marker}"
    assert_injected_echo(bridge_mcp, marker)


@pytest.mark.messages
def test_mcp_claude_code(bridge_mcp, mcp_target, tmp_path):
    marker = uuid.uuid4().hex[:12]
    proc, result = claude(mcp_target, tmp_path, f"Please {echo_directive(marker)}")
    assert proc.returncode == 0, describe(proc)
    assert result["result"] == f"Tool result: Echo: echo-{marker}", result
    # The injected loop is invisible to Claude Code: one model turn from its point of view.
    assert result["num_turns"] == 1
    assert_injected_echo(bridge_mcp, marker)
    # One interception, two upstream rounds: the tool call (1 + 2 output tokens), then the
    # answer quoting the result, two messages longer (input 12 → 14; 1 + 20 text deltas).
    assert_client_row(bridge_mcp, marker, "claude-code", result["session_id"], [(12, 3), (14, 21)])


@pytest.mark.responses
def test_mcp_codex(bridge_mcp, mcp_target, tmp_path):
    marker = uuid.uuid4().hex[:12]
    proc, session_id = codex(mcp_target, tmp_path, f"Please {echo_directive(marker)}")
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.strip() == f"Tool result: Echo: echo-{marker}", describe(proc)
    assert_injected_echo(bridge_mcp, marker)
    assert_client_row(bridge_mcp, marker, "codex", session_id, [(14, 3), (16, 21)])


@pytest.mark.messages
def test_mcp_time_server(bridge_mcp, mcp_target):
    """A second real server (Python, stdio): its tool is offered and called by name."""
    client = anthropic.Anthropic(base_url=mcp_target.anthropic, api_key=KEY, max_retries=0)
    message = client.messages.create(
        model="claude-opus-5-5",
        max_tokens=256,
        messages=[{"role": "user", "content": '[[tool:bmcp_time_get_current_time {"timezone":"UTC"}]]'}],
    )
    text = message.content[0].text
    assert text.startswith("Tool result: "), text
    assert json.loads(text.removeprefix("Tool result: "))["timezone"] == "UTC"


@pytest.mark.messages
@pytest.mark.parametrize("streaming", [False, True], ids=["blocking", "streaming"])
def test_mcp_everything_over_streamable_http(bridge_mcp, mcp_target, streaming):
    """server-everything over streamable HTTP: the bridge runs its echo and the answer quotes it."""
    marker = uuid.uuid4().hex[:12]
    client = anthropic.Anthropic(base_url=mcp_target.anthropic, api_key=KEY, max_retries=0)
    prompt = echo_directive(marker, server="everyhttp")
    request = dict(model="claude-opus-5-5", max_tokens=256, messages=[{"role": "user", "content": prompt}])
    if streaming:
        with client.messages.stream(**request) as stream:
            message = stream.get_final_message()
    else:
        message = client.messages.create(**request)
    assert [b.type for b in message.content] == ["text"], message
    assert message.content[0].text == f"Tool result: Echo: echo-{marker}"
    assert_injected_echo(bridge_mcp, marker, server_url=bridge_mcp.everyhttp_url)
