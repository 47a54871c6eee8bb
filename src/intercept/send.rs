//! The one path of every upstream call of an interception: circuit breaker, time to first
//! byte, retries with backoff, the API dump, and the synthesized 503 of an open circuit.

use std::time::{Duration, Instant};

use http_body_util::Full;

use super::Interception;
use crate::api::{ErrorKind, error_body};
use crate::breaker::Admission;
use crate::metrics::BreakerLabels;
use crate::resilience::{backoff, wait_before_retry};
use crate::upstream::{HttpClient, UpstreamBody, UpstreamResponse, error_chain, request};

impl Interception {
    /// Sends one request upstream. Every upstream call of an interception goes through
    /// here, so attempts, timing, retries, the circuit breaker and the time-to-first-byte
    /// timeout live in one place. Nothing of a retried response reaches the client.
    ///
    /// An open circuit answers with a synthesized 503 in the provider's error format with
    /// `Retry-After`, without calling the upstream. The error is a message safe for the
    /// client: it never holds the URL's credentials or headers. `http` is used only for a
    /// provider the bridge has no client of its own for.
    pub async fn send(
        &mut self,
        http: &HttpClient,
        url: &http::Uri,
        headers: &http::HeaderMap,
        body: bytes::Bytes,
    ) -> Result<UpstreamResponse, String> {
        let state = self.state.clone();
        let provider = self.provider.clone();
        let http = state.clients.get(&provider.name).unwrap_or(http);
        let policy = &provider.resilience;
        let key = BreakerLabels {
            provider: provider.name.clone(),
            endpoint: self.api.as_str().to_owned(),
            model: self.model_metrics.label.clone(),
        };
        let mut retry = 0u32;
        self.rounds += 1;
        loop {
            if let Admission::Rejected { retry_after } = state.breakers.admit(&key, &policy.breaker)
            {
                self.note("circuit breaker open: not sent upstream");
                self.breaker_open = true;
                return Ok(self.circuit_open_response(retry_after));
            }
            if let Some(dump) = &mut self.dump {
                dump.request("POST", &url.to_string(), headers, &body);
            }
            if retry > 0 {
                self.retries += 1;
            }
            let sent = Instant::now();
            let attempt = http.request(request(
                http::Method::POST,
                url.clone(),
                headers.clone(),
                body.clone(),
            ));
            let (failed, wait, outcome) =
                match tokio::time::timeout(policy.timeouts.first_byte, attempt).await {
                    Ok(Ok(resp)) => {
                        let status = resp.status().as_u16();
                        self.upstream_answered(Some(status), sent);
                        if let Some(dump) = &mut self.dump {
                            dump.response(status, resp.headers());
                        }
                        let wait = wait_before_retry(policy, status, resp.headers(), retry);
                        (policy.breaker.trips_on(status), wait, Ok(resp))
                    }
                    Ok(Err(e)) => {
                        self.upstream_answered(None, sent);
                        // Nothing was answered, so the request can be sent again.
                        let wait = (retry < policy.retries)
                            .then(|| backoff(policy.backoff, retry, policy.max_retry_wait));
                        (
                            true,
                            wait,
                            Err(format!("upstream unreachable: {}", error_chain(&e))),
                        )
                    }
                    Err(_) => {
                        self.upstream_answered(None, sent);
                        // The upstream may still be working on it: not retried.
                        let limit = policy.timeouts.first_byte;
                        (
                            true,
                            None,
                            Err(format!("upstream sent no response within {limit:?}")),
                        )
                    }
                };
            state.breakers.report(&key, &policy.breaker, failed);
            if let Err(message) = &outcome {
                self.note(message);
            }
            match wait {
                Some(wait) if !state.breakers.is_open(&key) => {
                    drop(outcome);
                    self.note(&format!("retrying in {wait:?}"));
                    self.route.metrics.retries.inc();
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = state.cancel.cancelled() => {
                            return Err("the bridge is shutting down".to_owned());
                        }
                    }
                    retry += 1;
                }
                _ => return outcome,
            }
        }
    }

    /// The 503 an open circuit answers with, in the provider's error format.
    fn circuit_open_response(&self, retry_after: Duration) -> UpstreamResponse {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        let message = format!(
            "circuit breaker open for {} {}: the upstream failed repeatedly; retry after {secs}s",
            self.provider.name, self.model
        );
        let body = error_body(self.provider.kind, ErrorKind::Overloaded, &message);
        let mut resp = http::Response::new(UpstreamBody::Made(Full::new(body)));
        *resp.status_mut() = ErrorKind::Overloaded.status();
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        h.insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        resp
    }
}
