#!/usr/bin/env python3
"""Checks that the official Python SDKs accept what the mock upstream says.

Part 1 starts the `aibridge-mock-upstream` binary (smart mode, `--deltas 4`) and drives it with
the `anthropic` and `openai` SDKs, blocking and streaming, including the stream accumulators
(`messages.stream().get_final_message()`, `chat.completions.stream().get_final_completion()`,
`responses.stream().get_final_response()`), for text, tool calls, thinking/reasoning, tool
results, errors, count_tokens and model lists.

Part 2 serves every fixture in tests/fixtures/{anthropic,openai-chat,openai-responses} from a
small local HTTP server and has the same SDK accumulators parse it.

Usage: python3 mock-upstream/check_sdks.py [--binary PATH]
(else $AIBRIDGE_BIN_DIR, $CARGO_TARGET_DIR/debug, target/debug).
Needs: pip install anthropic openai. Exits non-zero on the first failed check.
"""

import argparse
import http.server
import json
import os
import pathlib
import subprocess
import sys
import threading

import anthropic
import openai

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
KEY = "sk-mock-check"
CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def eq(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def find_binary(explicit):
    if explicit:
        return explicit
    if os.environ.get("AIBRIDGE_BIN_DIR"):
        return str(pathlib.Path(os.environ["AIBRIDGE_BIN_DIR"]) / "aibridge-mock-upstream")
    for target in (os.environ.get("CARGO_TARGET_DIR"), ROOT / "target", "/work/target-helpers"):
        if not target:
            continue
        for profile in ("debug", "release"):
            path = pathlib.Path(target) / profile / "aibridge-mock-upstream"
            if path.exists():
                return str(path)
    raise SystemExit("aibridge-mock-upstream binary not found; build it or pass --binary")


# ------------------------------------------------------------------ smart mode

WEATHER_A = {"name": "get_weather", "description": "Weather for a city.",
             "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
TIME_A = {"name": "get_time", "description": "Time in a zone.",
          "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}}}
WEATHER_C = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                                              "parameters": {"type": "object",
                                                             "properties": {"city": {"type": "string"}}}}}
WEATHER_R = {"type": "function", "name": "get_weather", "description": "Weather for a city.",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": False}
PATCH_R = {"type": "custom", "name": "apply_patch", "description": "Apply a patch."}


def user(text):
    return [{"role": "user", "content": text}]


@check
def anthropic_text(a, o):
    m = a.messages.create(model="claude-x", max_tokens=100, messages=user("hello"))
    eq(m.content[0].text, "Mock answer: hello", "text")
    eq((m.stop_reason, m.usage.input_tokens, m.usage.output_tokens), ("end_turn", 11, 5), "stop/usage")
    with a.messages.stream(model="claude-x", max_tokens=100, messages=user("hello")) as s:
        deltas = list(s.text_stream)
        final = s.get_final_message()
    eq(len(deltas), 4, "text deltas")
    eq(final.content[0].text, "Mock answer: hello", "streamed text")
    eq((final.usage.input_tokens, final.usage.output_tokens), (11, 5), "streamed usage")


@check
def anthropic_tools(a, o):
    prompt = '[[tool:get_weather {"city":"Paris"}]] [[tool:get_time {"tz":"UTC"}]]'
    kw = dict(model="claude-x", max_tokens=100, tools=[WEATHER_A, TIME_A], messages=user(prompt))
    m = a.messages.create(**kw)
    eq([(b.type, b.name, b.input) for b in m.content],
       [("tool_use", "get_weather", {"city": "Paris"}), ("tool_use", "get_time", {"tz": "UTC"})], "tool_use")
    eq((m.stop_reason, m.usage.output_tokens), ("tool_use", 5), "stop/usage")
    with a.messages.stream(**kw) as s:
        final = s.get_final_message()
    eq([b.input for b in final.content], [{"city": "Paris"}, {"tz": "UTC"}], "streamed tool inputs")
    eq([b.id.startswith("toolu_mock") for b in final.content], [True, True], "tool_use ids")
    kw["messages"] = user("[[text-then-tool:get_weather]]")
    with a.messages.stream(**kw) as s:
        final = s.get_final_message()
    eq([b.type for b in final.content], ["text", "tool_use"], "text then tool")
    eq(final.content[0].text, "Calling get_weather.", "text before the call")
    # The tool result turn.
    messages = user("weather?") + [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                                     {"type": "text", "text": "<system-reminder>x</system-reminder>"}]},
    ]
    with a.messages.stream(model="claude-x", max_tokens=100, tools=[WEATHER_A], messages=messages) as s:
        final = s.get_final_message()
    eq(final.content[0].text, "Tool result: sunny", "tool result answer")
    eq(final.usage.input_tokens, 13, "input tokens = 10 + 3 messages")


@check
def anthropic_thinking(a, o):
    kw = dict(model="claude-x", max_tokens=2000, messages=user("why? [[thinking]]"),
              thinking={"type": "enabled", "budget_tokens": 1024})
    m = a.messages.create(**kw)
    eq([b.type for b in m.content], ["thinking", "text"], "blocks")
    with a.messages.stream(**kw) as s:
        final = s.get_final_message()
    eq([b.type for b in final.content], ["thinking", "text"], "streamed blocks")
    eq(final.content[0].thinking, m.content[0].thinking, "thinking text")
    eq(final.content[0].signature, m.content[0].signature, "signature")
    eq(final.usage.output_tokens, 7, "output tokens")


@check
def anthropic_errors_and_side_routes(a, o):
    try:
        a.messages.create(model="claude-x", max_tokens=10, messages=user("[[status:429]]"))
        raise AssertionError("no RateLimitError")
    except anthropic.RateLimitError as e:
        eq(e.body["error"]["type"], "rate_limit_error", "429 body")
    try:
        with a.messages.stream(model="claude-x", max_tokens=10, messages=user("[[error:overloaded]]")) as s:
            s.get_final_message()
        raise AssertionError("no error for event: error")
    except anthropic.APIStatusError as e:
        eq(e.body["error"]["type"], "overloaded_error", "overloaded body")
    eq(a.messages.count_tokens(model="claude-x", messages=user("x")).input_tokens, 11, "count_tokens")
    ids = [m.id for m in a.models.list(limit=1)]
    eq(ids, ["claude-mock-opus", "claude-mock-sonnet", "claude-mock-haiku"], "paged model list")
    eq(a.models.retrieve("claude-mock-haiku").display_name, "Claude Mock Haiku", "model")


@check
def chat_text_and_usage(a, o):
    c = o.chat.completions.create(model="gpt-x", messages=user("hello"))
    eq(c.choices[0].message.content, "Mock answer: hello", "text")
    eq((c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.total_tokens), (11, 5, 16), "usage")
    chunks = list(o.chat.completions.create(model="gpt-x", messages=user("hello"), stream=True,
                                            stream_options={"include_usage": True}))
    eq(chunks[-1].choices, [], "usage chunk choices")
    eq(chunks[-1].usage.completion_tokens, 5, "usage chunk")
    with o.chat.completions.stream(model="gpt-x", messages=user("hello [[cached:3]]"),
                                   stream_options={"include_usage": True}) as s:
        final = s.get_final_completion()
    eq(final.choices[0].message.content, "Mock answer: hello [[cached:3]]", "streamed text")
    eq((final.usage.prompt_tokens, final.usage.prompt_tokens_details.cached_tokens), (14, 3), "cached usage")
    chunks = list(o.chat.completions.create(model="gpt-x", messages=user("hello"), stream=True))
    eq([c.usage for c in chunks], [None] * len(chunks), "no usage without include_usage")


@check
def chat_tools(a, o):
    prompt = '[[tool:get_weather {"city":"Paris"}]] [[tool:get_weather {"city":"Rome"}]]'
    c = o.chat.completions.create(model="gpt-x", tools=[WEATHER_C], messages=user(prompt))
    calls = c.choices[0].message.tool_calls
    eq([json.loads(t.function.arguments) for t in calls], [{"city": "Paris"}, {"city": "Rome"}], "calls")
    eq(c.choices[0].finish_reason, "tool_calls", "finish")
    with o.chat.completions.stream(model="gpt-x", tools=[WEATHER_C], messages=user(prompt)) as s:
        final = s.get_final_completion()
    streamed = final.choices[0].message.tool_calls
    eq([(t.id.startswith("call_mock"), t.function.name, t.function.arguments) for t in streamed],
       [(True, t.function.name, t.function.arguments) for t in calls], "streamed calls")
    messages = user("weather?") + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "rainy"}]},
    ]
    c = o.chat.completions.create(model="gpt-x", tools=[WEATHER_C], messages=messages)
    eq(c.choices[0].message.content, "Tool result: sunny | rainy", "tool results")
    try:
        list(o.chat.completions.create(model="gpt-x", messages=user("[[error:overloaded]]"), stream=True))
        raise AssertionError("no error for the error chunk")
    except openai.APIError as e:
        eq(e.body["type"] if isinstance(e.body, dict) else None, "server_error", "midstream error body")
    try:
        o.chat.completions.create(model="gpt-x", messages=user("[[status:429]]"))
        raise AssertionError("no RateLimitError")
    except openai.RateLimitError as e:
        eq(e.code, "rate_limit_exceeded", "429 code")
    eq([m.id for m in o.models.list()], ["gpt-mock", "gpt-mock-mini", "gpt-mock-codex"], "models")


@check
def responses_text_tools_reasoning(a, o):
    r = o.responses.create(model="gpt-x", input="hello")
    eq(r.output_text, "Mock answer: hello", "text")
    eq((r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens), (11, 5, 16), "usage")
    with o.responses.stream(model="gpt-x", input=user("hello")) as s:
        final = s.get_final_response()
    eq(final.output_text, "Mock answer: hello", "streamed text")
    prompt = '[[thinking]] [[text-then-tool:get_weather {"city":"Paris"}]] [[tool:apply_patch "*** Begin Patch"]]'
    kw = dict(model="gpt-x", tools=[WEATHER_R, PATCH_R], input=[
        {"role": "user", "content": [{"type": "input_text", "text": prompt}]}])
    r = o.responses.create(**kw)
    eq([i.type for i in r.output], ["reasoning", "message", "function_call", "custom_tool_call"], "items")
    with o.responses.stream(**kw) as s:
        events = [e.type for e in s]
        final = s.get_final_response()
    eq([i.type for i in final.output], ["reasoning", "message", "function_call", "custom_tool_call"],
       "streamed items")
    eq(json.loads(final.output[2].arguments), {"city": "Paris"}, "function arguments")
    eq(final.output[3].input, "*** Begin Patch", "custom tool input")
    eq(final.output[0].summary[0].text.startswith("Mock thinking about:"), True, "reasoning summary")
    eq(final.usage.output_tokens_details.reasoning_tokens, 2, "reasoning tokens")
    for needed in ("response.reasoning_summary_text.delta", "response.function_call_arguments.done",
                   "response.custom_tool_call_input.delta", "response.completed"):
        eq(needed in events, True, f"event {needed}")
    r = o.responses.create(model="gpt-x", tools=[WEATHER_R], input=[
        {"role": "user", "content": "weather?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}])
    eq(r.output_text, "Tool result: sunny", "tool result answer")


@check
def responses_failures(a, o):
    with o.responses.stream(model="gpt-x", input="[[error:failed]]") as s:
        kinds = [e.type for e in s]
    eq(kinds[-1], "response.failed", "failed event")
    # The documented `error` event has top-level code/message: the SDK yields it, it does not raise.
    with o.responses.stream(model="gpt-x", input="[[error:overloaded]]") as s:
        events = list(s)
    eq((events[-1].type, events[-1].code), ("error", "server_error"), "error event")


# ------------------------------------------------------------------ fixtures through the SDKs

class FixtureServer(http.server.ThreadingHTTPServer):
    """Answers every POST with the fixture named by the `x-fixture` header."""

    daemon_threads = True


class FixtureHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", "0")))
        name = self.headers["x-fixture"]
        body = (FIXTURES / name).read_bytes()
        self.send_response(int(self.headers.get("x-status", "200")))
        self.send_header("content-type", "text/event-stream" if name.endswith(".sse") else "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def fixture_checks(base):
    a = anthropic.Anthropic(base_url=base, api_key=KEY, max_retries=0)
    o = openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0)

    def hdr(name, status=200):
        return {"extra_headers": {"x-fixture": name, "x-status": str(status)}}

    for name in ("simple_text", "tool_use", "parallel_tool_use", "thinking_then_tool_use", "cache_usage"):
        blocking = a.messages.create(model="m", max_tokens=10, messages=user("x"), **hdr(f"anthropic/{name}.json"))
        with a.messages.stream(model="m", max_tokens=10, messages=user("x"), **hdr(f"anthropic/{name}.sse")) as s:
            final = s.get_final_message()
        eq(final.model_dump(), blocking.model_dump(), f"anthropic/{name}: stream accumulates to the json")
    with a.messages.stream(model="m", max_tokens=10, messages=user("x"), **hdr("anthropic/sse_edge_cases.sse")) as s:
        eq(s.get_final_message().content[0].text, "Edge", "anthropic/sse_edge_cases")
    try:
        with a.messages.stream(model="m", max_tokens=10, messages=user("x"),
                               **hdr("anthropic/error_overloaded_midstream.sse")) as s:
            s.get_final_message()
        raise AssertionError("anthropic/error_overloaded_midstream: no error")
    except anthropic.APIStatusError:
        pass
    try:
        a.messages.create(model="m", max_tokens=10, messages=user("x"), **hdr("anthropic/error_400.json", 400))
        raise AssertionError("anthropic/error_400: no error")
    except anthropic.BadRequestError as e:
        eq(e.body["error"]["type"], "invalid_request_error", "anthropic/error_400")

    for name in ("simple_text", "tool_call", "parallel_tool_calls", "cached_tokens"):
        blocking = o.chat.completions.create(model="m", messages=user("x"), **hdr(f"openai-chat/{name}.json"))
        variants = [f"{name}.sse"] + ([] if name == "cached_tokens" else [f"{name}.no_usage.sse"])
        for variant in variants:
            with o.chat.completions.stream(model="m", messages=user("x"), **hdr(f"openai-chat/{variant}")) as s:
                final = s.get_final_completion()
            got, want = final.choices[0].message, blocking.choices[0].message
            eq(got.content, want.content, f"openai-chat/{variant}: content")
            def calls(message):
                return [(t.id, t.type, t.function.name, t.function.arguments) for t in message.tool_calls or []]

            eq(calls(got), calls(want), f"openai-chat/{variant}: tool calls")
            eq(final.choices[0].finish_reason, blocking.choices[0].finish_reason, f"openai-chat/{variant}: finish")
            if "no_usage" not in variant:
                eq(final.usage.model_dump(), blocking.usage.model_dump(), f"openai-chat/{variant}: usage")
    try:
        list(o.chat.completions.create(model="m", messages=user("x"), stream=True,
                                       **hdr("openai-chat/error_midstream.sse")))
        raise AssertionError("openai-chat/error_midstream: no error")
    except openai.APIError:
        pass
    try:
        o.chat.completions.create(model="m", messages=user("x"), **hdr("openai-chat/error_429.json", 429))
        raise AssertionError("openai-chat/error_429: no error")
    except openai.RateLimitError:
        pass

    for name in ("simple_text", "function_call", "parallel_function_calls", "reasoning_summary", "commentary",
                 "custom_tool_call", "cached_tokens"):
        blocking = o.responses.create(model="m", input="x", **hdr(f"openai-responses/{name}.json"))
        with o.responses.stream(model="m", input="x", **hdr(f"openai-responses/{name}.sse")) as s:
            final = s.get_final_response()
        eq(final.model_dump(exclude_none=True), blocking.model_dump(exclude_none=True),
           f"openai-responses/{name}: stream accumulates to the json")
    with o.responses.stream(model="m", input="x", **hdr("openai-responses/failed.sse")) as s:
        eq([e.type for e in s][-1], "response.failed", "openai-responses/failed")
    with o.responses.stream(model="m", input="x", **hdr("openai-responses/error.sse")) as s:
        last = list(s)[-1]
    eq((last.type, last.code), ("error", "rate_limit_exceeded"), "openai-responses/error")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary")
    args = parser.parse_args()
    proc = subprocess.Popen([find_binary(args.binary), "--deltas", "4"], stdout=subprocess.PIPE, text=True)
    failures = 0
    try:
        line = proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise SystemExit(f"unexpected first line: {line!r}")
        url = line.removeprefix("listening on ")
        a = anthropic.Anthropic(base_url=url, api_key=KEY, max_retries=0)
        o = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
        for fn in CHECKS:
            try:
                fn(a, o)
                print(f"ok    smart/{fn.__name__}")
            except Exception as e:  # noqa: BLE001 - report every failing check
                failures += 1
                print(f"FAIL  smart/{fn.__name__}: {type(e).__name__}: {e}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    server = FixtureServer(("127.0.0.1", 0), FixtureHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        fixture_checks(f"http://127.0.0.1:{server.server_address[1]}")
        print("ok    fixtures")
    except Exception as e:  # noqa: BLE001
        failures += 1
        print(f"FAIL  fixtures: {type(e).__name__}: {e}")
    finally:
        server.shutdown()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
