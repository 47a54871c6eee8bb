"""The bridge's tool loop through the official SDKs, on all three wire APIs, blocking and streaming.

The bridge injects the tools of the project's test MCP server (`aibridge-test-mcp`, streamable
HTTP; `pid` denied, calls time out after 500 ms, at most 2 tool rounds). The mock's directives
make the model call them. For every scenario the stream, as the SDK accumulates it, must equal
the blocking answer, and the audit rows (tool usages, token usage per upstream call) are exact.
"""

import dataclasses
import json
import uuid

import anthropic
import openai
import pytest

from audit import as_json

pytestmark = [pytest.mark.bridge, pytest.mark.mcp, pytest.mark.audit]

KEY = "sk-e2e-loop-key-0001"
SERVER = "test"
# The loop's own error result once `max_loop_iterations` rounds have run (src/intercept/tool_loop.rs).
LIMIT_RESULT = "tool loop limit reached: answer without calling more tools"
NOT_RUN_LIMIT = "not run: tool loop limit reached"
NOT_RUN_CLIENT = "not run: the same turn called client tools, so the turn went to the client"
# The mock binary streams text in 20 deltas (`--deltas`).
MOCK_TEXT_DELTAS = 20


def out_tokens(text="", calls=0):
    """The mock's deterministic output tokens: 1 + text deltas + 2 per tool call."""
    return 1 + min(MOCK_TEXT_DELTAS, len(text)) + 2 * calls


def directive(tool, args=None, kind="tool"):
    body = "" if args is None else " " + json.dumps(args, separators=(",", ":"))
    return f"[[{kind}:{tool}{body}]]"


def bmcp(tool):
    return f"bmcp_{SERVER}_{tool}"


@dataclasses.dataclass
class ToolRow:
    tool: str
    injected: bool
    input: dict
    invocation_error: str | None = None
    # Whether the bridge ran the call (a call not run still names the server that offered it).
    ran: bool = True


@dataclasses.dataclass
class Scenario:
    """What the model is asked, what the client must see and what the audit must hold."""

    prompt: str
    texts: list  # the visible text segments, in order (Chat concatenates them)
    calls: list  # client tool calls visible to the client: (name, arguments)
    tools: list  # ToolRow, in any order
    tokens: dict  # api -> [(input, output)] per upstream call, in order


def one_call(m):
    text = f"Tool result: one-{m}"
    return Scenario(
        prompt=directive(bmcp("echo"), {"text": f"one-{m}"}),
        texts=[text],
        calls=[],
        tools=[ToolRow(bmcp("echo"), True, {"text": f"one-{m}"})],
        # input = 10 + messages: the prompt; then + the assistant turn and one result.
        tokens=same_tokens([(11, out_tokens(calls=1)), (13, out_tokens(text))]),
    )


def no_text_before(m):
    text = "Tool result: 42"
    return Scenario(
        prompt=f"{m} " + directive(bmcp("add"), {"a": 20, "b": 22}),
        texts=[text],
        calls=[],
        tools=[ToolRow(bmcp("add"), True, {"a": 20, "b": 22})],
        tokens=same_tokens([(11, out_tokens(calls=1)), (13, out_tokens(text))]),
    )


def two_calls(m):
    text = f"Tool result: two-{m} | 5"
    first = (11, out_tokens(calls=2))
    return Scenario(
        prompt=directive(bmcp("echo"), {"text": f"two-{m}"}) + " " + directive(bmcp("add"), {"a": 2, "b": 3}),
        texts=[text],
        calls=[],
        tools=[ToolRow(bmcp("echo"), True, {"text": f"two-{m}"}), ToolRow(bmcp("add"), True, {"a": 2, "b": 3})],
        tokens={
            # Messages: both results in one user message; Chat: one `tool` message each;
            # Responses: both function_call items and both outputs.
            "messages": [first, (13, out_tokens(text))],
            "chat": [first, (14, out_tokens(text))],
            "responses": [first, (15, out_tokens(text))],
        },
    )


def failing(m):
    text = f"Tool result: boom-{m}"
    return Scenario(
        prompt=directive(bmcp("fail"), {"message": f"boom-{m}"}),
        texts=[text],
        calls=[],
        tools=[ToolRow(bmcp("fail"), True, {"message": f"boom-{m}"}, invocation_error=f"boom-{m}")],
        tokens=same_tokens([(11, out_tokens(calls=1)), (13, out_tokens(text))]),
    )


def timeout(m):
    error = f"the call to `slow` on MCP server `{SERVER}` timed out after 500ms"
    text = f"Tool result: {error}"
    return Scenario(
        prompt=f"{m} " + directive(bmcp("slow"), {"ms": 2000}),
        texts=[text],
        calls=[],
        tools=[ToolRow(bmcp("slow"), True, {"ms": 2000}, invocation_error=error)],
        tokens=same_tokens([(11, out_tokens(calls=1)), (13, out_tokens(text))]),
    )


def denied(m):
    # Were `pid` offered, the mock would call it beside echo and the answer would hold its result.
    text = f"Tool result: denied-{m}"
    return Scenario(
        prompt=directive(bmcp("pid")) + " " + directive(bmcp("echo"), {"text": f"denied-{m}"}),
        texts=[text],
        calls=[],
        tools=[ToolRow(bmcp("echo"), True, {"text": f"denied-{m}"})],
        tokens=same_tokens([(11, out_tokens(calls=1)), (13, out_tokens(text))]),
    )


def loop_cap(m):
    # Each echoed text is the next call: four deep, two rounds more than the cap allows.
    levels = [f"done-{m}"]
    for _ in range(4):
        levels.append(directive(bmcp("echo"), {"text": levels[-1]}))
    text = f"Tool result: {LIMIT_RESULT}"
    call = out_tokens(calls=1)
    return Scenario(
        prompt=levels[4],
        texts=[text],
        calls=[],
        tools=[
            ToolRow(bmcp("echo"), True, {"text": levels[3]}),
            ToolRow(bmcp("echo"), True, {"text": levels[2]}),
            # The third call comes at the cap: answered with the limit error, not run.
            ToolRow(bmcp("echo"), True, {"text": levels[1]}, invocation_error=NOT_RUN_LIMIT, ran=False),
        ],
        # Two rounds run, the capped round, then the answer; each adds a call and its result.
        tokens=same_tokens([(11, call), (13, call), (15, call), (17, out_tokens(text))]),
    )


def text_before(m):
    calling = f"Calling {bmcp('echo')}."
    text = f"Tool result: tt-{m}"
    first = (11, out_tokens(calling, calls=1))
    return Scenario(
        prompt=directive(bmcp("echo"), {"text": f"tt-{m}"}, kind="text-then-tool"),
        texts=[calling, text],
        calls=[],
        tools=[ToolRow(bmcp("echo"), True, {"text": f"tt-{m}"})],
        # Responses keeps the message item and the function_call item apart.
        tokens={
            "messages": [first, (13, out_tokens(text))],
            "chat": [first, (13, out_tokens(text))],
            "responses": [first, (14, out_tokens(text))],
        },
    )


def client_tool(m):
    weather = {"city": f"Rome-{m}"}
    return Scenario(
        prompt=directive("get_weather", weather) + " " + directive(bmcp("echo"), {"text": f"mix-{m}"}),
        texts=[],
        calls=[("get_weather", weather)],
        tools=[
            ToolRow("get_weather", False, weather, ran=False),
            ToolRow(bmcp("echo"), True, {"text": f"mix-{m}"}, invocation_error=NOT_RUN_CLIENT, ran=False),
        ],
        tokens=same_tokens([(11, out_tokens(calls=2))]),
    )


def same_tokens(rows):
    return {"messages": rows, "chat": rows, "responses": rows}


SCENARIOS = {
    "one_call_then_text": one_call,
    "no_text_before_call": no_text_before,
    "two_calls_one_turn": two_calls,
    "failing_call": failing,
    "timed_out_call": timeout,
    "denied_tool_not_offered": denied,
    "loop_cap": loop_cap,
    "text_before_call": text_before,
    "client_tool_beside_injected": client_tool,
}


@dataclasses.dataclass
class Answer:
    """What a client sees, in one shape for all APIs."""

    texts: list
    calls: list  # (name, arguments, call id)
    stop: str
    usage: tuple  # (input, output)
    shape: list  # block / item types

    def visible(self):
        """Everything but call ids, which the mock numbers per response."""
        return (self.texts, [c[:2] for c in self.calls], self.stop, self.usage, self.shape)


# --- Anthropic Messages ---------------------------------------------------------------------

WEATHER_ANTHROPIC = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def ask_messages(url, prompt, streaming):
    client = anthropic.Anthropic(base_url=f"{url}/anthropic", api_key=KEY, max_retries=0)
    request = dict(
        model="claude-opus-5-5",
        max_tokens=256,
        tools=[WEATHER_ANTHROPIC],
        messages=[{"role": "user", "content": prompt}],
    )
    if streaming:
        with client.messages.stream(**request) as stream:
            message = stream.get_final_message()
    else:
        message = client.messages.create(**request)
    return Answer(
        texts=[b.text for b in message.content if b.type == "text"],
        calls=[(b.name, b.input, b.id) for b in message.content if b.type == "tool_use"],
        stop=message.stop_reason,
        usage=(message.usage.input_tokens, message.usage.output_tokens),
        shape=[b.type for b in message.content],
    )


# --- OpenAI Chat Completions ----------------------------------------------------------------

# `strict`: the SDK's stream helper only takes strict tools (it parses their arguments).
WEATHER_CHAT = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def ask_chat(url, prompt, streaming):
    client = openai.OpenAI(base_url=f"{url}/openai/v1", api_key=KEY, max_retries=0)
    request = dict(model="gpt-5", tools=[WEATHER_CHAT], messages=[{"role": "user", "content": prompt}])
    if streaming:
        with client.chat.completions.stream(**request, stream_options={"include_usage": True}) as stream:
            completion = stream.get_final_completion()
    else:
        completion = client.chat.completions.create(**request)
    assert len(completion.choices) == 1, completion
    choice = completion.choices[0]
    message = choice.message
    return Answer(
        texts=[message.content] if message.content else [],
        calls=[(c.function.name, json.loads(c.function.arguments), c.id) for c in message.tool_calls or []],
        stop=choice.finish_reason,
        usage=(completion.usage.prompt_tokens, completion.usage.completion_tokens),
        shape=[c.type for c in message.tool_calls or []],
    )


# --- OpenAI Responses -----------------------------------------------------------------------

WEATHER_RESPONSES = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def ask_responses(url, prompt, streaming):
    client = openai.OpenAI(base_url=f"{url}/openai/v1", api_key=KEY, max_retries=0)
    # Not stored, as Codex asks: parallel calls stay allowed (a stored request with client
    # tools gets one call per turn; see test_responses_continue_after_the_loop).
    request = dict(model="gpt-5", tools=[WEATHER_RESPONSES], input=prompt, store=False)
    if streaming:
        with client.responses.stream(**request) as stream:
            response = stream.get_final_response()
    else:
        response = client.responses.create(**request)
    return Answer(
        texts=[
            part.text
            for item in response.output
            if item.type == "message"
            for part in item.content
            if part.type == "output_text"
        ],
        calls=[(i.name, json.loads(i.arguments), i.call_id) for i in response.output if i.type == "function_call"],
        stop=response.status,
        usage=(response.usage.input_tokens, response.usage.output_tokens),
        shape=[i.type for i in response.output],
    )


API = {
    "messages": (ask_messages, {"text": "end_turn", "tool": "tool_use"}),
    "chat": (ask_chat, {"text": "stop", "tool": "tool_calls"}),
    "responses": (ask_responses, {"text": "completed", "tool": "completed"}),
}


# --- The audit ------------------------------------------------------------------------------


def audit_rows(loop, marker, streaming, scenario, api):
    """Waits for the interception of `marker` to end and checks its rows exactly; returns the
    token rows' response ids and the tool rows."""
    db = loop.bridge.audit
    prompts = db.interceptions_for_prompt(marker)
    assert len(prompts) == 1, prompts
    interception_id = prompts[0]["interception_id"]
    row = db.interception(interception_id)
    assert (row["outcome"], bool(row["streaming"])) == ("completed", streaming), row

    expected_tokens = scenario.tokens[api]
    sql = "SELECT * FROM aibridge_token_usages WHERE interception_id = ? ORDER BY created_at"
    tokens = db.wait_for(sql, (interception_id,), count=len(expected_tokens), what="token usages")
    assert [(t["input_tokens"], t["output_tokens"]) for t in tokens] == expected_tokens, tokens
    response_ids = [t["provider_response_id"] for t in tokens]
    assert len(set(response_ids)) == len(response_ids) and all(response_ids), tokens

    sql = "SELECT * FROM aibridge_tool_usages WHERE interception_id = ?"
    tools = db.wait_for(sql, (interception_id,), count=len(scenario.tools), what="tool usages")
    got = sorted(
        (
            (
                t["tool"],
                bool(t["injected"]),
                as_json(t["input"]),
                t["invocation_error"],
                t["server_url"],
            )
            for t in tools
        ),
        key=repr,
    )
    want = sorted(
        (
            (r.tool, r.injected, r.input, r.invocation_error, loop.mcp_url if r.injected else None)
            for r in scenario.tools
        ),
        key=repr,
    )
    assert got == want, tools
    for t in tools:
        assert t["provider_tool_call_id"], t
        assert t["provider_response_id"] in response_ids, (t, response_ids)
    return tokens, tools


# --- The tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario_name", list(SCENARIOS))
@pytest.mark.parametrize(
    "api",
    [
        pytest.param("messages", marks=pytest.mark.messages),
        pytest.param("chat", marks=pytest.mark.chat),
        pytest.param("responses", marks=pytest.mark.responses),
    ],
)
def test_tool_loop(bridge_loop, api, scenario_name):
    ask, stops = API[api]
    # One scenario for both calls, so that their answers can be compared; a tag per call
    # (outside any directive) finds its interception.
    scenario = SCENARIOS[scenario_name](uuid.uuid4().hex[:12])
    answers = {}
    for streaming in (False, True):
        marker = f"call-{uuid.uuid4().hex[:12]}"
        answer = ask(bridge_loop.bridge.url, f"{scenario.prompt} {marker}", streaming)
        mode = "streaming" if streaming else "blocking"
        texts = ["".join(scenario.texts)] if api == "chat" and scenario.texts else scenario.texts
        assert answer.texts == texts, (mode, answer)
        # The client sees its own calls only, never an injected one.
        assert [c[:2] for c in answer.calls] == scenario.calls, (mode, answer)
        assert answer.stop == stops["tool" if scenario.calls else "text"], (mode, answer)
        _, tools = audit_rows(bridge_loop, marker, streaming, scenario, api)
        # Usage is summed over every upstream call of the loop.
        rows = scenario.tokens[api]
        assert answer.usage == (sum(r[0] for r in rows), sum(r[1] for r in rows)), (mode, answer)
        # The client's call is the one recorded, under the id the client got.
        client_rows = {t["tool"]: t["provider_tool_call_id"] for t in tools if not t["injected"]}
        assert {c[0]: c[2] for c in answer.calls} == client_rows, (mode, answer, tools)
        answers[mode] = answer
    assert answers["streaming"].visible() == answers["blocking"].visible()


@pytest.mark.responses
@pytest.mark.parametrize("streaming", [False, True], ids=["blocking", "streaming"])
def test_responses_continue_after_the_loop(bridge_loop, streaming):
    """Stored responses: the id the SDK ends up with continues the conversation upstream
    (every injected call answered), and the response shows only the client's own tools."""
    client = openai.OpenAI(base_url=f"{bridge_loop.bridge.url}/openai/v1", api_key=KEY, max_retries=0)
    marker = uuid.uuid4().hex[:12]
    first = dict(model="gpt-5", tools=[WEATHER_RESPONSES], input=directive(bmcp("echo"), {"text": f"c-{marker}"}))
    second = dict(model="gpt-5", tools=[WEATHER_RESPONSES], input=f"and then {marker}?")
    if streaming:
        with client.responses.stream(**first) as stream:
            response = stream.get_final_response()
        with client.responses.stream(**second, previous_response_id=response.id) as stream:
            follow_up = stream.get_final_response()
    else:
        response = client.responses.create(**first)
        follow_up = client.responses.create(**second, previous_response_id=response.id)
    assert response.output_text == f"Tool result: c-{marker}"
    assert [t.name for t in response.tools] == ["get_weather"]
    assert response.parallel_tool_calls is True
    assert follow_up.output_text == f"Mock answer: and then {marker}?"
