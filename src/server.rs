//! The `serve` application: the bridge behind an auth layer, plus `/healthz`, `/readyz`
//! and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use prometheus_client::registry::Registry;

use crate::actor::{AuthError, Authenticator};
use crate::api::ErrorKind;
use crate::bridge::{RequestBridge, error_response};

/// Shared by the probes: not ready while starting, ready once started, and not ready again
/// for good once shutdown begins.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicU8>);

const STARTING: u8 = 0;
const READY: u8 = 1;
const STOPPING: u8 = 2;

impl Readiness {
    /// Marks the process ready, unless shutdown already began: start-up work that finishes
    /// late (waiting for MCP servers) must not turn a stopping process ready again.
    /// Returns whether it became ready.
    pub fn mark_ready(&self) -> bool {
        self.0
            .compare_exchange(STARTING, READY, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Marks the process as shutting down; it never becomes ready again.
    pub fn begin_shutdown(&self) {
        self.0.store(STOPPING, Ordering::SeqCst);
    }

    /// Whether the process takes traffic.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst) == READY
    }
}

#[derive(Clone)]
struct AuthLayerState {
    bridge: RequestBridge,
    auth: Arc<Authenticator>,
}

/// Builds the application router.
pub fn app(
    bridge: RequestBridge,
    auth: Authenticator,
    registry: Arc<Registry>,
    ready: Readiness,
) -> Router {
    let auth_state = AuthLayerState {
        bridge: bridge.clone(),
        auth: Arc::new(auth),
    };
    let bridged =
        Router::new()
            .fallback_service(bridge)
            .layer(axum::middleware::from_fn_with_state(
                auth_state,
                authenticate,
            ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.is_ready();
                async move {
                    if ready {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "shutting down")
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move { metrics(&registry) }
            }),
        )
        .merge(bridged)
}

fn metrics(registry: &Registry) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, registry) {
        Ok(()) => (
            [(
                http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Resolves the actor for requests under a provider prefix; answers 401 in the provider's
/// format when there is none.
async fn authenticate(
    State(state): State<AuthLayerState>,
    mut req: Request,
    next: Next,
) -> Response<Body> {
    let Some((kind, provider)) = state
        .bridge
        .provider_for(req.uri().path())
        .map(|(p, _)| (p.kind, p.name.clone()))
    else {
        return next.run(req).await;
    };
    match state.auth.resolve(req.headers()) {
        Ok(actor) => {
            req.extensions_mut().insert(actor);
            next.run(req).await
        }
        Err(e @ (AuthError::Missing | AuthError::InvalidKey)) => {
            state.bridge.count_rejected(&provider, "unauthenticated");
            error_response(kind, ErrorKind::Authentication, &e.to_string(), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Readiness;

    #[test]
    fn readiness_never_returns_after_shutdown_began() {
        let ready = Readiness::default();
        assert!(!ready.is_ready());
        assert!(ready.mark_ready());
        assert!(ready.is_ready());
        ready.begin_shutdown();
        assert!(!ready.is_ready());
        assert!(!ready.mark_ready());
        assert!(!ready.is_ready());
    }

    #[test]
    fn start_up_finishing_after_the_signal_leaves_the_process_unready() {
        let ready = Readiness::default();
        ready.begin_shutdown();
        assert!(!ready.mark_ready());
        assert!(!ready.is_ready());
    }
}
