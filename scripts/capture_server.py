#!/usr/bin/env python3
"""A tiny logging model server: records what real clients send, answers just enough.

Usage: capture_server.py OUT_DIR [--port N]

Binds 127.0.0.1 (port 0 by default), prints `listening on http://ADDR` on stdout, and writes
every request as OUT_DIR/NNNN-METHOD-path.json: method, path, query, headers (credentials
masked) and body (parsed JSON when it is JSON). Answers:

- Anthropic: POST /v1/messages (blocking and streaming), POST /v1/messages/count_tokens,
  GET /v1/models (when the request carries anthropic-version).
- OpenAI: POST /v1/responses (streaming and blocking), POST /v1/chat/completions (blocking and
  streaming), GET /v1/models.

The latest user prompt may hold a directive `[[tool:NAME {json}]]`: if the client offered a tool
NAME and the conversation has no tool result yet, the answer calls that tool with that input, so
tool-result turns can be captured too. Everything else answers `Captured: <prompt>`.

Standard library only, so it runs with any python3.
"""

import argparse
import itertools
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SECRET_HEADER = re.compile(r"key|auth|token|cookie|secret", re.I)
DIRECTIVE = re.compile(r"\[\[tool:([A-Za-z0-9_.:-]+)\s+(\{.*?\})\]\]", re.S)
COUNTER = itertools.count(1)
COUNTER_LOCK = threading.Lock()


def mask(value):
    """Keeps the scheme and a short prefix so captures still show the credential's shape."""
    scheme, _, rest = value.partition(" ")
    if rest:
        return f"{scheme} {rest[:7]}…(masked)"
    return f"{value[:7]}…(masked)"


def text_of(content):
    """Plain text of a message's content in any of the three wire APIs."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "\n".join(parts)
    return ""


def conversation(body):
    """(last user prompt, whether any tool result was sent, offered tool names)."""
    messages = body.get("messages")
    items = body.get("input")
    prompt, has_result = "", False
    if isinstance(messages, list):
        for msg in messages:
            content = msg.get("content")
            if msg.get("role") == "tool":
                has_result = True
            if isinstance(content, list) and any(
                isinstance(p, dict) and p.get("type") == "tool_result" for p in content
            ):
                has_result = True
            elif msg.get("role") == "user":
                prompt = text_of(content) or prompt
    elif isinstance(items, str):
        prompt = items
    elif isinstance(items, list):
        for item in items:
            kind = item.get("type")
            if kind in ("function_call_output", "custom_tool_call_output", "local_shell_call_output"):
                has_result = True
            elif item.get("role") == "user":
                prompt = text_of(item.get("content")) or prompt
    names = set()
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            name = tool.get("name") or (tool.get("function") or {}).get("name")
            if name:
                names.add(name)
            if tool.get("type") == "local_shell":
                names.add("local_shell")
    return prompt, has_result, names


def plan(body):
    """What to answer: ("tool", name, input) or ("text", text)."""
    prompt, has_result, names = conversation(body)
    found = DIRECTIVE.search(prompt)
    if found and not has_result and found.group(1) in names:
        try:
            args = json.loads(found.group(2))
        except json.JSONDecodeError:
            args = {}
        return ("tool", found.group(1), args)
    if has_result:
        return ("text", "Tool result received.")
    first_line = prompt.strip().splitlines()[-1] if prompt.strip() else ""
    return ("text", f"Captured: {first_line[:200]}")


def sse(event, data):
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def anthropic_message(body, answer):
    usage = {"input_tokens": 12, "output_tokens": 6, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    if answer[0] == "tool":
        content = [
            {"type": "thinking", "thinking": "The user wants this tool run.", "signature": "c2lnLWNhcHR1cmU="},
            {"type": "tool_use", "id": "toolu_capture1", "name": answer[1], "input": answer[2]},
        ]
        stop = "tool_use"
    else:
        content = [{"type": "text", "text": answer[1]}]
        stop = "end_turn"
    return {
        "id": "msg_capture1",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "unknown"),
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }


def anthropic_stream(message):
    start = dict(message, content=[], stop_reason=None)
    start["usage"] = dict(message["usage"], output_tokens=1)
    yield sse("message_start", {"type": "message_start", "message": start})
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            yield sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})
            yield sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": block["text"]}})
        elif block["type"] == "thinking":
            yield sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
            yield sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": block["thinking"]}})
            yield sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": "signature_delta", "signature": block["signature"]}})
        else:
            yield sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": dict(block, input={})})
            yield sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}})
        yield sse("content_block_stop", {"type": "content_block_stop", "index": index})
    yield sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None}, "usage": {"output_tokens": message["usage"]["output_tokens"]}})
    yield sse("message_stop", {"type": "message_stop"})


def responses_output(answer, tool_kinds):
    """Output items: a reasoning item and the call for a tool answer, else one message."""
    if answer[0] == "tool":
        name, args = answer[1], answer[2]
        reasoning = {
            "type": "reasoning",
            "id": "rs_capture1",
            "summary": [{"type": "summary_text", "text": "The user wants this tool run."}],
            "encrypted_content": "ZW5jcnlwdGVkLWNhcHR1cmU=",
        }
        if tool_kinds.get(name) == "custom":
            text = args.get("input", "") if isinstance(args, dict) else str(args)
            call = {"type": "custom_tool_call", "id": "ctc_capture1", "call_id": "call_capture1", "name": name, "input": text, "status": "completed"}
        else:
            call = {"type": "function_call", "id": "fc_capture1", "call_id": "call_capture1", "name": name, "arguments": json.dumps(args), "status": "completed"}
        return [reasoning, call]
    return [{
        "type": "message",
        "id": "msg_capture1",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": answer[1], "annotations": []}],
    }]


def responses_object(body, items, status):
    return {
        "id": "resp_capture1",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": body.get("model", "unknown"),
        "output": items if status == "completed" else [],
        "usage": {
            "input_tokens": 12,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 6,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 18,
        }
        if status == "completed"
        else None,
    }


def responses_stream(body, items):
    seq = itertools.count()
    yield sse("response.created", {"type": "response.created", "sequence_number": next(seq), "response": responses_object(body, items, "in_progress")})
    for index, item in enumerate(items):
        added = dict(item, status="in_progress")
        if item["type"] == "message":
            added["content"] = []
        yield sse("response.output_item.added", {"type": "response.output_item.added", "sequence_number": next(seq), "output_index": index, "item": added})
        if item["type"] == "message":
            text = item["content"][0]["text"]
            part = {"type": "output_text", "text": "", "annotations": []}
            common = {"item_id": item["id"], "output_index": index, "content_index": 0}
            yield sse("response.content_part.added", dict(common, type="response.content_part.added", sequence_number=next(seq), part=part))
            yield sse("response.output_text.delta", dict(common, type="response.output_text.delta", sequence_number=next(seq), delta=text))
            yield sse("response.output_text.done", dict(common, type="response.output_text.done", sequence_number=next(seq), text=text))
            yield sse("response.content_part.done", dict(common, type="response.content_part.done", sequence_number=next(seq), part=item["content"][0]))
        elif item["type"] == "function_call":
            common = {"item_id": item["id"], "output_index": index}
            yield sse("response.function_call_arguments.delta", dict(common, type="response.function_call_arguments.delta", sequence_number=next(seq), delta=item["arguments"]))
            yield sse("response.function_call_arguments.done", dict(common, type="response.function_call_arguments.done", sequence_number=next(seq), arguments=item["arguments"]))
        yield sse("response.output_item.done", {"type": "response.output_item.done", "sequence_number": next(seq), "output_index": index, "item": item})
    yield sse("response.completed", {"type": "response.completed", "sequence_number": next(seq), "response": responses_object(body, items, "completed")})


def chat_completion(body, answer):
    if answer[0] == "tool":
        message = {"role": "assistant", "content": None, "tool_calls": [{"id": "call_capture1", "type": "function", "function": {"name": answer[1], "arguments": json.dumps(answer[2])}}]}
        finish = "tool_calls"
    else:
        message = {"role": "assistant", "content": answer[1]}
        finish = "stop"
    return {
        "id": "chatcmpl-capture1",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "unknown"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
    }


def chat_stream(completion):
    choice = completion["choices"][0]
    base = {k: completion[k] for k in ("id", "created", "model")}
    base["object"] = "chat.completion.chunk"
    delta = dict(choice["message"])
    if "tool_calls" in delta:
        delta["tool_calls"] = [dict(call, index=0) for call in delta["tool_calls"]]
    yield f"data: {json.dumps(dict(base, choices=[{'index': 0, 'delta': delta, 'finish_reason': None}]))}\n\n".encode()
    yield f"data: {json.dumps(dict(base, choices=[{'index': 0, 'delta': {}, 'finish_reason': choice['finish_reason']}]))}\n\n".encode()
    yield f"data: {json.dumps(dict(base, choices=[], usage=completion['usage']))}\n\n".encode()
    yield b"data: [DONE]\n\n"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    out_dir = "."

    def log_message(self, fmt, *args):
        sys.stderr.write("capture: " + (fmt % args) + "\n")

    def record(self, raw):
        split = urlsplit(self.path)
        try:
            body = json.loads(raw) if raw else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = raw.decode("utf-8", "replace")
        headers = {}
        for name, value in self.headers.items():
            headers[name.lower()] = mask(value) if SECRET_HEADER.search(name) else value
        with COUNTER_LOCK:
            n = next(COUNTER)
        entry = {
            "seq": n,
            "method": self.command,
            "path": split.path,
            "query": parse_qs(split.query),
            "headers": headers,
            "body": body,
        }
        slug = re.sub(r"[^A-Za-z0-9]+", "_", split.path).strip("_") or "root"
        with open(f"{self.out_dir}/{n:04d}-{self.command}-{slug}.json", "w") as f:
            json.dump(entry, f, indent=2, ensure_ascii=False)
        return split.path, body if isinstance(body, dict) else {}

    def send_json(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_sse(self, chunks):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def do_GET(self):
        path, _ = self.record(b"")
        if path.endswith("/models"):
            if "anthropic-version" in self.headers:
                model = {"type": "model", "id": "claude-sonnet-4-5", "display_name": "Claude Sonnet 4.5", "created_at": "2025-09-29T00:00:00Z"}
                self.send_json(200, {"data": [model], "has_more": False, "first_id": model["id"], "last_id": model["id"]})
            else:
                self.send_json(200, {"object": "list", "data": [{"id": "gpt-5", "object": "model", "created": 0, "owned_by": "capture"}]})
        else:
            self.send_json(404, {"error": {"type": "not_found_error", "message": f"no route {path}"}})

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        path, body = self.record(raw)
        answer = plan(body)
        if path.endswith("/messages/count_tokens"):
            self.send_json(200, {"input_tokens": 42})
        elif path.endswith("/messages"):
            message = anthropic_message(body, answer)
            if body.get("stream"):
                self.send_sse(anthropic_stream(message))
            else:
                self.send_json(200, message)
        elif path.endswith("/responses"):
            kinds = {t.get("name"): t.get("type") for t in body.get("tools") or [] if isinstance(t, dict)}
            items = responses_output(answer, kinds)
            if body.get("stream"):
                self.send_sse(responses_stream(body, items))
            else:
                self.send_json(200, responses_object(body, items, "completed"))
        elif path.endswith("/chat/completions"):
            completion = chat_completion(body, answer)
            if body.get("stream"):
                self.send_sse(chat_stream(completion))
            else:
                self.send_json(200, completion)
        else:
            self.send_json(404, {"error": {"type": "not_found_error", "message": f"no route {path}"}})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    Handler.out_dir = args.out_dir
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    host, port = server.server_address[:2]
    print(f"listening on http://{host}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
