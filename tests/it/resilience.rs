//! Upstream faults against the fault-injecting mock: what the client gets, what is recorded,
//! the metrics, and that the next request succeeds. Then the circuit breaker.

use std::time::Duration;

use aibridge::record::{InterceptionEndedRecord, Outcome};
use aibridge::resilience::{BreakerConfig, Resilience, Timeouts};
use bytes::Bytes;
use mock_upstream::{MockBody, MockResponse, fixture, split_sse_events};
use serde_json::{Value, json};

use crate::records_of_kind;
use crate::support::{Setup, TestBridge, interception_id};

const MESSAGES: &str = "/anthropic/v1/messages";

/// Quick retries, a breaker that stays out of the way, short timeouts.
fn policy(retries: u32) -> Resilience {
    Resilience {
        retries,
        backoff: Duration::from_millis(10),
        breaker: BreakerConfig {
            failures: 1000,
            ..BreakerConfig::default()
        },
        timeouts: Timeouts {
            connect: Duration::from_secs(2),
            first_byte: Duration::from_millis(500),
            idle: Duration::from_millis(500),
        },
        ..Resilience::default()
    }
}

async fn bridge(resilience: Resilience) -> TestBridge {
    TestBridge::start_with(Setup {
        resilience,
        ..Default::default()
    })
    .await
}

fn body(model: &str, stream: bool) -> String {
    json!({
        "model": model,
        "max_tokens": 64,
        "stream": stream,
        "messages": [{"role": "user", "content": "hello"}]
    })
    .to_string()
}

pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub text: String,
    pub ended: InterceptionEndedRecord,
    pub records: Vec<aibridge::record::Record>,
}

async fn ask(bridge: &TestBridge, model: &str, stream: bool) -> Answer {
    let resp = bridge.post(MESSAGES, &[], body(model, stream)).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let id = interception_id(&resp);
    let text = resp.text().await.unwrap();
    let records = bridge.records_of(id).await;
    let ended = records_of_kind!(records, InterceptionEnded).remove(0);
    Answer {
        status,
        headers,
        text,
        ended,
        records,
    }
}

/// The next request is answered normally (smart mode).
async fn next_succeeds(bridge: &TestBridge) {
    for stream in [false, true] {
        let a = ask(bridge, "claude-next", stream).await;
        assert_eq!((a.status, a.ended.outcome), (200, Outcome::Completed));
        let done = if stream {
            "message_stop"
        } else {
            "Mock answer: hello"
        };
        assert!(a.text.contains(done), "{}", a.text);
    }
}

/// `aibridge_interceptions_total` for `model`, as (status, count) pairs in exposition order.
fn counted(metrics: &str, model: &str) -> Vec<(String, String)> {
    let model = format!("model=\"{model}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("aibridge_interceptions_total{") && l.contains(&model))
        .filter_map(|l| {
            let status = l.split("status=\"").nth(1)?.split('"').next()?;
            let count = l.rsplit(' ').next()?;
            Some((status.to_owned(), count.to_owned()))
        })
        .collect()
}

/// The model's requests ended exactly once each with these outcomes (`status` label).
/// The counter is bumped right after the end record is queued, so wait for it a little.
async fn assert_counted(bridge: &TestBridge, model: &str, want: &[(&str, &str)]) {
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(s, n)| ((*s).to_owned(), (*n).to_owned()))
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let got = counted(&bridge.metrics().await, model);
        if got == want || tokio::time::Instant::now() >= deadline {
            assert_eq!(got, want, "aibridge_interceptions_total for {model}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn error_type(text: &str) -> String {
    let v: Value = serde_json::from_str(text).unwrap();
    assert_eq!(v["type"], "error", "{text}");
    v["error"]["type"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn rate_limit_is_retried_after_the_wait_the_upstream_asked_for() {
    // The policy's own backoff is 10 ms: only honouring the header makes the retry wait
    // this long.
    for (header, value, asked) in [
        ("retry-after-ms", "600", Duration::from_millis(600)),
        ("retry-after", "1", Duration::from_secs(1)),
    ] {
        let bridge = bridge(policy(2)).await;
        bridge.mock.enqueue(
            MockResponse::json(
                429,
                json!({"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}),
            )
            .with_header(header, value),
        );
        let started = std::time::Instant::now();
        let a = ask(&bridge, "claude-a", false).await;
        let waited = started.elapsed();
        assert_eq!(a.status, 200, "{header}");
        assert_eq!(
            (a.ended.outcome, a.ended.upstream_status, a.ended.attempts),
            (Outcome::Completed, Some(200), 2)
        );
        assert_eq!(bridge.mock.requests().len(), 2);
        // A lower bound only: the request cannot finish before the asked-for wait is over.
        assert!(
            waited >= asked,
            "{header}: {value}, finished after {waited:?}"
        );
        let metrics = bridge.metrics().await;
        assert!(
            metrics.contains(
                "aibridge_upstream_retries_total{provider=\"anthropic\",route=\"messages\"} 1"
            ),
            "{metrics}"
        );
        assert_counted(&bridge, "claude-a", &[("completed", "1")]).await;
        next_succeeds(&bridge).await;
    }
}

#[tokio::test]
async fn server_errors_are_retried_and_the_last_one_relayed_unchanged() {
    let bridge = bridge(policy(2)).await;
    let overloaded =
        json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}});
    bridge.mock.enqueue(MockResponse::json(
        500,
        json!({"type":"error","error":{"type":"api_error","message":"boom"}}),
    ));
    bridge
        .mock
        .enqueue(MockResponse::json(503, overloaded.clone()));
    bridge
        .mock
        .enqueue(MockResponse::json(529, overloaded.clone()));
    let a = ask(&bridge, "claude-a", true).await;
    assert_eq!(a.status, 529);
    assert_eq!(serde_json::from_str::<Value>(&a.text).unwrap(), overloaded);
    assert_eq!(
        (a.ended.outcome, a.ended.upstream_status, a.ended.attempts),
        (Outcome::UpstreamError, Some(529), 3)
    );
    assert_counted(&bridge, "claude-a", &[("upstream_error", "1")]).await;
    next_succeeds(&bridge).await;
}

#[tokio::test]
async fn zero_retries_relays_the_first_failure() {
    let bridge = bridge(policy(0)).await;
    bridge
        .mock
        .enqueue(MockResponse::json(503, "{}").with_header("retry-after", "0"));
    let a = ask(&bridge, "claude-a", false).await;
    assert_eq!((a.status, a.ended.attempts), (503, 1));
    assert_eq!(bridge.mock.requests().len(), 1);
    assert_counted(&bridge, "claude-a", &[("upstream_error", "1")]).await;
    next_succeeds(&bridge).await;
}

#[tokio::test]
async fn a_retry_after_longer_than_the_limit_is_not_waited_for() {
    let bridge = bridge(policy(2)).await;
    bridge
        .mock
        .enqueue(MockResponse::json(429, "{}").with_header("retry-after", "3600"));
    let a = ask(&bridge, "claude-a", false).await;
    assert_eq!((a.status, a.ended.attempts), (429, 1));
    assert_eq!(a.headers["retry-after"], "3600");
    assert_counted(&bridge, "claude-a", &[("upstream_error", "1")]).await;
    next_succeeds(&bridge).await;
}

#[tokio::test]
async fn connection_refused_is_retried_then_a_502_in_the_api_format() {
    // A port nobody listens on, until the upstream comes back on it below.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let bridge = TestBridge::start_with(Setup {
        resilience: policy(1),
        upstream_override: Some(format!("http://{addr}")),
        ..Default::default()
    })
    .await;
    let a = ask(&bridge, "claude-a", true).await;
    assert_eq!(a.status, 502);
    assert_eq!(error_type(&a.text), "api_error");
    assert_eq!(
        (a.ended.outcome, a.ended.upstream_status, a.ended.attempts),
        (Outcome::UpstreamUnavailable, None, 2)
    );
    assert_counted(&bridge, "claude-a", &[("upstream_unavailable", "1")]).await;
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let _upstream = mock_upstream::MockUpstream::serve(listener, Default::default());
    next_succeeds(&bridge).await;
}

#[tokio::test]
async fn reset_before_headers_is_retried_or_reported() {
    let bridge = bridge(policy(1)).await;
    bridge
        .mock
        .enqueue(MockResponse::fault(MockBody::ResetBeforeHeaders));
    let a = ask(&bridge, "claude-a", true).await;
    assert_eq!((a.status, a.ended.attempts), (200, 2));
    assert!(a.text.contains("message_stop"), "{}", a.text);
    assert_counted(&bridge, "claude-a", &[("completed", "1")]).await;

    let bridge = crate::resilience::bridge(policy(0)).await;
    bridge
        .mock
        .enqueue(MockResponse::fault(MockBody::ResetBeforeHeaders));
    let a = ask(&bridge, "claude-a", false).await;
    assert_eq!(a.status, 502);
    assert_eq!(error_type(&a.text), "api_error");
    assert_eq!(
        (a.ended.outcome, a.ended.attempts),
        (Outcome::UpstreamUnavailable, 1)
    );
    assert_counted(&bridge, "claude-a", &[("upstream_unavailable", "1")]).await;
    next_succeeds(&bridge).await;
}

#[tokio::test]
async fn a_stall_before_the_first_byte_times_out_without_a_retry() {
    let bridge = bridge(policy(2)).await;
    bridge
        .mock
        .enqueue(MockResponse::fault(MockBody::StallBeforeHeaders(
            Duration::from_secs(30),
        )));
    let a = ask(&bridge, "claude-a", true).await;
    assert_eq!(a.status, 502);
    let v: Value = serde_json::from_str(&a.text).unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no response within"),
        "{v}"
    );
    assert_eq!(
        (a.ended.outcome, a.ended.attempts),
        (Outcome::UpstreamUnavailable, 1)
    );
    assert_eq!(bridge.mock.requests().len(), 1);
    assert_counted(&bridge, "claude-a", &[("upstream_unavailable", "1")]).await;
    next_succeeds(&bridge).await;
}

/// The first `keep` events of a fixture at once, then the rest after `delay`.
fn stalling_stream(keep: usize, delay: Duration) -> MockResponse {
    let chunks: Vec<(Duration, Bytes)> = split_sse_events(&fixture("anthropic/simple_text.sse"))
        .into_iter()
        .enumerate()
        .map(|(i, e)| (if i == keep { delay } else { Duration::ZERO }, e))
        .collect();
    let mut resp = MockResponse::sse("");
    resp.body = MockBody::Chunks(chunks);
    resp
}

fn assert_stream_error(a: &Answer, fragment: &str) {
    assert_eq!(a.status, 200);
    assert!(a.text.starts_with("event: message_start"), "{}", a.text);
    let last = a.text.trim_end().rsplit("\n\n").next().unwrap();
    assert!(last.starts_with("event: error\ndata: "), "{last}");
    assert!(last.contains(fragment), "{last}");
    assert!(!a.text.contains("message_stop"));
    assert_eq!(a.ended.outcome, Outcome::UpstreamUnavailable);
    // The usage seen before the fault is kept.
    let usage = records_of_kind!(a.records, TokenUsage);
    assert_eq!(usage.len(), 1, "{:?}", a.records);
    assert_eq!(usage[0].input_tokens, 25);
}

#[tokio::test]
async fn a_stall_mid_stream_ends_with_an_error_event_after_the_idle_timeout() {
    let bridge = bridge(policy(2)).await;
    bridge
        .mock
        .enqueue(stalling_stream(2, Duration::from_secs(30)));
    let a = ask(&bridge, "claude-a", true).await;
    assert_stream_error(&a, "stalled");
    assert_eq!(a.ended.attempts, 1);
    assert_counted(&bridge, "claude-a", &[("upstream_unavailable", "1")]).await;
    next_succeeds(&bridge).await;
}

#[tokio::test]
async fn a_stream_cut_mid_way_ends_with_an_error_event() {
    let bridge = bridge(policy(2)).await;
    bridge.mock.enqueue(MockResponse::sse_fixture_cut_after(
        "anthropic/simple_text.sse",
        3,
    ));
    let a = ask(&bridge, "claude-a", true).await;
    assert_stream_error(&a, "broke off");
    assert_counted(&bridge, "claude-a", &[("upstream_unavailable", "1")]).await;
    next_succeeds(&bridge).await;
}

#[tokio::test]
async fn a_huge_blocking_body_is_capped_not_buffered() {
    let cap = 1024 * 1024;
    let bridge = TestBridge::start_with(Setup {
        resilience: policy(0),
        limits: aibridge::config::Limits {
            max_response_bytes: cap,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    // 16 GiB offered from one shared 1 MiB buffer: the mock does not hold it either.
    let piece = Bytes::from(vec![b' '; 1024 * 1024]);
    let mut resp = MockResponse::json(200, "");
    resp.body = MockBody::Chunks(
        (0..16 * 1024)
            .map(|_| (Duration::ZERO, piece.clone()))
            .collect(),
    );
    bridge.mock.enqueue(resp);
    let a = ask(&bridge, "claude-a", false).await;
    assert_eq!(a.status, 502);
    assert!(
        a.text.contains(&format!("exceeds {cap} bytes")),
        "{}",
        a.text
    );
    assert_eq!(a.ended.outcome, Outcome::UpstreamUnavailable);
    assert_counted(&bridge, "claude-a", &[("upstream_unavailable", "1")]).await;
    next_succeeds(&bridge).await;
}

fn breaker_policy(open_for: Duration) -> Resilience {
    Resilience {
        breaker: BreakerConfig {
            failures: 2,
            open_for,
            ..BreakerConfig::default()
        },
        ..policy(0)
    }
}

fn metric(metrics: &str, name: &str, model: &str) -> String {
    let prefix = format!(
        "aibridge_circuit_breaker_{name}{{provider=\"anthropic\",endpoint=\"messages\",model=\"{model}\"}} "
    );
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or("absent")
        .to_owned()
}

#[tokio::test]
async fn the_breaker_opens_rejects_without_calling_upstream_and_isolates_models() {
    let bridge = bridge(breaker_policy(Duration::from_secs(600))).await;
    for _ in 0..2 {
        bridge.mock.enqueue(MockResponse::json(503, "{}"));
        assert_eq!(ask(&bridge, "claude-sick", false).await.status, 503);
    }
    for stream in [false, true] {
        let a = ask(&bridge, "claude-sick", stream).await;
        assert_eq!(a.status, 503);
        assert_eq!(error_type(&a.text), "overloaded_error");
        assert!(a.text.contains("circuit breaker open"), "{}", a.text);
        let wait: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=600).contains(&wait), "{wait}");
        assert_eq!(
            (a.ended.outcome, a.ended.upstream_status, a.ended.attempts),
            (Outcome::Rejected, None, 0)
        );
    }
    assert_eq!(bridge.mock.requests().len(), 2);
    // Another model on the same endpoint has its own circuit.
    next_succeeds(&bridge).await;
    let m = bridge.metrics().await;
    assert_eq!(metric(&m, "state", "claude-sick"), "1");
    assert_eq!(metric(&m, "trips_total", "claude-sick"), "1");
    assert_eq!(metric(&m, "rejects_total", "claude-sick"), "2");
    assert_eq!(metric(&m, "state", "claude-next"), "0");
}

#[tokio::test]
async fn a_half_open_probe_reopens_on_failure_and_closes_on_success() {
    let open_for = Duration::from_millis(200);
    let bridge = bridge(breaker_policy(open_for)).await;
    for _ in 0..2 {
        bridge.mock.enqueue(MockResponse::json(529, "{}"));
        assert_eq!(ask(&bridge, "claude-m", false).await.status, 529);
    }
    assert_eq!(
        ask(&bridge, "claude-m", false).await.ended.outcome,
        Outcome::Rejected
    );
    // The probe fails: open again at once.
    tokio::time::sleep(open_for).await;
    bridge.mock.enqueue(MockResponse::json(529, "{}"));
    let probe = ask(&bridge, "claude-m", false).await;
    assert_eq!((probe.status, probe.ended.attempts), (529, 1));
    assert_eq!(
        ask(&bridge, "claude-m", false).await.ended.outcome,
        Outcome::Rejected
    );
    assert_eq!(
        metric(&bridge.metrics().await, "trips_total", "claude-m"),
        "2"
    );
    // The next probe succeeds: closed, and requests flow.
    tokio::time::sleep(open_for).await;
    for _ in 0..3 {
        let a = ask(&bridge, "claude-m", true).await;
        assert_eq!((a.status, a.ended.outcome), (200, Outcome::Completed));
    }
    assert_eq!(metric(&bridge.metrics().await, "state", "claude-m"), "0");
    assert_eq!(bridge.mock.requests().len(), 6);
}

#[tokio::test]
async fn an_open_circuit_answers_in_the_openai_format_too() {
    let bridge = bridge(breaker_policy(Duration::from_secs(600))).await;
    let chat = |model: &str| {
        bridge.post(
            "/openai/v1/chat/completions",
            &[],
            json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        )
    };
    for _ in 0..2 {
        bridge.mock.enqueue(MockResponse::json(503, "{}"));
        assert_eq!(chat("gpt-sick").await.status(), 503);
    }
    let resp = chat("gpt-sick").await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        (v["error"]["type"].as_str(), v["error"]["code"].as_str()),
        (Some("server_error"), Some("overloaded"))
    );
    assert_eq!(bridge.mock.requests().len(), 2);
}

#[tokio::test]
async fn the_api_dump_holds_each_attempt_and_the_stream_as_received() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = bridge(Resilience {
        dump_dir: Some(dir.path().to_path_buf()),
        ..policy(1)
    })
    .await;
    bridge.mock.enqueue(MockResponse::json(503, "{}"));
    bridge
        .mock
        .enqueue(MockResponse::sse_fixture("anthropic/simple_text.sse"));
    let sent = body("claude-d", true);
    let resp = bridge
        .post(
            MESSAGES,
            &[("x-api-key", "sk-ant-client-0123456789abcdef")],
            sent.clone(),
        )
        .await;
    let id = interception_id(&resp);
    let relayed = resp.bytes().await.unwrap();
    bridge.records_of(id).await;
    let path = dir.path().join(format!("{id}-anthropic-messages.http"));
    let dump = std::fs::read(&path).unwrap();
    let text = String::from_utf8_lossy(&dump);
    assert_eq!(
        text.matches(&format!(">>> POST {}/v1/messages", bridge.mock.url()))
            .count(),
        2
    );
    assert_eq!(text.matches(&sent).count(), 2);
    assert!(text.contains("x-api-key: sk-a…cdef"), "{text}");
    assert!(!text.contains("0123456789"));
    assert!(
        text.contains("<<< 503") && text.contains("### retrying in"),
        "{text}"
    );
    let transcript = fixture("anthropic/simple_text.sse");
    assert!(dump.ends_with(&transcript));
    assert_eq!(relayed, transcript);
}

async fn get_models(bridge: &TestBridge) -> reqwest::Response {
    bridge
        .http
        .get(format!("{}/anthropic/v1/models", bridge.url))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_passthrough_stall_before_the_first_byte_is_a_502_in_the_api_format() {
    let bridge = bridge(policy(0)).await;
    bridge.mock.enqueue_for_path(
        "/v1/models",
        MockResponse::fault(MockBody::StallBeforeHeaders(Duration::from_secs(30))),
    );
    let resp = get_models(&bridge).await;
    assert_eq!(resp.status(), 502);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "api_error", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("no response within 500ms"), "{v}");
    let metrics = bridge.metrics().await;
    assert!(
        metrics.contains(
            "aibridge_passthrough_total{provider=\"anthropic\",method=\"GET\",status=\"0\"} 1"
        ),
        "{metrics}"
    );
    // The next passthrough is answered.
    let resp = get_models(&bridge).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert!(v["data"].is_array(), "{v}");
}

#[tokio::test]
async fn a_passthrough_body_that_stalls_is_cut_after_the_idle_timeout() {
    let bridge = bridge(policy(0)).await;
    let mut stalled = MockResponse::json(200, "");
    stalled.body = MockBody::Chunks(vec![
        (Duration::ZERO, Bytes::from_static(b"{\"data\":[")),
        (Duration::from_secs(30), Bytes::from_static(b"]}")),
    ]);
    bridge.mock.enqueue_for_path("/v1/models", stalled);
    let resp = get_models(&bridge).await;
    assert_eq!(resp.status(), 200);
    // The head and the first chunk came; the rest never does, and the bridge ends the
    // body with an error after `idle` (500 ms) instead of holding it for the upstream's 30 s.
    let read = tokio::time::timeout(Duration::from_secs(10), resp.bytes()).await;
    let body = read.expect("the body ends well before the upstream's 30 s");
    assert!(body.is_err(), "a cut body must not look complete: {body:?}");
    let resp = get_models(&bridge).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.json::<Value>().await.unwrap()["data"].is_array());
}
