//! Actors and credentials: single user, virtual keys, trusted headers, centralized keys.

use aibridge::actor::hash_key;
use aibridge::config::{AuthConfig, VirtualKey};
use serde_json::{Value, json};

use crate::records_of_kind;
use crate::support::{Setup, TestBridge, interception_id};

const MESSAGES: &str = "/anthropic/v1/messages";

fn body() -> String {
    json!({"model": "claude-test-1", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}).to_string()
}

fn stream_body() -> String {
    json!({"model": "claude-test-1", "max_tokens": 5, "stream": true,
        "messages": [{"role": "user", "content": "hi"}]})
    .to_string()
}

/// The blocking and the streaming request.
fn bodies() -> [(bool, String); 2] {
    [(false, body()), (true, stream_body())]
}

fn keyed(trusted_headers: bool) -> AuthConfig {
    AuthConfig {
        trusted_headers,
        keys: vec![VirtualKey {
            actor_id: "alice".into(),
            sha256: hash_key("vk-alice-0123456789"),
            metadata: [("team".to_owned(), "platform".to_owned())].into(),
        }],
    }
}

#[tokio::test]
async fn virtual_keys_resolve_actors_and_never_go_upstream() {
    let bridge = TestBridge::start_with(Setup {
        auth: keyed(false),
        anthropic_key: Some("sk-ant-central-abcdefgh".into()),
        ..Default::default()
    })
    .await;
    for header in [
        ("x-api-key", "vk-alice-0123456789"),
        ("authorization", "Bearer vk-alice-0123456789"),
    ] {
        for (stream, body) in bodies() {
            // Trusted headers are off: the actor header is ignored, the key decides.
            let headers = [header, ("x-aibridge-actor-id", "mallory")];
            let resp = bridge.post(MESSAGES, &headers, body).await;
            assert_eq!(resp.status(), 200);
            let records = bridge.records_of(interception_id(&resp)).await;
            let s = &records_of_kind!(records, Interception)[0];
            assert_eq!((s.initiator_id.as_str(), s.streaming), ("alice", stream));
            assert_eq!(s.metadata["actor_metadata"], json!({"team": "platform"}));
            assert_eq!(
                (&*s.credential_kind, s.credential_hint.as_deref()),
                ("centralized", Some("sk-a…efgh"))
            );
        }
    }
    assert_eq!(bridge.mock.requests().len(), 4);
    for got in bridge.mock.requests() {
        // The centralized key replaces whatever the client sent.
        assert_eq!(got.header("x-api-key"), Some("sk-ant-central-abcdefgh"));
        assert_eq!(got.header("authorization"), None);
        assert_eq!(got.header("x-aibridge-actor-id"), None);
    }
}

#[tokio::test]
async fn missing_or_wrong_keys_get_401_in_the_providers_format() {
    let bridge = TestBridge::start_with(Setup {
        auth: keyed(false),
        ..Default::default()
    })
    .await;
    for headers in [vec![], vec![("x-api-key", "vk-wrong")]] {
        for (_, body) in bodies() {
            let resp = bridge.post(MESSAGES, &headers, body).await;
            assert_eq!(resp.status(), 401);
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], "authentication_error");
            assert!(!v.to_string().contains("vk-wrong"));
        }
    }
    let resp = bridge.post("/openai/v1/chat/completions", &[], "{}").await;
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key");
    // Passthrough routes are guarded too.
    let resp = bridge
        .http
        .get(format!("{}/anthropic/v1/models", bridge.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(bridge.mock.requests().is_empty());
    assert!(bridge.recorder.records().is_empty());
    // Every refusal is counted: five under /anthropic/ (four messages: two keys, blocking
    // and streaming; one models), one under /openai/.
    let metrics = bridge.metrics().await;
    let count = |provider: &str| {
        let prefix = format!(
            "aibridge_rejected_requests_total{{provider=\"{provider}\",reason=\"unauthenticated\"}} "
        );
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or("absent")
            .to_owned()
    };
    assert_eq!(
        (count("anthropic"), count("openai")),
        ("5".to_owned(), "1".to_owned()),
        "{metrics}"
    );
}

#[tokio::test]
async fn trusted_headers_name_the_actor_and_the_client_key_is_forwarded() {
    let bridge = TestBridge::start_with(Setup {
        auth: keyed(true),
        ..Default::default()
    })
    .await;
    let resp = bridge
        .post(
            MESSAGES,
            &[
                ("x-aibridge-actor-id", "bob"),
                ("x-aibridge-actor-metadata-email", "bob@example.com"),
                ("x-api-key", "sk-ant-bobs-own-key-1234"),
            ],
            body(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let records = bridge.records_of(interception_id(&resp)).await;
    let s = &records_of_kind!(records, Interception)[0];
    assert_eq!(s.initiator_id, "bob");
    assert_eq!(
        s.metadata["actor_metadata"],
        json!({"email": "bob@example.com"})
    );
    assert_eq!(s.credential_kind, "byok");
    let got = &bridge.mock.requests()[0];
    assert_eq!(got.header("x-api-key"), Some("sk-ant-bobs-own-key-1234"));
    assert_eq!(got.header("x-aibridge-actor-id"), None);
    assert_eq!(got.header("x-aibridge-actor-metadata-email"), None);
}

#[tokio::test]
async fn actor_headers_go_upstream_only_when_configured() {
    let bridge = TestBridge::start_with(Setup {
        auth: keyed(false),
        send_actor_headers: true,
        ..Default::default()
    })
    .await;
    let resp = bridge
        .post(MESSAGES, &[("x-api-key", "vk-alice-0123456789")], body())
        .await;
    assert_eq!(resp.status(), 200);
    let got = &bridge.mock.requests()[0];
    assert_eq!(got.header("x-aibridge-actor-id"), Some("alice"));
    assert_eq!(
        got.header("x-aibridge-actor-metadata-team"),
        Some("platform")
    );
    // A virtual key is the bridge's, not the provider's: it is not forwarded.
    assert_eq!(got.header("x-api-key"), None);
}

#[tokio::test]
async fn single_user_mode_records_local() {
    let bridge = TestBridge::start().await;
    let resp = bridge.post(MESSAGES, &[], body()).await;
    let records = bridge.records_of(interception_id(&resp)).await;
    let s = &records_of_kind!(records, Interception)[0];
    assert_eq!(
        (s.initiator_id.as_str(), &*s.credential_kind),
        ("local", "none")
    );
}

/// A sidecar behind an authenticating platform: trusted headers alone, no virtual keys.
#[tokio::test]
async fn trusted_header_only_mode_needs_the_header() {
    let bridge = TestBridge::start_with(Setup {
        auth: AuthConfig {
            trusted_headers: true,
            keys: Vec::new(),
        },
        ..Default::default()
    })
    .await;
    for (stream, body) in bodies() {
        let resp = bridge
            .post(
                MESSAGES,
                &[("x-api-key", "sk-ant-own-key-5678")],
                body.clone(),
            )
            .await;
        assert_eq!(resp.status(), 401, "stream={stream}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["type"], "authentication_error");

        let resp = bridge
            .post(
                MESSAGES,
                &[
                    ("x-aibridge-actor-id", "carol"),
                    ("x-api-key", "sk-ant-own-key-5678"),
                ],
                body,
            )
            .await;
        assert_eq!(resp.status(), 200, "stream={stream}");
        let records = bridge.records_of(interception_id(&resp)).await;
        let s = &records_of_kind!(records, Interception)[0];
        assert_eq!(
            (s.initiator_id.as_str(), s.streaming, &*s.credential_kind),
            ("carol", stream, "byok")
        );
        assert_eq!(serde_json::to_value(&s.metadata).unwrap(), json!({}));
    }
    // Only the two requests with the header went upstream.
    assert_eq!(bridge.mock.requests().len(), 2);
}

#[tokio::test]
async fn centralized_key_replaces_both_client_credentials_when_streaming() {
    let bridge = TestBridge::start_with(Setup {
        anthropic_key: Some("sk-ant-central-abcdefgh".into()),
        ..Default::default()
    })
    .await;
    let resp = bridge
        .post(
            MESSAGES,
            &[
                ("x-api-key", "sk-ant-client-1111"),
                ("authorization", "Bearer sk-ant-client-1111"),
                ("anthropic-beta", "fine-grained-tool-streaming-2025-05-14"),
                ("connection", "keep-alive, x-drop-me"),
                ("x-drop-me", "hop"),
            ],
            stream_body(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.text()
            .await
            .unwrap()
            .ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
    );
    let got = &bridge.mock.requests()[0];
    assert_eq!(got.header("x-api-key"), Some("sk-ant-central-abcdefgh"));
    assert_eq!(got.header("authorization"), None);
    assert_eq!(
        got.header("anthropic-beta"),
        Some("fine-grained-tool-streaming-2025-05-14")
    );
    assert_eq!(got.header("connection"), None);
    assert_eq!(got.body.as_ref(), stream_body().as_bytes());
}

#[tokio::test]
async fn head_on_the_provider_root_is_passed_through() {
    use mock_upstream::{MockBody, MockResponse};
    let bridge = TestBridge::start().await;
    bridge.mock.enqueue_for_path(
        "/",
        MockResponse::fault(MockBody::Full(bytes::Bytes::new())).with_header("x-upstream", "yes"),
    );
    let resp = bridge
        .http
        .head(format!("{}/anthropic?probe=1", bridge.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-upstream"], "yes");
    let got = &bridge.mock.requests()[0];
    assert_eq!(
        (got.method.as_str(), got.path_and_query.as_str()),
        ("HEAD", "/?probe=1")
    );
    assert!(bridge.recorder.records().is_empty());
}
