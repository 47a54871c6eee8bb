//! Shared test helpers: the bridge served on 127.0.0.1:0 against a mock upstream, with an
//! in-memory recorder behind the real recording pipeline.

pub mod binary;
pub mod proxy;

use std::sync::Arc;
use std::time::Duration;

use aibridge::config::{AuthConfig, Limits};
use aibridge::intercept::tool_loop::ToolSource;
use aibridge::metrics::{Metrics, new_registry};
use aibridge::provider::{ProviderConfig, ProviderKind};
use aibridge::record::{MemoryRecorder, Pipeline, PipelineConfig, Record};
use aibridge::resilience::Resilience;
use aibridge::secret::Secret;
use aibridge::server::{Readiness, app};
use aibridge::upstream::Proxy;
use aibridge::{Authenticator, BridgeOptions, RequestBridge};
use mock_upstream::MockUpstream;
use uuid::Uuid;

/// How to build a test bridge; `Default` is the single-user, bring-your-own-key setup.
pub struct Setup {
    /// Centralized keys per provider kind (`None`: clients bring their own).
    pub anthropic_key: Option<String>,
    /// Centralized OpenAI key.
    pub openai_key: Option<String>,
    /// Authentication.
    pub auth: AuthConfig,
    /// Limits.
    pub limits: Limits,
    /// Injected tools.
    pub tools: Option<Arc<dyn ToolSource>>,
    /// Tool loop cap.
    pub max_loop_iterations: u32,
    /// Keep-alive interval of streams while the tool loop works.
    pub tool_keepalive: Duration,
    /// Send actor headers upstream.
    pub send_actor_headers: bool,
    /// Point providers here instead of the mock (e.g. an unreachable port).
    pub upstream_override: Option<String>,
    /// Retries, timeouts, breaker and dumps of both providers.
    pub resilience: Resilience,
    /// The outbound proxy of both providers: direct by default, whatever the environment
    /// of the test run says.
    pub proxy: Proxy,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            anthropic_key: None,
            openai_key: None,
            auth: AuthConfig::default(),
            limits: Limits::default(),
            tools: None,
            max_loop_iterations: 10,
            tool_keepalive: Duration::from_secs(10),
            send_actor_headers: false,
            upstream_override: None,
            // One scripted upstream answer per request: tests of retries set their own.
            resilience: Resilience {
                retries: 0,
                ..Resilience::default()
            },
            proxy: Proxy::Direct,
        }
    }
}

/// A running bridge with its mock upstream and recorder.
pub struct TestBridge {
    /// `http://127.0.0.1:PORT` of the bridge.
    pub url: String,
    /// The mock upstream behind it.
    pub mock: MockUpstream,
    /// Everything recorded.
    pub recorder: MemoryRecorder,
    /// A plain HTTP client for requests to the bridge.
    pub http: reqwest::Client,
    _server: tokio::task::JoinHandle<()>,
    _pipeline: Pipeline,
}

impl TestBridge {
    /// A default bridge.
    pub async fn start() -> TestBridge {
        TestBridge::start_with(Setup::default()).await
    }

    /// A bridge built from `setup`.
    pub async fn start_with(setup: Setup) -> TestBridge {
        let mock = MockUpstream::start().await;
        let base = setup
            .upstream_override
            .clone()
            .unwrap_or_else(|| mock.url());
        let providers = vec![
            ProviderConfig {
                name: "anthropic".into(),
                kind: ProviderKind::Anthropic,
                base_url: base.clone(),
                api_key: setup.anthropic_key.map(Secret::new),
                send_actor_headers: setup.send_actor_headers,
                resilience: setup.resilience.clone(),
                proxy: setup.proxy.clone(),
            },
            ProviderConfig {
                name: "openai".into(),
                kind: ProviderKind::OpenAi,
                base_url: format!("{base}/v1"),
                api_key: setup.openai_key.map(Secret::new),
                send_actor_headers: setup.send_actor_headers,
                resilience: setup.resilience.clone(),
                proxy: setup.proxy.clone(),
            },
        ];
        let recorder = MemoryRecorder::new();
        let (queue, pipeline) = Pipeline::start(Arc::new(recorder.clone()), pipeline_config());
        let mut registry = new_registry();
        let metrics = Metrics::register(&mut registry);
        let bridge = RequestBridge::new(BridgeOptions {
            providers,
            queue,
            metrics,
            limits: setup.limits,
            tools: setup.tools,
            max_loop_iterations: setup.max_loop_iterations,
            tool_keepalive: setup.tool_keepalive,
            skip_injection_models: vec!["haiku".into()],
        })
        .expect("bridge");
        let ready = Readiness::default();
        assert!(ready.mark_ready());
        let router = app(
            bridge,
            Authenticator::new(setup.auth),
            Arc::new(registry),
            ready,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let server = serve(listener, router);
        TestBridge {
            url,
            mock,
            recorder,
            http: reqwest::Client::new(),
            _server: server,
            _pipeline: pipeline,
        }
    }

    /// POSTs JSON to a bridge path with extra headers.
    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(body).send().await.expect("request to the bridge")
    }

    /// The records of one interception, once it has ended (waits up to 5 s).
    pub async fn records_of(&self, id: Uuid) -> Vec<Record> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let records: Vec<Record> = self
                .recorder
                .records()
                .into_iter()
                .filter(|r| r.interception_id() == id)
                .collect();
            if records
                .iter()
                .any(|r| matches!(r, Record::InterceptionEnded(_)))
            {
                return records;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "interception {id} did not end; records so far: {records:#?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }
}

/// The pipeline settings of the tests' bridges: the defaults but a short linger, since the
/// tests wait for each interception's records.
pub fn pipeline_config() -> PipelineConfig {
    PipelineConfig {
        batch_linger: Duration::from_millis(5),
        ..PipelineConfig::default()
    }
}

/// Serves `router` on two serving threads, as `aibridge serve` runs it, until the test's
/// runtime ends (the stop switch lives as long as the task).
pub fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (_stop, stop) = tokio::sync::watch::channel(false);
        let _ = aibridge::server::serve_on_threads(listener, router, 2, stop).await;
    })
}

/// Asserts that requests refused by the bridge left nothing but rejected interceptions.
pub fn assert_only_rejections(records: &[Record]) {
    assert!(
        records.iter().all(|r| match r {
            Record::Interception(_) => true,
            Record::InterceptionEnded(e) => e.outcome == aibridge::record::Outcome::Rejected,
            _ => false,
        }),
        "{records:#?}"
    );
}

/// The interception id header of a bridged response.
pub fn interception_id(resp: &reqwest::Response) -> Uuid {
    resp.headers()
        .get("x-aibridge-interception-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("x-aibridge-interception-id header")
}

/// The records of one kind, in order.
#[macro_export]
macro_rules! records_of_kind {
    ($records:expr, $kind:ident) => {
        $records
            .iter()
            .filter_map(|r| match r {
                aibridge::record::Record::$kind(x) => Some(x.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
}
