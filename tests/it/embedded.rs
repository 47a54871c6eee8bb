//! `RequestBridge` mounted inside someone else's axum app, the way a platform embeds it: the
//! platform's own layer authenticates and puts the `Actor` in the request extensions.

use std::sync::Arc;

use aibridge::actor::Actor;
use aibridge::config::Limits;
use aibridge::metrics::{Metrics, new_registry};
use aibridge::provider::{ProviderConfig, ProviderKind};
use aibridge::record::{MemoryRecorder, Pipeline, PipelineConfig};
use aibridge::upstream::Proxy;
use aibridge::{BridgeOptions, RequestBridge};
use axum::Router;
use axum::routing::get;
use mock_upstream::MockUpstream;
use serde_json::{Value, json};

use crate::openai_chat::normalized;

/// Serves `router` on 127.0.0.1:0 and returns its base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    url
}

/// A bridge recording into `recorder`, and its pipeline (keep it alive while recording).
fn bridge(mock: &MockUpstream, recorder: &MemoryRecorder) -> (RequestBridge, Pipeline) {
    let (queue, pipeline) = Pipeline::start(Arc::new(recorder.clone()), PipelineConfig::default());
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
        metrics: Metrics::register(&mut new_registry()),
        limits: Limits::default(),
        tools: None,
        max_loop_iterations: 10,
        skip_injection_models: Vec::new(),
        tool_keepalive: std::time::Duration::from_secs(10),
    })
    .unwrap();
    (bridge, pipeline)
}

fn body() -> String {
    json!({"model": "claude-test-1", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
        .to_string()
}

#[tokio::test]
async fn mounted_with_nest_service_under_a_platform_layer() {
    let mock = MockUpstream::start().await;
    let recorder = MemoryRecorder::new();
    let mut actor = Actor::new("platform-user-7");
    actor.metadata.insert("org".into(), "acme".into());
    let (bridge, _pipeline) = bridge(&mock, &recorder);
    let router = Router::new()
        .route("/platform/health", get(|| async { "platform ok" }))
        .nest_service("/ai", bridge)
        .layer(axum::Extension(actor));
    let url = serve(router).await;
    let http = reqwest::Client::new();

    assert_eq!(
        http.get(format!("{url}/platform/health"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "platform ok"
    );
    let resp = http
        .post(format!("{url}/ai/anthropic/v1/messages"))
        .header("x-api-key", "sk-ant-platform-key-0001")
        .body(body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id: uuid::Uuid = resp.headers()["x-aibridge-interception-id"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // Interception ids are UUIDv7: they sort by time.
    assert_eq!(id.get_version_num(), 7);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["content"][0]["text"], "Mock answer: hi");
    // The mount prefix is not the upstream's business.
    assert_eq!(mock.requests()[0].path_and_query, "/v1/messages");

    let records = loop {
        let records: Vec<_> = recorder
            .records()
            .into_iter()
            .filter(|r| r.interception_id() == id)
            .collect();
        if records.len() == 4 {
            break records;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // Every record id is a UUIDv7 too.
    for r in &records {
        let v = serde_json::to_value(r).unwrap();
        let rid: uuid::Uuid = v["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(rid.get_version_num(), 7, "{v}");
    }
    let started = &normalized(&records)[0];
    assert_eq!(started["initiator_id"], "platform-user-7");
    assert_eq!(
        started["metadata"],
        json!({"actor_metadata": {"org": "acme"}})
    );
    assert_eq!(started["credential_kind"], "byok");
}

#[tokio::test]
async fn mounted_without_an_actor_every_request_is_401() {
    let mock = MockUpstream::start().await;
    let recorder = MemoryRecorder::new();
    let (bridge, _pipeline) = bridge(&mock, &recorder);
    let router = Router::new().nest_service("/ai", bridge);
    let url = serve(router).await;
    let resp = reqwest::Client::new()
        .post(format!("{url}/ai/anthropic/v1/messages"))
        .header("x-api-key", "sk-ant-platform-key-0001")
        .body(body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v,
        json!({"type": "error", "error": {"type": "authentication_error",
            "message": "no actor: this request is not authenticated"}})
    );
    assert!(mock.requests().is_empty());
    assert!(recorder.records().is_empty());
}
