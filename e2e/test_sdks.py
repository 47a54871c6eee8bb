"""The official Python SDKs, blocking and streaming, against the mock and through the bridge."""

import uuid

import anthropic
import openai
import pytest

from clients import mock_output_tokens

KEY = "sk-e2e-sdk-key-0001"


def anthropic_blocking(target, prompt):
    client = anthropic.Anthropic(base_url=target.anthropic, api_key=KEY, max_retries=0)
    raw = client.messages.with_raw_response.create(
        model="claude-opus-5-5", max_tokens=256, messages=[{"role": "user", "content": prompt}]
    )
    message = raw.parse()
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0
    return "".join(b.text for b in message.content if b.type == "text"), raw.headers


def anthropic_streaming(target, prompt):
    client = anthropic.Anthropic(base_url=target.anthropic, api_key=KEY, max_retries=0)
    with client.messages.stream(
        model="claude-opus-5-5", max_tokens=256, messages=[{"role": "user", "content": prompt}]
    ) as stream:
        message = stream.get_final_message()
        headers = stream.response.headers
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0
    return "".join(b.text for b in message.content if b.type == "text"), headers


def chat_blocking(target, prompt):
    client = openai.OpenAI(base_url=target.openai, api_key=KEY, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-5", messages=[{"role": "user", "content": prompt}]
    )
    completion = raw.parse()
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens > 0
    return completion.choices[0].message.content, raw.headers


def chat_streaming(target, prompt):
    client = openai.OpenAI(base_url=target.openai, api_key=KEY, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-5",
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = [], None, None
    for chunk in raw.parse():
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
        usage = chunk.usage or usage
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens > 0
    return "".join(text), raw.headers


def responses_blocking(target, prompt):
    client = openai.OpenAI(base_url=target.openai, api_key=KEY, max_retries=0)
    raw = client.responses.with_raw_response.create(model="gpt-5", input=prompt)
    response = raw.parse()
    assert response.status == "completed"
    assert response.usage.output_tokens > 0
    return response.output_text, raw.headers


def responses_streaming(target, prompt):
    client = openai.OpenAI(base_url=target.openai, api_key=KEY, max_retries=0)
    with client.responses.stream(model="gpt-5", input=[{"role": "user", "content": prompt}]) as stream:
        response = stream.get_final_response()
    assert response.status == "completed"
    assert response.usage.output_tokens > 0
    return response.output_text, None


# name → (call, wire API as recorded, provider kind, streaming)
CASES = {
    "anthropic-messages-blocking": (anthropic_blocking, "messages", "anthropic", False),
    "anthropic-messages-streaming": (anthropic_streaming, "messages", "anthropic", True),
    "openai-chat-blocking": (chat_blocking, "chat_completions", "openai", False),
    "openai-chat-streaming": (chat_streaming, "chat_completions", "openai", True),
    "openai-responses-blocking": (responses_blocking, "responses", "openai", False),
    "openai-responses-streaming": (responses_streaming, "responses", "openai", True),
}


API_MARK = {"messages": pytest.mark.messages, "chat_completions": pytest.mark.chat, "responses": pytest.mark.responses}
CASE_PARAMS = [pytest.param(name, marks=API_MARK[api]) for name, (_, api, _, _) in CASES.items()]


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_sdk_answer(target, case):
    call = CASES[case][0]
    prompt = f"hello from {case} {uuid.uuid4().hex[:8]}"
    text, headers = call(target, prompt)
    assert text == f"Mock answer: {prompt}"
    if target.kind == "bridge" and headers is not None:
        assert headers.get("x-aibridge-interception-id"), dict(headers)


@pytest.mark.bridge
@pytest.mark.audit
@pytest.mark.parametrize("case", CASE_PARAMS)
def test_sdk_audit(audited, via_bridge, case):
    call, api, provider, streaming = CASES[case]
    marker = uuid.uuid4().hex
    text, headers = call(via_bridge, f"audit me {marker}")
    assert text == f"Mock answer: audit me {marker}"

    prompts = audited.audit.interceptions_for_prompt(marker)
    assert len(prompts) == 1, prompts
    interception_id = prompts[0]["interception_id"]
    assert prompts[0]["prompt"] == f"audit me {marker}"
    if headers is not None:
        assert headers.get("x-aibridge-interception-id") == interception_id

    row = audited.audit.interception(interception_id)
    assert row["api"] == api
    assert row["provider"] == provider
    assert bool(row["streaming"]) is streaming
    assert row["model"] == ("claude-opus-5-5" if provider == "anthropic" else "gpt-5")
    assert row["outcome"] == "completed"
    assert row["initiator_id"] == "local"
    assert row["client"] == f"{provider}-sdk"
    assert row["client_session_id"] is None
    assert row["user_agent"].startswith(("Anthropic/Python", "OpenAI/Python")), row["user_agent"]
    assert KEY not in str(row)

    # Exactly what the mock sent: input 10 + one message; output 1 + 20 text deltas (the
    # answer is longer than 20 characters).
    usages = audited.audit.token_usages(interception_id)
    assert [(u["input_tokens"], u["output_tokens"]) for u in usages] == [(11, mock_output_tokens(text))]
    assert mock_output_tokens(text) == 21


# ------------------------------------------------ the anthropic SDK beyond plain text

TOOLS = [
    {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
    {"name": "get_time", "description": "Time", "input_schema": {"type": "object", "properties": {}}},
]


def anthropic_message(target, prompt, stream):
    """The parsed final message, blocking or streamed (the SDK accumulates the events)."""
    client = anthropic.Anthropic(base_url=target.anthropic, api_key=KEY, max_retries=0)
    args = dict(model="claude-opus-5-5", max_tokens=256, tools=TOOLS, messages=[{"role": "user", "content": prompt}])
    if not stream:
        return client.messages.create(**args)
    with client.messages.stream(**args) as s:
        return s.get_final_message()


@pytest.mark.messages
@pytest.mark.parametrize("stream", [False, True], ids=["blocking", "streaming"])
def test_anthropic_sdk_tool_use(target, stream):
    message = anthropic_message(target, '[[tool:get_weather {"city":"Paris"}]]', stream)
    assert message.stop_reason == "tool_use"
    calls = [b for b in message.content if b.type == "tool_use"]
    assert [(c.name, c.input) for c in calls] == [("get_weather", {"city": "Paris"})]
    assert calls[0].id.startswith("toolu_")


@pytest.mark.messages
@pytest.mark.parametrize("stream", [False, True], ids=["blocking", "streaming"])
def test_anthropic_sdk_parallel_tool_use(target, stream):
    message = anthropic_message(target, '[[tool:get_weather {"city":"Oslo"}]] [[tool:get_time]]', stream)
    assert message.stop_reason == "tool_use"
    calls = [(b.name, b.input) for b in message.content if b.type == "tool_use"]
    assert calls == [("get_weather", {"city": "Oslo"}), ("get_time", {})]
    ids = [b.id for b in message.content if b.type == "tool_use"]
    assert len(set(ids)) == 2


@pytest.mark.messages
@pytest.mark.parametrize("stream", [False, True], ids=["blocking", "streaming"])
def test_anthropic_sdk_thinking(target, stream):
    message = anthropic_message(target, "[[thinking]] plan it", stream)
    thinking = [b for b in message.content if b.type == "thinking"]
    assert [t.thinking for t in thinking] == ["Mock thinking about: [[thinking]] plan it"]
    assert thinking[0].signature
    assert message.content[-1].type == "text"


@pytest.mark.messages
@pytest.mark.parametrize("stream", [False, True], ids=["blocking", "streaming"])
def test_anthropic_sdk_bad_request(target, stream):
    with pytest.raises(anthropic.BadRequestError) as caught:
        anthropic_message(target, "[[status:400]]", stream)
    assert caught.value.status_code == 400
    assert caught.value.body["error"]["type"] == "invalid_request_error"


@pytest.mark.messages
@pytest.mark.parametrize("stream", [False, True], ids=["blocking", "streaming"])
def test_anthropic_sdk_overloaded(target, stream):
    # Blocking: a 529 before any byte; streaming: `event: error` after the stream started.
    with pytest.raises(anthropic.APIStatusError) as caught:
        anthropic_message(target, "[[error:overloaded]]", stream)
    assert "overloaded" in str(caught.value).lower()
    if not stream:
        assert caught.value.status_code == 529
