//! The slow-client watchdog: notices a client that stops taking a stream, even one that
//! never reads again.
//!
//! A streamed body is pulled by the client's connection: hyper asks for the next chunk only
//! when it can write it. A client that stops reading therefore stops the stream's own code
//! from running at all, so the check cannot live there. The stream notes when it handed a
//! chunk over and when it was asked for the next one; one sweeper task per bridge looks at
//! the notes of every open stream every so often and logs a client once, while it is still
//! connected. The bridge never reads ahead of the client (the relay pulls the upstream on
//! demand, the tool loop writes into a small bounded channel), so a slow client costs a
//! bounded buffer, not memory without end; the log says who it is.
//!
//! Why one sweeper and not a task per stream: a task with its own timer per stream (which
//! stayed in the runtime for up to a second after its stream ended) cost 6 µs of CPU per
//! streamed request under load, 13 µs for a 100 KB one, about a tenth of what the bridge
//! spends on such a request. A stream now costs two short locks of a map; the sweeper runs
//! only while streams are open.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::Interception;
use crate::FastHashMap;

/// The streams of one bridge being watched, and whether a sweeper looks at them.
pub(crate) struct Watchdog {
    /// How long a stream may wait on its client before the client is logged.
    after: Duration,
    /// How often the sweeper looks: a few times per `after`.
    period: Duration,
    streams: Mutex<Streams>,
}

#[derive(Default)]
struct Streams {
    open: FastHashMap<u64, Arc<Shared>>,
    next_key: u64,
    /// Whether a sweeper task is running (or spawned and about to run).
    sweeping: bool,
}

impl Watchdog {
    /// A watchdog that logs a client once a stream has waited on it for `after`.
    pub(crate) fn new(after: Duration) -> Arc<Watchdog> {
        Arc::new(Watchdog {
            after,
            period: (after / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)),
            streams: Mutex::new(Streams::default()),
        })
    }

    fn streams(&self) -> MutexGuard<'_, Streams> {
        // The map stays consistent whatever panicked while it was held (inserts and
        // removals only), so a poisoned lock is used as it is.
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many streams are watched now.
    #[cfg(test)]
    fn watched(&self) -> usize {
        self.streams().open.len()
    }
}

/// Watches one stream; dropping it ends the watch.
pub(crate) struct ClientWatch {
    shared: Arc<Shared>,
    dog: Arc<Watchdog>,
    key: u64,
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
        ClientWatch::on(ic.watchdog(), ic.id, ic.actor_id().to_owned(), ic.client())
    }

    /// Starts watching a stream with `dog`.
    fn on(
        dog: &Arc<Watchdog>,
        interception: Uuid,
        actor: String,
        client: &'static str,
    ) -> ClientWatch {
        let shared = Arc::new(Shared {
            base: Instant::now(),
            waiting_since: AtomicU64::new(0),
            pending_bytes: AtomicUsize::new(0),
            queued_chunks: AtomicUsize::new(0),
            sent_bytes: AtomicU64::new(0),
            logged: AtomicBool::new(false),
            after: dog.after,
            interception,
            actor,
            client,
        });
        let (key, spawn) = {
            let mut streams = dog.streams();
            let key = streams.next_key;
            streams.next_key += 1;
            streams.open.insert(key, Arc::clone(&shared));
            let spawn = !streams.sweeping;
            streams.sweeping = true;
            (key, spawn)
        };
        if spawn {
            // The mark's guard goes in as an argument, not made inside the task: a task
            // dropped before it first ran (its runtime shut down) must clear the mark too.
            tokio::spawn(sweep(Sweeping {
                dog: Arc::downgrade(dog),
                armed: true,
            }));
        }
        ClientWatch {
            shared,
            dog: Arc::clone(dog),
            key,
        }
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
        self.dog.streams().open.remove(&self.key);
        // The stream ended (or the client left) between two looks of the sweeper.
        self.shared.check();
    }
}

impl Shared {
    /// Whether the stream is waiting on its client now and has not been logged.
    fn waiting(&self) -> bool {
        self.waiting_since.load(Ordering::Relaxed) != 0 && !self.logged.load(Ordering::Relaxed)
    }

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

/// Looks at every open stream of `dog` once per period, until none is open (the next stream
/// to start spawns a sweeper again) or the bridge is gone.
async fn sweep(mut sweeping: Sweeping) {
    let dog = sweeping.dog.clone();
    let Some(period) = dog.upgrade().map(|d| d.period) else {
        return;
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(dog) = dog.upgrade() else {
            return;
        };
        // The streams waiting on their client, looked at outside the lock: logging one
        // must not hold up streams starting or ending on other threads.
        let waiting: Vec<Arc<Shared>> = {
            let mut streams = dog.streams();
            if streams.open.is_empty() {
                // Under the lock: a stream starting now either was in the map or sees
                // that no sweeper runs and spawns one.
                streams.sweeping = false;
                sweeping.armed = false;
                return;
            }
            streams
                .open
                .values()
                .filter(|s| s.waiting())
                .cloned()
                .collect()
        };
        for stream in waiting {
            stream.check();
        }
    }
}

/// Clears `sweeping` when a sweeper ends other than by finding no stream: when its runtime
/// shuts down, the next stream spawns one on its own runtime.
struct Sweeping {
    dog: Weak<Watchdog>,
    armed: bool,
}

impl Drop for Sweeping {
    fn drop(&mut self) {
        if self.armed
            && let Some(dog) = self.dog.upgrade()
        {
            dog.streams().sweeping = false;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use uuid::Uuid;

    use super::{ClientWatch, Watchdog};

    const AFTER: Duration = Duration::from_millis(40);

    fn watch(dog: &Arc<Watchdog>) -> ClientWatch {
        ClientWatch::on(dog, Uuid::now_v7(), "actor".to_owned(), "test")
    }

    fn logged(watch: &ClientWatch) -> bool {
        watch
            .shared
            .logged
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn sweeping(dog: &Watchdog) -> bool {
        dog.streams().sweeping
    }

    /// Waits up to five seconds for `done`; the sweeper's period here is 10 ms.
    async fn eventually(what: &str, done: impl Fn() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("not within five seconds: {what}");
    }

    #[tokio::test]
    async fn the_sweeper_runs_only_while_streams_are_open() {
        let dog = Watchdog::new(AFTER);
        assert!(!sweeping(&dog));
        let first = watch(&dog);
        let second = watch(&dog);
        assert_eq!(dog.watched(), 2);
        assert!(sweeping(&dog));
        drop(first);
        assert_eq!(dog.watched(), 1);
        drop(second);
        assert_eq!(dog.watched(), 0);
        eventually("the sweeper ends with no stream open", || !sweeping(&dog)).await;
        let third = watch(&dog);
        assert!(sweeping(&dog), "a new stream starts a sweeper again");
        third.handed(10, 0, 0);
        eventually("the restarted sweeper logs a stalled client", || {
            logged(&third)
        })
        .await;
    }

    #[tokio::test]
    async fn the_sweeper_logs_a_stream_waiting_on_its_client_and_not_one_keeping_up() {
        // Longer than the other tests' limit: the stream that keeps up must not look
        // stalled to a loaded machine that holds this task back for a moment.
        let after = Duration::from_millis(200);
        let dog = Watchdog::new(after);
        let stalled = watch(&dog);
        let reading = watch(&dog);
        stalled.handed(100, 50, 1);
        let started = std::time::Instant::now();
        // Asked for the next chunk every few milliseconds: never waiting long. Both stay
        // open, so only the sweeper can have looked at them.
        while !(logged(&stalled) && started.elapsed() >= 2 * after) {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the stalled client was not logged"
            );
            reading.handed(100, 0, 0);
            tokio::time::sleep(Duration::from_millis(5)).await;
            reading.asked();
        }
        assert!(!logged(&reading));
    }

    #[test]
    fn a_sweeper_whose_runtime_ended_is_replaced_by_the_next_stream() {
        let dog = Watchdog::new(AFTER);
        let first = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // The sweeper is spawned on the first runtime, which then goes away with it.
        let early = first.block_on(async { watch(&dog) });
        assert!(sweeping(&dog));
        drop(first);
        assert!(!sweeping(&dog), "the dropped sweeper cleared its mark");
        let second = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        second.block_on(async {
            let late = watch(&dog);
            early.handed(10, 0, 0);
            eventually("a stream of the first runtime is still looked at", || {
                logged(&early)
            })
            .await;
            drop(late);
        });
    }
}
