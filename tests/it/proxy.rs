//! Upstream calls through an outbound proxy: absolute-form requests for `http://` upstreams,
//! `CONNECT` tunnels for `https://` ones, `NO_PROXY`, proxy credentials that reach the proxy
//! and nothing else, and the proxy environment variables of the binary.

use std::time::Duration;

use aibridge::upstream::{Proxy, ProxyRules};
use mock_upstream::MockUpstream;
use serde_json::json;

use crate::support::binary::Served;
use crate::support::proxy::{ProxyOptions, TestProxy};
use crate::support::{Setup, TestBridge};

const KEY: (&str, &str) = ("x-api-key", "sk-ant-client-key");
const USERINFO: &str = "alice:s3cret-pw";
/// `Basic` of `alice:s3cret-pw`.
const BASIC: &str = "Basic YWxpY2U6czNjcmV0LXB3";

fn message() -> String {
    json!({"model": "claude-test-1", "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}]})
    .to_string()
}

/// Sends one Messages request through the bridge.
async fn send(bridge: &TestBridge) -> reqwest::Response {
    bridge
        .post("/anthropic/v1/messages", &[KEY], message())
        .await
}

/// A mock upstream, and a proxy demanding `BASIC` whose tunnels all lead to it (whatever
/// host they name, so a name that resolves nowhere can be tunnelled).
async fn proxy_to_mock() -> (MockUpstream, TestProxy) {
    let mock = MockUpstream::start().await;
    let proxy = TestProxy::start(ProxyOptions {
        require_auth: Some(BASIC.into()),
        target: Some(mock.addr()),
    })
    .await;
    (mock, proxy)
}

async fn bridge_via(rules: ProxyRules, upstream: Option<String>) -> TestBridge {
    TestBridge::start_with(Setup {
        proxy: Proxy::Rules(rules),
        upstream_override: upstream,
        ..Setup::default()
    })
    .await
}

#[tokio::test]
async fn http_upstreams_are_reached_through_the_proxy_in_absolute_form() {
    let proxy = TestProxy::start(ProxyOptions::default()).await;
    let bridge = bridge_via(ProxyRules::all(proxy.url(None)), None).await;
    let resp = send(&bridge).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let seen = proxy.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].request_line,
        format!("POST {}/v1/messages HTTP/1.1", bridge.mock.url())
    );
    assert_eq!(seen[0].proxy_authorization, None);
    assert_eq!(proxy.tunnels(), 0);
    let got = bridge.mock.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("x-api-key"), Some("sk-ant-client-key"));

    // Passthrough takes the same client.
    let resp = bridge
        .http
        .get(format!("{}/anthropic/v1/models", bridge.url))
        .header(KEY.0, KEY.1)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(proxy.seen().len(), 2);
}

#[tokio::test]
async fn no_proxy_hosts_are_reached_directly() {
    let proxy = TestProxy::start(ProxyOptions::default()).await;
    // Host names, and CIDR ranges.
    for no in ["localhost, 127.0.0.1", "10.0.0.0/8,127.0.0.0/8"] {
        let rules = ProxyRules {
            no: Some(no.into()),
            ..ProxyRules::all(proxy.url(None))
        };
        let bridge = bridge_via(rules, None).await;
        let resp = send(&bridge).await;
        assert_eq!(resp.status(), 200, "{no}");
        assert_eq!(bridge.mock.requests().len(), 1, "{no}");
        assert!(proxy.seen().is_empty(), "{no}: {:?}", proxy.seen());
    }
}

#[tokio::test]
async fn proxy_credentials_reach_the_proxy_as_proxy_authorization() {
    let proxy = TestProxy::start(ProxyOptions {
        require_auth: Some(BASIC.into()),
        ..ProxyOptions::default()
    })
    .await;
    let bridge = bridge_via(ProxyRules::all(proxy.url(Some(USERINFO))), None).await;
    let resp = send(&bridge).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let seen = proxy.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].proxy_authorization.as_deref(), Some(BASIC));
    // The proxy's header is the proxy's: the upstream never sees it.
    let got = bridge.mock.requests();
    assert_eq!(got[0].header("proxy-authorization"), None);
}

#[tokio::test]
async fn a_refused_connect_is_a_clean_502_without_the_credentials() {
    let (mock, proxy) = proxy_to_mock().await;
    let bridge = bridge_via(
        ProxyRules::all(proxy.url(Some("alice:wrong-s3cret"))),
        Some("https://upstream.test".into()),
    )
    .await;
    let resp = send(&bridge).await;
    assert_eq!(resp.status(), 502);
    let id = crate::support::interception_id(&resp);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("upstream unreachable")
            && body.contains("proxy CONNECT refused: 407 Proxy Authentication Required"),
        "{body}"
    );
    let seen = proxy.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].request_line, "CONNECT upstream.test:443 HTTP/1.1");
    let sent = seen[0].proxy_authorization.clone().unwrap();
    assert!(sent.starts_with("Basic "), "{sent}");
    assert_eq!(proxy.tunnels(), 0);
    let encoded = sent.trim_start_matches("Basic ");
    let records = format!("{:?}", bridge.records_of(id).await);
    let metrics = bridge.metrics().await;
    for text in [&body, &records, &metrics] {
        assert!(!text.contains("s3cret"), "{text}");
        assert!(!text.contains(encoded), "{text}");
    }
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn https_upstreams_are_tunnelled_and_tls_starts_inside_the_tunnel() {
    // The tunnel ends at a plain HTTP server: TLS starts, and fails there.
    let (_mock, proxy) = proxy_to_mock().await;
    let bridge = bridge_via(
        ProxyRules {
            // Not for https upstreams: `HTTPS_PROXY` is.
            http: Some("http://127.0.0.1:1".into()),
            https: Some(proxy.url(Some(USERINFO))),
            ..ProxyRules::default()
        },
        Some("https://upstream.test".into()),
    )
    .await;
    let resp = send(&bridge).await;
    assert_eq!(resp.status(), 502);
    let body = resp.text().await.unwrap();
    assert!(body.contains("upstream unreachable"), "{body}");
    assert!(!body.contains("proxy CONNECT"), "{body}");
    let seen = proxy.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].request_line, "CONNECT upstream.test:443 HTTP/1.1");
    assert_eq!(seen[0].proxy_authorization.as_deref(), Some(BASIC));
    assert_eq!(proxy.tunnels(), 1);
    // The client's hello went through the tunnel: the server answered it as HTTP.
    assert!(
        body.contains("InvalidContentType") || body.contains("corrupt"),
        "{body}"
    );
}

#[tokio::test]
async fn an_unreachable_proxy_is_named_in_the_502() {
    let bridge = bridge_via(
        ProxyRules::all("http://bob:s3cret@127.0.0.1:1"),
        Some("https://upstream.test".into()),
    )
    .await;
    let resp = send(&bridge).await;
    assert_eq!(resp.status(), 502);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("cannot connect to proxy 127.0.0.1:1") && body.contains("tcp connect"),
        "{body}"
    );
    assert!(!body.contains("s3cret") && !body.contains("bob"), "{body}");
}

#[tokio::test]
async fn the_binary_reads_the_proxy_environment_variables() {
    let (mock, proxy) = proxy_to_mock().await;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    // `upstream.test` resolves nowhere: only the proxy can reach it.
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndatabase_url = \"log\"\n\
         [recording]\nspool_dir = \"{}\"\n\
         [[providers]]\nname = \"anthropic\"\nkind = \"anthropic\"\nbase_url = \"http://upstream.test\"\n\
         [[providers]]\nname = \"direct\"\nkind = \"anthropic\"\nbase_url = \"{}\"\n",
        spool.display(),
        mock.url(),
    );
    let proxy_url = proxy.url(Some(USERINFO));
    let served = Served::start(
        dir.path(),
        &config,
        &[
            ("http_proxy", &proxy_url),
            ("NO_PROXY", "localhost,127.0.0.1"),
        ],
    );
    let http = reqwest::Client::new();
    for provider in ["anthropic", "direct"] {
        let resp = http
            .post(format!("{}/{provider}/v1/messages", served.url))
            .header(KEY.0, KEY.1)
            .header("content-type", "application/json")
            .body(message())
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            200,
            "{provider}: {}",
            resp.text().await.unwrap()
        );
    }
    let seen = proxy.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].request_line,
        "POST http://upstream.test/v1/messages HTTP/1.1"
    );
    assert_eq!(seen[0].proxy_authorization.as_deref(), Some(BASIC));
    assert_eq!(mock.requests().len(), 2);
    let logs = served.logs();
    assert!(logs.contains("upstream calls go through a proxy"), "{logs}");
    assert!(
        !logs.contains("s3cret") && !logs.contains("YWxpY2U6"),
        "{logs}"
    );
}
