"""The official Python SDKs, blocking and streaming, against the mock and through the bridge."""

import uuid

import anthropic
import openai
import pytest

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
    assert row["model"] in ("claude-opus-5-5", "gpt-5")
    assert row["outcome"] == "completed"
    assert row["initiator_id"] == "local"
    assert "sdk" in row["client"] or "python" in row["client"].lower(), row["client"]
    assert row["user_agent"].startswith(("Anthropic/Python", "OpenAI/Python")), row["user_agent"]
    assert KEY not in str(row)

    usages = audited.audit.token_usages(interception_id)
    assert sum(u["output_tokens"] for u in usages) > 0
    assert sum(u["input_tokens"] for u in usages) > 0
