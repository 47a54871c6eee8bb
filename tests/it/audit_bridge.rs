//! Requests through the bridge end as the exact rows expected in a real database, and the
//! audit CLI (in-process and the built binary) prints them.

use std::sync::Arc;
use std::time::Duration;

use aibridge::audit::{AuditCommand, Filters, InterceptionsArgs, ShowArgs, run};
use aibridge::config::{AuthConfig, Limits};
use aibridge::metrics::{Metrics, new_registry};
use aibridge::provider::{ProviderConfig, ProviderKind};
use aibridge::record::sql::entity::{interception, token_usage, tool_usage, user_prompt};
use aibridge::record::{Pipeline, PipelineConfig, SqlRecorder};
use aibridge::server::{Readiness, app};
use aibridge::upstream::Proxy;
use aibridge::{Authenticator, BridgeOptions, RequestBridge};
use mock_upstream::MockUpstream;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};

use crate::testdb::{TestDb, on_both_backends};

on_both_backends!(
    blocking_and_streaming_requests_become_rows,
    tools_thoughts_cache_and_errors_become_rows
);

/// The bridge on 127.0.0.1:0, recording into `recorder` through the real pipeline.
async fn bridge(db: &TestDb, recorder: SqlRecorder) -> (String, MockUpstream, Pipeline) {
    let mock = MockUpstream::start().await;
    let (queue, pipeline) = Pipeline::start(
        Arc::new(recorder),
        PipelineConfig {
            spool_path: Some(db.path("aibridge.spool")),
            ..crate::support::pipeline_config()
        },
    );
    let mut registry = new_registry();
    let bridge = RequestBridge::new(BridgeOptions {
        providers: vec![ProviderConfig {
            name: "anthropic".into(),
            kind: ProviderKind::Anthropic,
            base_url: mock.url(),
            api_key: None,
            send_actor_headers: false,
            resilience: Default::default(),
            proxy: Proxy::Direct,
        }],
        queue,
        metrics: Metrics::register(&mut registry),
        limits: Limits::default(),
        tools: None,
        max_loop_iterations: 10,
        tool_keepalive: std::time::Duration::from_secs(10),
        skip_injection_models: Vec::new(),
    })
    .unwrap();
    let ready = Readiness::default();
    assert!(ready.mark_ready());
    let router = app(
        bridge,
        Authenticator::new(AuthConfig::default()),
        Arc::new(registry),
        ready,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    crate::support::serve(listener, router);
    (url, mock, pipeline)
}

async fn send(url: &str, stream: bool) -> String {
    let body = json!({
        "model": "claude-test-1",
        "max_tokens": 256,
        "stream": stream,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}]
    });
    let resp = reqwest::Client::new()
        .post(format!("{url}/anthropic/v1/messages"))
        .header("content-type", "application/json")
        .header("x-api-key", "sk-ant-client-key-123456")
        .header("anthropic-version", "2023-06-01")
        .header("user-agent", "claude-cli/2.1.0 (external, cli)")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-aibridge-interception-id"]
        .to_str()
        .unwrap()
        .to_owned();
    resp.text().await.unwrap();
    id
}

async fn blocking_and_streaming_requests_become_rows(db: TestDb) {
    let recorder = db.recorder().await;
    let conn = recorder.connection().clone();
    let (url, _mock, pipeline) = bridge(&db, recorder).await;
    let blocking = send(&url, false).await;
    let streaming = send(&url, true).await;
    // The end record follows the last byte; let the pipeline catch up before reading.
    for _ in 0..3000 {
        let ended = interception::Entity::find()
            .filter(interception::Column::EndedAt.is_not_null())
            .count(&conn)
            .await
            .unwrap();
        if ended == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let report = pipeline.shutdown().await;
    assert_eq!((report.left, report.lost), (0, 0));

    for (id, stream) in [(&blocking, false), (&streaming, true)] {
        let row = interception::Entity::find_by_id(id.clone())
            .one(&conn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                row.initiator_id.as_str(),
                row.provider.as_str(),
                row.provider_name.as_str(),
                row.api.as_str(),
                row.model.as_str(),
                row.streaming,
            ),
            (
                "local",
                "anthropic",
                "anthropic",
                "messages",
                "claude-test-1",
                stream
            )
        );
        assert_eq!(row.client, "claude-code");
        assert_eq!(
            row.user_agent.as_deref(),
            Some("claude-cli/2.1.0 (external, cli)")
        );
        assert_eq!(row.credential_kind, "byok");
        assert_eq!(row.credential_hint.as_deref(), Some("sk-a…3456"));
        assert_eq!(row.outcome.as_deref(), Some("completed"));
        assert_eq!((row.upstream_status, row.attempts), (Some(200), Some(1)));
        assert!(row.ended_at.unwrap() >= row.started_at);
        assert!(!format!("{row:?}").contains("sk-ant-client-key-123456"));

        let prompts = user_prompt::Entity::find()
            .filter(user_prompt::Column::InterceptionId.eq(id.as_str()))
            .all(&conn)
            .await
            .unwrap();
        assert_eq!(prompts.len(), 1);
        assert_eq!(prompts[0].prompt, "hello there");
        let usage = token_usage::Entity::find()
            .filter(token_usage::Column::InterceptionId.eq(id.as_str()))
            .all(&conn)
            .await
            .unwrap();
        assert_eq!(usage.len(), 1);
        assert!(usage[0].provider_response_id.starts_with("msg_mock"));
        assert_eq!(
            (
                usage[0].input_tokens,
                usage[0].output_tokens,
                usage[0].cache_read_input_tokens,
                usage[0].cache_write_input_tokens
            ),
            (11, 5, 0, 0)
        );
        let tools = tool_usage::Entity::find()
            .filter(tool_usage::Column::InterceptionId.eq(id.as_str()))
            .count(&conn)
            .await
            .unwrap();
        assert_eq!(tools, 0);
    }

    // The audit CLI in-process…
    let mut out = Vec::new();
    run(
        AuditCommand::Show(ShowArgs {
            id: streaming.clone(),
            json: true,
        }),
        &db.url,
        &mut out,
    )
    .await
    .unwrap();
    let shown: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(shown["interception"]["streaming"], true);
    assert_eq!(shown["prompts"][0]["prompt"], "hello there");
    assert_eq!(shown["token_usages"][0]["output_tokens"], 5);

    let mut out = Vec::new();
    run(
        AuditCommand::Interceptions(InterceptionsArgs {
            filters: Filters::default(),
            limit: 10,
            cursor: None,
            json: false,
        }),
        &db.url,
        &mut out,
    )
    .await
    .unwrap();
    let table = String::from_utf8(out).unwrap();
    assert!(
        table.contains(&blocking) && table.contains(&streaming),
        "{table}"
    );

    // …and the built binary, configured by the environment only.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_aibridge"))
        .args(["audit", "interceptions", "--json"])
        .env("AIBRIDGE_DATABASE_URL", &db.url)
        .env_remove("AIBRIDGE_CONFIG")
        .current_dir(db.dir.path())
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let ids: Vec<&str> = listed["interceptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![streaming.as_str(), blocking.as_str()]);
    assert_eq!(listed["interceptions"][0]["input_tokens"], 11);
    assert_eq!(listed["next_cursor"], Value::Null);
}

/// Sends `prompt` (with two client tools declared) and returns the interception id and status.
async fn send_prompt(url: &str, prompt: &str, stream: bool) -> (String, u16) {
    let body = json!({
        "model": "claude-test-1",
        "max_tokens": 256,
        "stream": stream,
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": prompt}]
    });
    let resp = reqwest::Client::new()
        .post(format!("{url}/anthropic/v1/messages"))
        .header("x-api-key", "sk-ant-client-key-123456")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let id = resp.headers()["x-aibridge-interception-id"]
        .to_str()
        .unwrap()
        .to_owned();
    resp.text().await.unwrap();
    (id, status)
}

/// `aibridge audit show --json` of one interception, without the ids and timestamps that
/// differ per run.
async fn shown(db: &TestDb, id: &str) -> Value {
    let mut out = Vec::new();
    run(
        AuditCommand::Show(ShowArgs {
            id: id.to_owned(),
            json: true,
        }),
        &db.url,
        &mut out,
    )
    .await
    .unwrap();
    let mut v: Value = serde_json::from_slice(&out).unwrap();
    fn strip(v: &mut Value) {
        match v {
            Value::Object(o) => {
                for k in [
                    "id",
                    "interception_id",
                    "created_at",
                    "started_at",
                    "ended_at",
                ] {
                    o.remove(k);
                }
                o.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

/// What `audit show --json` prints for one of the requests below.
fn expected_show(stream: bool, outcome: (&str, u16, Value), rows: Value) -> Value {
    let (outcome, status, ended_metadata) = outcome;
    let mut v = json!({
        "interception": {"initiator_id": "local", "provider": "anthropic",
            "provider_name": "anthropic", "api": "messages", "model": "claude-test-1",
            "client": "unknown", "user_agent": null, "client_session_id": null,
            "credential_kind": "byok", "credential_hint": "sk-a…3456", "streaming": stream,
            "metadata": {}, "attempts": 1, "outcome": outcome, "upstream_status": status,
            "ended_metadata": ended_metadata},
        "prompts": [], "token_usages": [], "tool_usages": [], "thoughts": []
    });
    v.as_object_mut()
        .unwrap()
        .extend(rows.as_object().unwrap().clone());
    v
}

fn prompt_row(response_id: &str, prompt: &str) -> Value {
    json!({"prompt": prompt, "metadata": {}, "provider_response_id": response_id})
}

fn usage_row(id: &str, tokens: [i64; 4], metadata: Value) -> Value {
    let [input, output, cache_read, cache_write] = tokens;
    json!({"provider_response_id": id, "input_tokens": input, "output_tokens": output,
        "cache_read_input_tokens": cache_read, "cache_write_input_tokens": cache_write,
        "metadata": metadata})
}

/// Both cache TTLs at zero, as the mock reports them.
fn no_cache_writes() -> Value {
    json!({"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0})
}

async fn tools_thoughts_cache_and_errors_become_rows(db: TestDb) {
    let recorder = db.recorder().await;
    let conn = recorder.connection().clone();
    let (url, mock, pipeline) = bridge(&db, recorder).await;
    let tool = r#"[[tool:get_weather {"city":"Paris"}]]"#;
    let mut sent = Vec::new();
    for stream in [false, true] {
        for prompt in [
            tool,
            "[[thinking]] think",
            "[[cached:7]] again",
            "[[status:400]]",
        ] {
            sent.push((prompt, stream, send_prompt(&url, prompt, stream).await));
        }
    }
    // Cache writes and server tool use, from the fixtures.
    mock.enqueue(mock_upstream::MockResponse::json_fixture(
        200,
        "anthropic/cache_usage.json",
    ));
    sent.push((
        "cache_usage",
        false,
        send_prompt(&url, "cache", false).await,
    ));
    mock.enqueue(mock_upstream::MockResponse::sse_fixture(
        "anthropic/web_search.sse",
    ));
    sent.push(("web_search", true, send_prompt(&url, "search", true).await));
    for _ in 0..3000 {
        let ended = interception::Entity::find()
            .filter(interception::Column::EndedAt.is_not_null())
            .count(&conn)
            .await
            .unwrap();
        if ended == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let report = pipeline.shutdown().await;
    assert_eq!((report.left, report.lost), (0, 0));

    let refused = r#"{"type":"error","error":{"type":"invalid_request_error","message":"Mock upstream error for [[status:400]]."},"request_id":"req_mock_error"}"#;
    let completed = || ("completed", 200, json!({}));
    for (prompt, stream, (id, status)) in sent {
        // Mock ids count up per request: tool calls take one each, a refused request none.
        let n = |k: u32| format!("msg_mock{:06}", if stream { k + 4 } else { k });
        let want = match prompt {
            "[[status:400]]" => expected_show(
                stream,
                ("upstream_error", 400, json!({"error": refused})),
                json!({"prompts": [prompt_row("", prompt)]}),
            ),
            "[[thinking]] think" => expected_show(
                stream,
                completed(),
                json!({"prompts": [prompt_row(&n(3), prompt)],
                    "token_usages": [usage_row(&n(3), [11, 7, 0, 0], no_cache_writes())],
                    "thoughts": [{"content": "Mock thinking about: [[thinking]] think",
                        "metadata": {"source": "thinking"}}]}),
            ),
            "[[cached:7]] again" => expected_show(
                stream,
                completed(),
                json!({"prompts": [prompt_row(&n(4), prompt)],
                    "token_usages": [usage_row(&n(4), [11, 5, 7, 0], no_cache_writes())]}),
            ),
            "cache_usage" => {
                let id = "msg_01FixCacheUsage00000001";
                expected_show(
                    stream,
                    completed(),
                    json!({"prompts": [prompt_row(id, "cache")],
                        "token_usages": [usage_row(id, [12, 40, 1800, 250],
                            json!({"ephemeral_5m_input_tokens": 250, "ephemeral_1h_input_tokens": 0}))]}),
                )
            }
            "web_search" => {
                let id = "msg_01FixWebSearch000000001";
                expected_show(
                    stream,
                    completed(),
                    json!({"prompts": [prompt_row(id, "search")],
                        "token_usages": [usage_row(id, [2100, 310, 0, 600],
                            json!({"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 600,
                                "web_search_requests": 1}))],
                        "tool_usages": [{"provider_response_id": id,
                            "provider_tool_call_id": "srvtoolu_01FixWebSearch00001",
                            "server_url": null, "tool": "web_search",
                            "input": {"query": "example release notes"}, "injected": false,
                            "invocation_error": null, "metadata": {"type": "server_tool_use"}}]}),
                )
            }
            _ => expected_show(
                stream,
                completed(),
                json!({"prompts": [prompt_row(&n(1), prompt)],
                    "token_usages": [usage_row(&n(1), [11, 3, 0, 0], no_cache_writes())],
                    "tool_usages": [{"provider_response_id": n(1),
                        "provider_tool_call_id": format!("toolu_mock{:06}", if stream { 6 } else { 2 }),
                        "server_url": null, "tool": "get_weather", "input": {"city": "Paris"},
                        "injected": false, "invocation_error": null, "metadata": {}}]}),
            ),
        };
        let expected_status = if prompt == "[[status:400]]" { 400 } else { 200 };
        assert_eq!(status, expected_status, "{prompt} stream={stream}");
        assert_eq!(shown(&db, &id).await, want, "{prompt} stream={stream}");
    }
}
