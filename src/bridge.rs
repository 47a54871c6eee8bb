//! [`RequestBridge`]: the tower `Service` that routes provider paths to an interception or
//! a passthrough. It reads the [`Actor`] from request extensions, so any hyper or axum app can
//! mount it behind its own authentication.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::FastHashMap;
use crate::actor::Actor;
use crate::api::{ApiKind, ErrorKind, RequestInfo, client, error_body};
use crate::breaker::Breakers;
use crate::config::Limits;
use crate::config::ProcessEnv;
use crate::intercept::aliases::ResponseAliases;
use crate::intercept::tool_loop::{self, LoopSetup, Offered, ToolSource};
use crate::intercept::{Interception, Start, blocking, streaming};
use crate::metrics::{Metrics, RejectLabels, RouteMetrics};
use crate::provider::{ProviderConfig, ProviderKind};
use crate::record::RecordQueue;
use crate::resilience::Timeouts;
use crate::upstream::{HttpClient, ProxyRules, build_client, parse_uri, upstream_headers};

/// The header naming the interception on every bridged response.
pub const INTERCEPTION_ID_HEADER: &str = "x-aibridge-interception-id";

/// Why a bridge could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The HTTP client could not be created.
    #[error("cannot build the upstream HTTP client: {0}")]
    Client(#[from] crate::upstream::ClientError),
}

/// What the bridge needs to run.
pub struct BridgeOptions {
    /// Providers, each mounted at `/<name>/`.
    pub providers: Vec<ProviderConfig>,
    /// Where records go.
    pub queue: RecordQueue,
    /// Metric families.
    pub metrics: Metrics,
    /// Body limits.
    pub limits: Limits,
    /// Injected tools (MCP), if any.
    pub tools: Option<Arc<dyn ToolSource>>,
    /// Tool rounds per request before the model must answer.
    pub max_loop_iterations: u32,
    /// How often a streaming client gets a keep-alive event while the tool loop works
    /// (`mcp.keepalive_interval`, 10 s by default).
    pub tool_keepalive: std::time::Duration,
    /// Models (by substring) that get no injected tools when the request has no tools of
    /// its own, such as Claude Code's small fast model.
    pub skip_injection_models: Vec<String>,
}

/// Shared state of every request.
pub struct BridgeState {
    pub(crate) providers: Vec<Arc<ProviderConfig>>,
    pub(crate) http: HttpClient,
    pub(crate) queue: RecordQueue,
    pub(crate) metrics: Metrics,
    pub(crate) limits: Limits,
    pub(crate) tools: Option<Arc<dyn ToolSource>>,
    pub(crate) max_loop_iterations: u32,
    pub(crate) tool_keepalive: std::time::Duration,
    pub(crate) skip_injection_models: Vec<String>,
    /// Each provider's own client (by name): it carries the provider's connect timeout.
    pub(crate) clients: FastHashMap<String, HttpClient>,
    pub(crate) breakers: Breakers,
    /// Cancelled when the shutdown grace period is over: in-flight requests end at once.
    pub(crate) cancel: CancellationToken,
    /// Set just before `cancel` fires: a relay checks it on every step with one atomic
    /// load, and waits on `cancel` (which takes a lock) only when it is about to sleep.
    pub(crate) shutting_down: std::sync::atomic::AtomicBool,
    /// Watches every open stream for a client that stopped reading.
    pub(crate) watchdog: Arc<crate::intercept::Watchdog>,
    /// Responses ids streaming clients were shown for a tool loop's last upstream response.
    pub(crate) response_aliases: ResponseAliases,
    /// Per provider (same order as `providers`) and wire API ([`ApiKind::index`]).
    routes: Vec<[OnceLock<Arc<Route>>; 3]>,
}

/// What every request of one provider and wire API shares, made on the first one.
pub(crate) struct Route {
    pub(crate) metrics: RouteMetrics,
    /// The upstream URL of the API's own path, without a query: parsed once, not per request.
    pub(crate) url: Result<Uri, String>,
}

impl BridgeState {
    /// The client for a provider's upstream calls.
    pub(crate) fn client(&self, provider: &ProviderConfig) -> &HttpClient {
        self.clients.get(&provider.name).unwrap_or(&self.http)
    }

    /// The route of provider number `index` and `api`.
    fn route(&self, index: usize, api: ApiKind) -> Arc<Route> {
        let provider = &self.providers[index];
        self.routes[index][api.index()]
            .get_or_init(|| {
                Arc::new(Route {
                    metrics: self.metrics.route(&provider.name, api.as_str()),
                    url: parse_uri(&provider.upstream_url(api.path(), None)),
                })
            })
            .clone()
    }
}

/// Says at startup which proxy a provider's upstream calls go through (by host and port:
/// the proxy URL's credentials are not part of it), so a misrouted egress is easy to spot.
fn log_proxy(provider: &ProviderConfig, client: &HttpClient) {
    let Ok(base) = parse_uri(&provider.base_url) else {
        return;
    };
    if let Some(proxy) = client.proxy_for(&base) {
        let via = proxy.authority().map_or("", |a| a.as_str());
        if proxy.scheme_str() == Some("http") {
            tracing::info!(provider = %provider.name, proxy = %via, "upstream calls go through a proxy");
        } else {
            tracing::warn!(
                provider = %provider.name,
                proxy = %via,
                scheme = proxy.scheme_str().unwrap_or(""),
                "the proxy of this provider's upstream is not an http:// proxy: its calls will fail"
            );
        }
    }
}

/// The bridge as a `tower::Service`. Cheap to clone.
#[derive(Clone)]
pub struct RequestBridge {
    state: Arc<BridgeState>,
}

impl RequestBridge {
    /// Builds a bridge.
    pub fn new(options: BridgeOptions) -> Result<RequestBridge, BridgeError> {
        let tls = crate::upstream::tls_config()?;
        let mut clients =
            FastHashMap::with_capacity_and_hasher(options.providers.len(), Default::default());
        for p in &options.providers {
            let connect = p.resilience.timeouts.connect;
            // The environment is read here, once: never per request.
            let proxies = p.proxy.rules(&ProcessEnv);
            let client = build_client(connect, tls.clone(), &proxies);
            log_proxy(p, &client);
            clients.insert(p.name.clone(), client);
        }
        let breakers = Breakers::new(options.metrics.breaker.clone());
        let routes = options
            .providers
            .iter()
            .map(|_| Default::default())
            .collect();
        Ok(RequestBridge {
            state: Arc::new(BridgeState {
                providers: options.providers.into_iter().map(Arc::new).collect(),
                http: build_client(Timeouts::default().connect, tls, &ProxyRules::default()),
                queue: options.queue,
                metrics: options.metrics,
                watchdog: crate::intercept::Watchdog::new(options.limits.slow_client_after),
                limits: options.limits,
                tools: options.tools,
                max_loop_iterations: options.max_loop_iterations,
                tool_keepalive: options.tool_keepalive,
                skip_injection_models: options.skip_injection_models,
                clients,
                breakers,
                cancel: CancellationToken::new(),
                shutting_down: std::sync::atomic::AtomicBool::new(false),
                response_aliases: ResponseAliases::default(),
                routes,
            }),
        })
    }

    /// Ends every request still in flight: streams get an error event in their API's
    /// format, the rest an error response, and each interception is recorded as failed.
    /// Used when the shutdown grace period is over.
    pub fn cancel_in_flight(&self) {
        self.state
            .shutting_down
            .store(true, std::sync::atomic::Ordering::Release);
        self.state.cancel.cancel();
    }

    /// Counts a request refused before it reached the bridge (e.g. by the auth layer) in
    /// `aibridge_rejected_requests_total`.
    pub fn count_rejected(&self, provider: &str, reason: &str) {
        reject(&self.state, provider, reason);
    }

    /// The provider whose prefix starts `path`, and the rest of the path after it.
    pub fn provider_for<'p>(&self, path: &'p str) -> Option<(&ProviderConfig, &'p str)> {
        find_provider(&self.state.providers, path).map(|(_, p, rest)| (&**p, rest))
    }

    async fn handle<B>(self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let state = self.state;
        let path = req.uri().path().to_owned();
        let Some((index, provider, rest)) = find_provider(&state.providers, &path) else {
            reject(&state, "none", "not_found");
            return not_found(&path);
        };
        let provider = provider.clone();
        let rest = rest.to_owned();
        let Some(actor) = req.extensions().get::<Actor>().cloned() else {
            reject(&state, &provider.name, "unauthenticated");
            return error_response(
                provider.kind,
                ErrorKind::Authentication,
                "no actor: this request is not authenticated",
                None,
            );
        };
        let (parts, body) = req.into_parts();
        let api = ApiKind::route(provider.kind, &parts.method, &rest);
        let body = match Limited::new(body, state.limits.max_body_bytes)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                let too_large = e
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some();
                let (kind, reason, message) = if too_large {
                    (
                        ErrorKind::RequestTooLarge,
                        "too_large",
                        format!(
                            "request body exceeds the limit of {} bytes",
                            state.limits.max_body_bytes
                        ),
                    )
                } else {
                    (
                        ErrorKind::InvalidRequest,
                        "invalid_body",
                        "request body could not be read".to_owned(),
                    )
                };
                reject(&state, &provider.name, reason);
                let id = api.map(|api| {
                    let route = (api, state.route(index, api));
                    let info = RequestInfo::default();
                    record_rejected(&state, &provider, route, &actor, &parts, info, &message)
                });
                return error_response(provider.kind, kind, &message, id);
            }
        };
        let work = async {
            match api {
                Some(api) => {
                    let route = (api, state.route(index, api));
                    intercept(
                        state.clone(),
                        provider.clone(),
                        route,
                        parts,
                        &rest,
                        body,
                        actor,
                    )
                    .await
                }
                None => {
                    crate::passthrough::forward(&state, &provider, &actor, parts, &rest, body).await
                }
            }
        };
        // Past the shutdown grace period, a request still waiting for its response is
        // dropped (its interception ends as failed) and answered with a clean 503.
        tokio::select! {
            resp = work => resp,
            () = state.cancel.cancelled() => error_response(
                provider.kind,
                ErrorKind::Overloaded,
                "the bridge is shutting down",
                None,
            ),
        }
    }
}

/// The provider whose prefix starts `path` (with its position), and the rest of the path.
fn find_provider<'a, 'p>(
    providers: &'a [Arc<ProviderConfig>],
    path: &'p str,
) -> Option<(usize, &'a Arc<ProviderConfig>, &'p str)> {
    let trimmed = path.strip_prefix('/')?;
    let (first, rest) = match trimmed.find('/') {
        Some(i) => (&trimmed[..i], &trimmed[i..]),
        None => (trimmed, ""),
    };
    providers
        .iter()
        .enumerate()
        .find(|(_, p)| p.name == first)
        .map(|(i, p)| (i, p, rest))
}

async fn intercept(
    state: Arc<BridgeState>,
    provider: Arc<ProviderConfig>,
    (api, route): (ApiKind, Arc<Route>),
    parts: http::request::Parts,
    rest: &str,
    body: Bytes,
    actor: Actor,
) -> Response<Body> {
    let info = match api.inspect(&body) {
        Ok(info) => info,
        Err(bad) => {
            reject(&state, &provider.name, "invalid_body");
            let info = RequestInfo {
                model: rejected_model(&body),
                ..RequestInfo::default()
            };
            let id = record_rejected(
                &state,
                &provider,
                (api, route),
                &actor,
                &parts,
                info,
                &bad.message,
            );
            return error_response(
                provider.kind,
                ErrorKind::InvalidRequest,
                &bad.message,
                Some(id),
            );
        }
    };
    let body = resolve_previous_response(&state, api, &info, body);
    // The tool loop edits the client's body itself; the plain relay may need its own edit.
    let relay_body = match api.upstream_body(&info, body.clone()) {
        Ok(body) => body,
        Err(bad) => {
            reject(&state, &provider.name, "invalid_body");
            return error_response(provider.kind, ErrorKind::InvalidRequest, &bad.message, None);
        }
    };
    let (headers, credential) = upstream_headers(&parts.headers, &provider, &actor, true);
    let session_id = client::session_from_headers(&parts.headers).or(info.session_id.clone());
    let stream = info.stream;
    let cap = state.limits.max_response_bytes;
    let url = match (&route.url, parts.uri.query()) {
        (Ok(url), None) if rest == api.path() => Ok(url.clone()),
        _ => parse_uri(&provider.upstream_url(rest, parts.uri.query())),
    };
    let mut ic = Interception::start(
        state.clone(),
        provider.clone(),
        api,
        route,
        Start {
            actor: &actor,
            info,
            client: client::detect(&parts.headers),
            user_agent: parts
                .headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            session_id,
            credential,
        },
    );
    let url = match url {
        Ok(url) => url,
        Err(e) => {
            let message = format!("upstream unreachable: invalid upstream URL: {e}");
            ic.end(
                crate::record::Outcome::UpstreamUnavailable,
                Some(message.clone()),
            );
            return error_response(provider.kind, ErrorKind::Upstream, &message, Some(ic.id));
        }
    };
    if let Some(setup) = loop_setup(&state, api, &body, &url, &headers) {
        // Boxed: the loop's futures are large, and inline they would make every request's
        // future that large, copied whenever it moves.
        return if stream {
            Box::pin(tool_loop::run_streaming(state, ic, setup)).await
        } else {
            Box::pin(tool_loop::run_blocking(state, ic, setup)).await
        };
    }
    match ic.send(&state.http, &url, &headers, relay_body).await {
        Err(message) => {
            ic.end(
                crate::record::Outcome::UpstreamUnavailable,
                Some(message.clone()),
            );
            error_response(provider.kind, ErrorKind::Upstream, &message, Some(ic.id))
        }
        Ok(resp) => {
            if !resp.status().is_success() {
                blocking::relay_error(ic, resp, cap).await
            } else if stream && is_event_stream(resp.headers()) {
                streaming::relay(ic, resp)
            } else {
                blocking::relay(ic, resp, cap).await
            }
        }
    }
}

/// A Responses request continuing from an id the bridge showed in place of the upstream's
/// (a streamed tool loop, see [`ResponseAliases`]) is sent on with the upstream's id; any
/// other body is left as it is.
fn resolve_previous_response(
    state: &BridgeState,
    api: ApiKind,
    info: &RequestInfo,
    body: Bytes,
) -> Bytes {
    if api != ApiKind::Responses {
        return body;
    }
    let Some(real) = info
        .metadata
        .get("previous_response_id")
        .and_then(|v| v.as_str())
        .and_then(|shown| state.response_aliases.resolve(shown))
    else {
        return body;
    };
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return body;
    };
    value["previous_response_id"] = serde_json::Value::String(real);
    serde_json::to_vec(&value).map_or(body, Bytes::from)
}

/// Records a request refused before any upstream call as a failed (`rejected`)
/// interception of its actor; returns its id.
fn record_rejected(
    state: &Arc<BridgeState>,
    provider: &Arc<ProviderConfig>,
    (api, route): (ApiKind, Arc<Route>),
    actor: &Actor,
    parts: &http::request::Parts,
    info: RequestInfo,
    message: &str,
) -> Uuid {
    let (_, credential) = upstream_headers(&parts.headers, provider, actor, true);
    let mut ic = Interception::start(
        state.clone(),
        provider.clone(),
        api,
        route,
        Start {
            actor,
            info,
            client: client::detect(&parts.headers),
            user_agent: parts
                .headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            session_id: None,
            credential,
        },
    );
    ic.end(
        crate::record::Outcome::Rejected,
        Some(message.chars().take(512).collect()),
    );
    ic.id
}

/// The model of a refused body, when it names one as a string (for the record only).
fn rejected_model(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ModelView {
        model: Option<serde_json::Value>,
    }
    serde_json::from_slice::<ModelView>(body)
        .ok()
        .and_then(|v| v.model)
        .and_then(|m| m.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The tool loop's setup when tools are injected into this request; `None` leaves the body
/// untouched.
fn loop_setup(
    state: &BridgeState,
    api: ApiKind,
    body: &[u8],
    url: &Uri,
    headers: &http::HeaderMap,
) -> Option<LoopSetup> {
    let source = state.tools.as_ref()?;
    let loop_api = api.loop_api()?;
    let tools = source.tools();
    if tools.is_empty() {
        return None;
    }
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    if !wants_injection(state, &value) {
        return None;
    }
    let stream = value.get("stream").and_then(|s| s.as_bool()) == Some(true);
    let rewriter = stream.then(|| loop_api.rewriter(&value));
    let echo = loop_api.echoed(&value);
    loop_api.inject_tools(&mut value, &tools);
    Some(LoopSetup {
        tools: source.clone(),
        offered: Offered::new(&tools),
        api: loop_api,
        url: url.clone(),
        headers: headers.clone(),
        body: value,
        max_iterations: state.max_loop_iterations,
        keepalive: state.tool_keepalive,
        echo,
        rewriter,
    })
}

/// Whether a request gets injected tools: not when the client forbade tools
/// (`tool_choice` none) or sent an explicitly empty `tools` list (Claude Code's title
/// side request does), and not for tool-less requests to a skipped model (side requests
/// of Claude Code's small fast model).
fn wants_injection(state: &BridgeState, body: &serde_json::Value) -> bool {
    let choice = body.get("tool_choice");
    let none = choice.and_then(|c| c.as_str()) == Some("none")
        || choice.and_then(|c| c.get("type")).and_then(|t| t.as_str()) == Some("none");
    match body.get("tools").and_then(|t| t.as_array()) {
        _ if none => false,
        Some(tools) => !tools.is_empty(),
        None => {
            let model = body.get("model").and_then(|m| m.as_str()).unwrap_or("");
            !state
                .skip_injection_models
                .iter()
                .any(|s| model.contains(s.as_str()))
        }
    }
}

fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

fn reject(state: &BridgeState, provider: &str, reason: &str) {
    state
        .metrics
        .rejected
        .get_or_create(&RejectLabels {
            provider: provider.to_owned(),
            reason: reason.to_owned(),
        })
        .inc();
}

/// Adds the interception id header.
pub fn tag(resp: &mut Response<Body>, id: Uuid) {
    // On every response: the id is written into a stack buffer (not through `Display` into a
    // `String`), and the name is a ready `HeaderName` (not parsed from the `&str` each time).
    const NAME: http::HeaderName = http::HeaderName::from_static(INTERCEPTION_ID_HEADER);
    let mut text = Uuid::encode_buffer();
    if let Ok(v) = HeaderValue::from_str(id.hyphenated().encode_lower(&mut text)) {
        resp.headers_mut().insert(NAME, v);
    }
}

/// An error the bridge itself produces, in the provider's format.
pub fn error_response(
    kind: ProviderKind,
    error: ErrorKind,
    message: &str,
    interception: Option<Uuid>,
) -> Response<Body> {
    let mut resp = Response::new(Body::from(error_body(kind, error, message)));
    *resp.status_mut() = error.status();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(id) = interception {
        tag(&mut resp, id);
    }
    resp
}

/// 404 for paths outside every provider prefix.
pub fn not_found(path: &str) -> Response<Body> {
    let body = serde_json::json!({
        "error": {
            "type": "not_found",
            "message": format!("no route for {path}: bridged paths start with a provider prefix such as /anthropic/ or /openai/"),
        }
    });
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = StatusCode::NOT_FOUND;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

impl<B> tower::Service<Request<B>> for RequestBridge
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}
