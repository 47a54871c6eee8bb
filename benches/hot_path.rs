//! Micro-benchmarks of the per-request hot path: SSE framing, the per-event observer and
//! the request view. `cargo bench --bench hot_path`; a regression shows as a change in
//! nanoseconds per stream or per request.

use std::hint::black_box;

use aibridge::api::{ApiKind, RequestInfo};
use aibridge::sse::SseDecoder;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

/// A Messages stream of the shape the mock and the real API send: start, one text block
/// of `deltas` deltas, then usage and stop.
fn text_stream(deltas: usize) -> Vec<u8> {
    let mut s = String::new();
    s.push_str("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_bench\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":1200,\"cache_read_input_tokens\":5000,\"cache_creation_input_tokens\":80,\"output_tokens\":1}}}\n\n");
    s.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    for i in 0..deltas {
        s.push_str(&format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"piece {i} of the answer \"}}}}\n\n"));
    }
    s.push_str(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    );
    s.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":87}}\n\n");
    s.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    s.into_bytes()
}

/// A stream with a thinking block and a tool call whose input arrives in JSON pieces:
/// the events the observer must parse rather than skip.
fn tool_stream() -> Vec<u8> {
    let mut s = String::new();
    s.push_str("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_tool\",\"usage\":{\"input_tokens\":900,\"output_tokens\":1}}}\n\n");
    s.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n");
    for i in 0..10 {
        s.push_str(&format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"thinking_delta\",\"thinking\":\"step {i} of the plan. \"}}}}\n\n"));
    }
    s.push_str(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    );
    s.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"Read\",\"input\":{}}}\n\n");
    for piece in ["{\\\"file_", "path\\\": \\\"/src/", "main.rs\\\"}"] {
        s.push_str(&format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{{\"type\":\"input_json_delta\",\"partial_json\":\"{piece}\"}}}}\n\n"));
    }
    s.push_str(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
    );
    s.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":64}}\n\n");
    s.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    s.into_bytes()
}

/// A Claude-Code-sized Messages request body (~100 KB).
fn big_request() -> Vec<u8> {
    let code = "fn main() {\\n    println!(\\\"hello\\\");\\n}\\n".repeat(60);
    let mut messages = Vec::new();
    for i in 0..30 {
        messages.push(format!(r#"{{"role":"assistant","content":[{{"type":"tool_use","id":"toolu_{i}","name":"Read","input":{{"file_path":"/src/m{i}.rs"}}}}]}}"#));
        messages.push(format!(r#"{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"toolu_{i}","content":"{code}"}}]}}"#));
    }
    messages.push(
        r#"{"role":"user","content":[{"type":"text","text":"Now fix the bug."}]}"#.to_owned(),
    );
    format!(
        r#"{{"model":"claude-sonnet-4-5","max_tokens":32000,"stream":true,"system":"{}","metadata":{{"user_id":"user_a_account_b_session_c"}},"messages":[{}]}}"#,
        "You are Claude Code. ".repeat(800),
        messages.join(",")
    )
    .into_bytes()
}

fn decode(stream: &[u8], chunk: usize) -> usize {
    let mut decoder = SseDecoder::default();
    let mut events = 0;
    for piece in stream.chunks(chunk) {
        decoder.push(piece);
        while let Some(event) = decoder.next_event() {
            events += black_box(event.raw.len()).min(1);
        }
    }
    events
}

fn sse_decoder(c: &mut Criterion) {
    let stream = text_stream(20);
    let mut g = c.benchmark_group("sse_decoder");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    // One read holding the whole stream, and reads of the size a TCP segment often brings.
    for chunk in [stream.len(), 512, 64] {
        g.bench_function(format!("20_deltas_chunk_{chunk}"), |b| {
            b.iter(|| decode(black_box(&stream), chunk))
        });
    }
    g.finish();
}

fn observe(stream: &[u8]) -> usize {
    let mut decoder = SseDecoder::default();
    let mut observer = ApiKind::Messages.observer(&RequestInfo::default());
    decoder.push(stream);
    while let Some(event) = decoder.next_event() {
        black_box(observer.on_event(&event));
    }
    observer.take().tool_calls.len()
}

fn messages_observer(c: &mut Criterion) {
    let mut g = c.benchmark_group("messages_observer");
    for (name, stream) in [
        ("text_20_deltas", text_stream(20)),
        ("thinking_and_tool", tool_stream()),
    ] {
        g.throughput(Throughput::Bytes(stream.len() as u64));
        // Decoding is included: it is what the relay does per chunk.
        g.bench_function(name, |b| b.iter(|| observe(black_box(&stream))));
    }
    g.finish();
}

/// A blocking Chat Completions answer of the shape the mock and the real API send: text,
/// usage with both details objects.
fn chat_body(text_len: usize) -> Vec<u8> {
    let text = "Here is the change you asked for.\n".repeat(text_len / 34 + 1);
    format!(
        r#"{{"id":"chatcmpl-bench01","object":"chat.completion","created":1767225600,"model":"gpt-4o","choices":[{{"index":0,"message":{{"role":"assistant","content":"{text}","refusal":null,"annotations":[]}},"logprobs":null,"finish_reason":"stop"}}],"usage":{{"prompt_tokens":11,"completion_tokens":16,"total_tokens":27,"prompt_tokens_details":{{"cached_tokens":0,"audio_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}},"service_tier":"default","system_fingerprint":"fp_bench"}}"#
    )
    .into_bytes()
}

/// The blocking observer: what the bridge reads from a whole Chat Completions body.
fn chat_blocking_observer(c: &mut Criterion) {
    let mut g = c.benchmark_group("chat_blocking_observer");
    for (name, body) in [
        ("short_answer", chat_body(16)),
        ("answer_4kb", chat_body(4096)),
    ] {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut observer = ApiKind::ChatCompletions.observer(&RequestInfo::default());
                observer.on_body(black_box(&body));
                observer.take().usage.map(|u| u.output)
            })
        });
    }
    g.finish();
}

fn request_view(c: &mut Criterion) {
    let body = big_request();
    let mut g = c.benchmark_group("request_view");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function(format!("messages_inspect_{}kb", body.len() / 1024), |b| {
        b.iter_batched(
            || (),
            |()| {
                ApiKind::Messages
                    .inspect(black_box(&body))
                    .map(|i| i.stream)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(
    benches,
    sse_decoder,
    messages_observer,
    chat_blocking_observer,
    request_view
);
criterion_main!(benches);
