//! SIGTERM under load, against the built binary: it stops accepting, lets short requests
//! finish, cancels the rest after the grace period with a clean error in their API's format,
//! writes every record, and exits 0.

use std::time::Duration;

use aibridge::record::sql::entity::interception;
use futures_util::StreamExt;
use mock_upstream::{MockBody, MockResponse, MockUpstream, fixture};
use sea_orm::EntityTrait;
use serde_json::json;

use crate::support::binary::Served;

enum Ending {
    Completed,
    StreamError,
    ErrorResponse(u16),
}

async fn stream_request(http: reqwest::Client, url: String) -> (String, Ending) {
    let resp = http
        .post(format!("{url}/anthropic/v1/messages"))
        .json(
            &json!({"model": "claude-s", "max_tokens": 64, "stream": true,
            "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-aibridge-interception-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut text = String::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        // A clean end: the body finishes, never a broken connection.
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    let last = text
        .trim_end()
        .rsplit("\n\n")
        .next()
        .unwrap_or("")
        .to_owned();
    let ending = if last.contains("message_stop") {
        Ending::Completed
    } else {
        assert!(last.starts_with("event: error\ndata: "), "{text}");
        assert!(last.contains("shut down"), "{last}");
        Ending::StreamError
    };
    (id, ending)
}

async fn blocking_request(http: reqwest::Client, url: String) -> (String, Ending) {
    let resp = http
        .post(format!("{url}/openai/v1/chat/completions"))
        .json(&json!({"model": "gpt-s", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let id = resp
        .headers()
        .get("x-aibridge-interception-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "server_error", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("shutting down")
    );
    (id.unwrap_or_default(), Ending::ErrorResponse(status))
}

#[tokio::test]
async fn sigterm_finishes_short_requests_cancels_long_ones_and_loses_no_record() {
    let mock = MockUpstream::start().await;
    let transcript = fixture("anthropic/simple_text.sse");
    for i in 0..12 {
        // Half finish in a moment, half would take minutes.
        let delay = if i % 2 == 0 { 10 } else { 20_000 };
        mock.enqueue(MockResponse::sse_with_delay(
            transcript.clone(),
            Duration::from_millis(delay),
        ));
    }
    for _ in 0..2 {
        mock.enqueue_for_path(
            "/v1/chat/completions",
            MockResponse::fault(MockBody::StallBeforeHeaders(Duration::from_secs(600))),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("a.db").display());
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndatabase_url = \"{db}\"\nshutdown_grace = \"2s\"\n\
         [recording]\nspool_dir = \"{spool}\"\n\
         [[providers]]\nname = \"anthropic\"\nkind = \"anthropic\"\nbase_url = \"{up}\"\n\
         [[providers]]\nname = \"openai\"\nkind = \"openai\"\nbase_url = \"{up}/v1\"\n",
        spool = dir.path().display(),
        up = mock.url(),
    );
    let mut served = Served::start(dir.path(), &config, &[]);
    let http = reqwest::Client::new();
    let ready = http
        .get(format!("{}/readyz", served.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    let mut tasks = Vec::new();
    for _ in 0..12 {
        tasks.push(tokio::spawn(stream_request(
            http.clone(),
            served.url.clone(),
        )));
    }
    for _ in 0..2 {
        tasks.push(tokio::spawn(blocking_request(
            http.clone(),
            served.url.clone(),
        )));
    }
    // Every request has reached the upstream: all are accepted and in flight.
    let got = mock.wait_for_requests(14, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 14);
    served.terminate();

    let mut ids = Vec::new();
    let (mut completed, mut cut, mut refused) = (0, 0, 0);
    for task in tasks {
        let (id, ending) = task.await.unwrap();
        match ending {
            Ending::Completed => completed += 1,
            Ending::StreamError => cut += 1,
            Ending::ErrorResponse(status) => {
                assert_eq!(status, 503);
                refused += 1;
            }
        }
        ids.push(id);
    }
    assert_eq!((completed, cut, refused), (6, 6, 2));
    // No new connection is accepted once shutdown began.
    let fresh = reqwest::Client::new();
    assert!(
        fresh
            .get(format!("{}/healthz", served.url))
            .send()
            .await
            .is_err()
    );
    assert_eq!(served.wait(Duration::from_secs(20)).await, Some(0));
    let logs = served.logs();
    assert!(logs.contains("all records written"), "{logs}");

    let conn = sea_orm::Database::connect(&db).await.unwrap();
    let rows = interception::Entity::find().all(&conn).await.unwrap();
    assert_eq!(rows.len(), 14);
    for id in ids.iter().filter(|id| !id.is_empty()) {
        let row = rows.iter().find(|r| &r.id == id).unwrap();
        assert!(row.ended_at.is_some(), "{row:?}");
    }
    let outcomes = |o: &str| {
        rows.iter()
            .filter(|r| r.outcome.as_deref() == Some(o))
            .count()
    };
    assert_eq!(
        (outcomes("completed"), outcomes("failed")),
        (6, 8),
        "{rows:#?}"
    );
}

/// A client that opens a new connection for every request, as a load balancer's probe does.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// Polls `/readyz` on new connections until it answers `want`, or panics after 10 s.
async fn wait_for_readyz(url: &str, want: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = fresh_client()
            .get(format!("{url}/readyz"))
            .send()
            .await
            .map(|r| r.status().as_u16());
        if got.as_ref().ok() == Some(&want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never answered {want}: last {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (at most 20 s) until the process logged `line`.
async fn wait_for_log(served: &Served, line: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !served.logs().contains(line) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {line:?} in the logs:\n{}",
            served.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn plain_config(dir: &std::path::Path, upstream: &str, extra: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\ndatabase_url = \"log\"\n{extra}\n\
         [recording]\nspool_dir = \"{spool}\"\n\
         [[providers]]\nname = \"anthropic\"\nkind = \"anthropic\"\nbase_url = \"{upstream}\"\n",
        spool = dir.display(),
    )
}

#[tokio::test]
async fn during_shutdown_delay_readyz_answers_503_and_requests_are_still_served() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = plain_config(
        dir.path(),
        &mock.url(),
        "shutdown_delay = \"120s\"\nshutdown_grace = \"5s\"",
    );
    let mut served = Served::start(dir.path(), &config, &[]);
    wait_for_readyz(&served.url, 200).await;

    served.terminate();
    // The listener still accepts: a probe on a new connection sees the process leave.
    wait_for_readyz(&served.url, 503).await;
    let probe = fresh_client()
        .get(format!("{}/readyz", served.url))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 503);
    assert_eq!(probe.text().await.unwrap(), "shutting down");
    let health = fresh_client()
        .get(format!("{}/healthz", served.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // A request that arrives in the pre-stop phase is bridged as usual.
    let resp = fresh_client()
        .post(format!("{}/anthropic/v1/messages", served.url))
        .json(&json!({"model": "claude-s", "max_tokens": 64,
            "messages": [{"role": "user", "content": "still there?"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["content"][0]["text"], "Mock answer: still there?");

    // A second signal ends the delay: the process drains and exits long before 120 s.
    served.terminate();
    assert_eq!(served.wait(Duration::from_secs(30)).await, Some(0));
    let logs = served.logs();
    assert!(
        logs.contains("second signal: skipping the rest of shutdown_delay"),
        "{logs}"
    );
}

#[tokio::test]
async fn start_up_that_finishes_after_sigterm_does_not_turn_the_process_ready() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    // An MCP server that never answers: the process stays unready until it was tried
    // (connect_timeout), and SIGTERM arrives before that.
    let config = format!(
        "{}\n[[mcp.servers]]\nname = \"mute\"\ncommand = \"sleep\"\nargs = [\"60\"]\n\
         connect_timeout = \"2s\"\n",
        plain_config(dir.path(), &mock.url(), "shutdown_delay = \"120s\"")
    );
    let mut served = Served::start(dir.path(), &config, &[]);
    let starting = fresh_client()
        .get(format!("{}/readyz", served.url))
        .send()
        .await
        .unwrap();
    assert_eq!(starting.status(), 503);
    served.terminate();
    wait_for_log(&served, "still accepting for shutdown_delay").await;
    wait_for_log(&served, "every MCP server tried").await;
    let logs = served.logs();
    assert!(
        logs.contains("every MCP server tried after shutdown began; staying unready"),
        "{logs}"
    );
    let probe = fresh_client()
        .get(format!("{}/readyz", served.url))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 503);
    served.terminate();
    assert_eq!(served.wait(Duration::from_secs(30)).await, Some(0));
}

#[tokio::test]
async fn sigterm_terminates_stdio_mcp_children_before_the_process_exits() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The bridge's child is a shell that would outlive the server's end of input (it sleeps
    // 15 s after the server exits): only terminating it ends it.
    let config = format!(
        "{}\n[[mcp.servers]]\nname = \"s\"\ncommand = \"sh\"\n\
         args = [\"-c\", \"\\\"$0\\\"; sleep 15\", \"{}\"]\n",
        plain_config(dir.path(), &mock.url(), ""),
        crate::mcp_registry::test_server_binary().display()
    );
    let mut served = Served::start(dir.path(), &config, &[]);
    wait_for_readyz(&served.url, 200).await;
    // The injected `pid` tool, called by the bridge's tool loop: the mock quotes its result.
    let resp = fresh_client()
        .post(format!("{}/anthropic/v1/messages", served.url))
        .json(&json!({"model": "claude-s", "max_tokens": 64,
            "messages": [{"role": "user", "content": "[[tool:bmcp_s_pid]]"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    let text = v["content"][0]["text"].as_str().unwrap();
    let pid: u32 = text
        .strip_prefix("Tool result: ")
        .unwrap_or_else(|| panic!("{v}"))
        .parse()
        .unwrap();
    // The shell between the bridge and the server.
    let server_stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let shell: u32 = server_stat
        .rsplit(") ")
        .next()
        .and_then(|rest| rest.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    let shell_stat = std::fs::read_to_string(format!("/proc/{shell}/stat")).unwrap();
    let bridge_pid = served.child.id().to_string();
    assert_eq!(
        shell_stat
            .rsplit(") ")
            .next()
            .and_then(|r| r.split_whitespace().nth(1)),
        Some(bridge_pid.as_str()),
        "the shell is the bridge's child"
    );

    served.terminate();
    assert_eq!(served.wait(Duration::from_secs(30)).await, Some(0));
    // Gone by the time the bridge exited (a zombie waits only for the reaper).
    for child in [shell, pid] {
        let state = std::fs::read_to_string(format!("/proc/{child}/stat")).ok();
        assert!(
            state.as_deref().is_none_or(|s| s.contains(") Z ")),
            "an MCP process outlived the bridge: {state:?}"
        );
    }
}
