//! The slow-client watchdog: notices a client that stops taking a stream, even one that
//! never reads again.
//!
//! A streamed body is pulled by the client's connection: hyper asks for the next chunk only
//! when it can write it. A client that stops reading therefore stops the stream's own code
//! from running at all, so the check cannot live there. The stream notes when it handed a
//! chunk over and when it was asked for the next one; a small task per stream looks at that
//! note every so often and logs the client once, while it is still connected. The bridge
//! never reads ahead of the client (the relay pulls the upstream on demand, the tool loop
//! writes into a small bounded channel), so a slow client costs a bounded buffer, not memory
//! without end; the log says who it is.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::Interception;

/// Watches one stream; dropping it ends the watch.
pub(crate) struct ClientWatch {
    shared: Arc<Shared>,
}

struct Shared {
    base: Instant,
    /// When the stream handed a chunk to the connection and was not asked for the next one
    /// since, in milliseconds after `base` plus one; 0 while not waiting on the client.
    waiting_since: AtomicU64,
    /// Bytes the bridge holds for this client: the chunk handed over plus what is queued.
    pending_bytes: AtomicUsize,
    /// Chunks queued behind the one handed over.
    queued_chunks: AtomicUsize,
    sent_bytes: AtomicU64,
    logged: AtomicBool,
    after: Duration,
    interception: Uuid,
    actor: String,
    client: &'static str,
}

impl ClientWatch {
    /// Starts watching the stream of this interception.
    pub(crate) fn start(ic: &Interception) -> ClientWatch {
        let after = ic.slow_client_after();
        let shared = Arc::new(Shared {
            base: Instant::now(),
            waiting_since: AtomicU64::new(0),
            pending_bytes: AtomicUsize::new(0),
            queued_chunks: AtomicUsize::new(0),
            sent_bytes: AtomicU64::new(0),
            logged: AtomicBool::new(false),
            after,
            interception: ic.id,
            actor: ic.actor_id().to_owned(),
            client: ic.client(),
        });
        tokio::spawn(watch(Arc::downgrade(&shared), after));
        ClientWatch { shared }
    }

    /// The connection asked for the next chunk: the client is keeping up.
    pub(crate) fn asked(&self) {
        self.shared.waiting_since.store(0, Ordering::Relaxed);
    }

    /// A chunk of `bytes` went to the connection; `queued_bytes` in `queued_chunks` wait
    /// behind it in the bridge.
    pub(crate) fn handed(&self, bytes: usize, queued_bytes: usize, queued_chunks: usize) {
        let s = &self.shared;
        let now = u64::try_from(s.base.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1;
        s.waiting_since.store(now, Ordering::Relaxed);
        s.pending_bytes
            .store(bytes + queued_bytes, Ordering::Relaxed);
        s.queued_chunks.store(queued_chunks, Ordering::Relaxed);
        s.sent_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

impl Drop for ClientWatch {
    fn drop(&mut self) {
        // The stream ended (or the client left) between two looks of the watcher.
        self.shared.check();
    }
}

impl Shared {
    /// Logs the client once if the stream has waited on it for `after` or longer; returns
    /// whether it has been logged.
    fn check(&self) -> bool {
        if self.logged.load(Ordering::Relaxed) {
            return true;
        }
        let since = self.waiting_since.load(Ordering::Relaxed);
        if since == 0 {
            return false;
        }
        let waited = self
            .base
            .elapsed()
            .saturating_sub(Duration::from_millis(since - 1));
        if waited < self.after || self.logged.swap(true, Ordering::Relaxed) {
            return self.logged.load(Ordering::Relaxed);
        }
        tracing::warn!(
            interception = %self.interception,
            actor = %self.actor,
            client = self.client,
            bytes_pending = self.pending_bytes.load(Ordering::Relaxed),
            chunks_queued = self.queued_chunks.load(Ordering::Relaxed),
            bytes_sent = self.sent_bytes.load(Ordering::Relaxed),
            waited_secs = waited.as_secs(),
            "slow client: it takes nothing; the upstream is held back until it reads"
        );
        true
    }
}

/// Looks at the stream a few times per `after` until it ends or its client was logged.
async fn watch(shared: Weak<Shared>, after: Duration) {
    let period = (after / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.check() {
            return;
        }
    }
}

/// A client body fed by a bounded channel (the tool loop's), watched: the chunks waiting in
/// the channel are counted, their bytes are not known here.
pub(crate) fn watched_channel(
    mut rx: mpsc::Receiver<Bytes>,
    watch: ClientWatch,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
    futures_util::stream::poll_fn(move |cx| {
        watch.asked();
        match rx.poll_recv(cx) {
            Poll::Ready(Some(bytes)) => {
                watch.handed(bytes.len(), 0, rx.len());
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
}
