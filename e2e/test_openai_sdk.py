"""The official openai SDK through the bridge beyond plain text: streams without usage, tool
calls (parallel and custom), reasoning, upstream errors and the bridge's own errors. Every
response must parse; the audit rows must say what the model did."""

import json
import uuid

import openai
import pytest

from audit import as_json

KEY = "sk-e2e-openai-key-0001"
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}
RESPONSES_TOOLS = [
    {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
    {"type": "custom", "name": "apply_patch", "description": "edit files"},
]
TWO_CALLS = '[[tool:get_weather {"city":"Paris"}]] [[tool:get_weather {"city":"Lyon"}]]'


def client(target):
    return openai.OpenAI(base_url=target.openai, api_key=KEY, max_retries=0)


def tools_of(bridge, marker):
    interception_id = bridge.audit.interceptions_for_prompt(marker)[0]["interception_id"]
    rows = bridge.audit.tool_usages(interception_id)
    calls = [(r["tool"], as_json(r["input"])) for r in rows]
    # Sort by name, then by the arguments' canonical JSON (dicts do not order themselves).
    return interception_id, sorted(calls, key=lambda c: (c[0], json.dumps(c[1], sort_keys=True)))


@pytest.mark.bridge
@pytest.mark.audit
@pytest.mark.chat
def test_chat_stream_without_include_usage(audited, via_bridge):
    marker = uuid.uuid4().hex
    stream = client(via_bridge).chat.completions.create(
        model="gpt-5", messages=[{"role": "user", "content": f"hi {marker}"}], stream=True
    )
    chunks = list(stream)
    # The usage-only chunk the bridge asked for is not shown to a client that did not ask.
    assert all(chunk.choices for chunk in chunks), chunks[-1]
    assert all(chunk.usage is None for chunk in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == f"Mock answer: hi {marker}"
    interception_id = audited.audit.interceptions_for_prompt(marker)[0]["interception_id"]
    assert sum(u["output_tokens"] for u in audited.audit.token_usages(interception_id)) > 0


@pytest.mark.bridge
@pytest.mark.audit
@pytest.mark.chat
@pytest.mark.parametrize("stream", [False, True])
def test_chat_parallel_tool_calls(audited, via_bridge, stream):
    marker = uuid.uuid4().hex
    args = dict(model="gpt-5", messages=[{"role": "user", "content": f"{marker} {TWO_CALLS}"}], tools=[WEATHER])
    if stream:
        calls = {}
        for chunk in client(via_bridge).chat.completions.create(**args, stream=True):
            for choice in chunk.choices:
                for call in choice.delta.tool_calls or []:
                    calls.setdefault(call.index, "")
                    calls[call.index] += call.function.arguments or ""
        arguments = [calls[i] for i in sorted(calls)]
    else:
        completion = client(via_bridge).chat.completions.create(**args)
        assert completion.choices[0].finish_reason == "tool_calls"
        arguments = [c.function.arguments for c in completion.choices[0].message.tool_calls]
    assert [as_json(a) for a in arguments] == [{"city": "Paris"}, {"city": "Lyon"}]
    _, tools = tools_of(audited, marker)
    assert tools == [("get_weather", {"city": "Lyon"}), ("get_weather", {"city": "Paris"})]


@pytest.mark.bridge
@pytest.mark.audit
@pytest.mark.responses
@pytest.mark.parametrize("stream", [False, True])
def test_responses_tool_calls_and_reasoning(audited, via_bridge, stream):
    marker = uuid.uuid4().hex
    prompt = f'{marker} [[thinking]] {TWO_CALLS} [[tool:apply_patch "*** Begin Patch"]]'
    args = dict(model="gpt-5", input=prompt, tools=RESPONSES_TOOLS)
    if stream:
        with client(via_bridge).responses.stream(**args) as events:
            response = events.get_final_response()
    else:
        response = client(via_bridge).responses.create(**args)
    assert response.status == "completed"
    kinds = [item.type for item in response.output]
    assert kinds.count("function_call") == 2 and "custom_tool_call" in kinds, kinds
    interception_id, tools = tools_of(audited, marker)
    assert tools == [
        ("apply_patch", "*** Begin Patch"),
        ("get_weather", {"city": "Lyon"}),
        ("get_weather", {"city": "Paris"}),
    ]
    thoughts = audited.audit.wait_for(
        "SELECT * FROM aibridge_model_thoughts WHERE interception_id = ?", (interception_id,), what="thoughts"
    )
    assert thoughts[0]["content"]


@pytest.mark.bridge
@pytest.mark.chat
@pytest.mark.responses
def test_upstream_errors_reach_the_sdk(via_bridge):
    c = client(via_bridge)
    with pytest.raises(openai.RateLimitError):
        c.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "[[status:429]]"}])
    with pytest.raises(openai.RateLimitError):
        c.responses.create(model="gpt-5", input="[[status:429]]", stream=True)
    with pytest.raises(openai.APIError):
        list(c.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "[[error:overloaded]]"}], stream=True))
    # The Responses stream helper hands error events to the caller as typed events.
    for directive, kind in [("[[error:overloaded]]", "error"), ("[[error:failed]]", "response.failed")]:
        with c.responses.stream(model="gpt-5", input=directive) as events:
            kinds = [event.type for event in events]
        assert kinds[-1] == kind, kinds


@pytest.mark.bridge
@pytest.mark.responses
def test_background_is_refused_in_openai_format(via_bridge):
    with pytest.raises(openai.BadRequestError) as err:
        client(via_bridge).responses.create(model="gpt-5", input="hi", background=True)
    assert err.value.status_code == 400
    assert err.value.body["message"].startswith("background:")
    assert err.value.type == "invalid_request_error"
