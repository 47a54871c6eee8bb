//! The recording pipeline: a bounded queue between the request path and a [`Recorder`].
//!
//! The request path calls [`RecordQueue::submit`], which never waits and never touches a
//! file. A background batcher writes queued records to the sink in batches, retrying with
//! backoff. When the sink stays down longer than [`PipelineConfig::retry_for`], or the queue
//! is full, records go to the [`Spool`] (an append-only file when
//! [`PipelineConfig::spool_path`] is set), which is replayed in order once the sink recovers.
//! While spooling, `submit` only appends the record to an in-memory overflow list; the
//! batcher moves that list to the back of the spool (also while it waits on the sink), so
//! file writes stay off the request path. Everything passes through one ordered path, so
//! records keep their order (per interception, and overall): queue, then spool, then
//! overflow. On shutdown the queue and the spool are drained within
//! [`PipelineConfig::drain_timeout`]; what is left stays in the spool file for the next
//! start, and records submitted after shutdown are appended to it directly.

mod batcher;
mod metrics;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_util::sync::CancellationToken;

pub use metrics::{PipelineMetrics, RecordResult};

use super::spool::Spool;
use super::{Record, Recorder};

/// Tuning of the pipeline.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// How many records may wait in the in-memory queue.
    pub queue_capacity: usize,
    /// The most records written in one batch (one transaction for the SQL sink).
    pub max_batch: usize,
    /// How long the batcher waits for more records after the first of a batch arrives at an
    /// idle queue (less once `max_batch` records are waiting). One transaction for many
    /// records costs far less than one each; records reach the sink up to this much later,
    /// responses are not delayed. Zero writes at once.
    pub batch_linger: Duration,
    /// How long shutdown may take to drain the queue and the spool.
    pub drain_timeout: Duration,
    /// The spool file. `None` keeps the spool in memory: nothing is lost while the process
    /// runs, but records still spooled at exit are.
    pub spool_path: Option<PathBuf>,
    /// How long a failing batch is retried before it (and the queue behind it) is spooled.
    pub retry_for: Duration,
    /// The first retry delay; it doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    /// The longest delay between two attempts.
    pub max_backoff: Duration,
    /// Where the pipeline counts; use [`PipelineMetrics::register`] to export them.
    pub metrics: PipelineMetrics,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 65_536,
            // Each transaction rewrites the last, partly filled page of every B-tree it
            // touches (14 per blocking request with SQLite), whatever the rows: at a few
            // thousand requests per second a 20 ms batch wrote about four times the rows'
            // bytes. A quarter of a second halves the SQLite thread's time per request there
            // (docs/performance.md, round 11); records are visible that much later.
            max_batch: 8192,
            batch_linger: Duration::from_millis(250),
            drain_timeout: Duration::from_secs(10),
            spool_path: None,
            retry_for: Duration::from_secs(5),
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            metrics: PipelineMetrics::default(),
        }
    }
}

/// State shared by the request path and the batcher.
///
/// Two locks: `intake` is what the request path takes (never held across I/O), `spool` is
/// the batcher's (held while it reads or writes the spool file). Whoever needs both takes
/// `spool` first.
#[derive(Debug)]
struct Shared {
    intake: Mutex<Intake>,
    spool: Mutex<SpoolState>,
    /// Wakes the batcher when the overflow list gets its first record.
    overflow_ready: Notify,
    metrics: PipelineMetrics,
}

#[derive(Debug, Default)]
struct Intake {
    /// While set, new records go to `overflow`, behind everything in the queue and spool.
    spooling: bool,
    /// Records waiting for the batcher to append them to the spool, in order.
    overflow: Vec<Record>,
    /// Set once the batcher has stopped: records go straight to the spool.
    closed: bool,
}

#[derive(Debug)]
struct SpoolState {
    spool: Spool,
    /// Records that could not be kept at all (the spool file could not be written).
    lost: usize,
}

impl Shared {
    fn intake(&self) -> MutexGuard<'_, Intake> {
        self.intake.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn spool(&self) -> MutexGuard<'_, SpoolState> {
        self.spool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves the overflow list to the back of the spool. `spool` is this pipeline's spool,
    /// locked by the caller, so nothing else is appended in between.
    fn flush_overflow(&self, spool: &mut SpoolState) {
        let records = std::mem::take(&mut self.intake().overflow);
        if !records.is_empty() {
            spool.append_counted(&records, &self.metrics);
        }
    }

    /// After the batcher: everything in the overflow goes to the spool, and later records
    /// are appended there by `submit` itself.
    fn close(&self) -> MutexGuard<'_, SpoolState> {
        let mut spool = self.spool();
        let records = {
            let mut intake = self.intake();
            intake.closed = true;
            std::mem::take(&mut intake.overflow)
        };
        if !records.is_empty() {
            spool.append_counted(&records, &self.metrics);
        }
        spool
    }
}

impl SpoolState {
    /// Appends records not counted yet (submitted after shutdown).
    fn append(&mut self, records: &[Record], metrics: &PipelineMetrics) {
        match self.spool.append(records) {
            Ok(()) => {
                metrics.count(records, RecordResult::Spooled);
                metrics.spool_depth_gauge().inc_by(records.len() as i64);
            }
            Err(err) => self.fail(records, metrics, &err),
        }
    }

    /// Appends records from the overflow list, which were counted as spooled (and in the
    /// spool depth) when they were submitted.
    fn append_counted(&mut self, records: &[Record], metrics: &PipelineMetrics) {
        if let Err(err) = self.spool.append(records) {
            metrics.spool_depth_gauge().dec_by(records.len() as i64);
            self.fail(records, metrics, &err);
        }
    }

    fn fail(&mut self, records: &[Record], metrics: &PipelineMetrics, err: &std::io::Error) {
        tracing::error!(error = %err, records = records.len(), "cannot write the record spool; records lost");
        metrics.count(records, RecordResult::Failed);
        self.lost += records.len();
    }
}

/// The request path's handle: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct RecordQueue {
    /// `None` when recording is off.
    inner: Option<QueueInner>,
}

#[derive(Debug, Clone)]
struct QueueInner {
    tx: mpsc::Sender<Record>,
    shared: Arc<Shared>,
}

impl RecordQueue {
    /// A queue that drops every record: recording is off.
    pub fn disabled() -> RecordQueue {
        RecordQueue { inner: None }
    }

    /// Hands a record to the pipeline without waiting. When the queue is full (or the
    /// sink is down) the record goes to the spool: in memory here, to the file by the
    /// batcher. After shutdown it is appended to the spool file directly.
    pub fn submit(&self, record: Record) {
        let Some(QueueInner { tx, shared }) = &self.inner else {
            return;
        };
        let metrics = &shared.metrics;
        let mut intake = shared.intake();
        let record = if intake.spooling || intake.closed {
            record
        } else {
            metrics.queue_depth_gauge().inc();
            match tx.try_send(record) {
                Ok(()) => return,
                Err(TrySendError::Full(record) | TrySendError::Closed(record)) => {
                    metrics.queue_depth_gauge().dec();
                    intake.spooling = true;
                    record
                }
            }
        };
        if intake.closed {
            // No batcher any more: the spool file is the only safe place left.
            drop(intake);
            shared
                .spool()
                .append(std::slice::from_ref(&record), metrics);
            return;
        }
        metrics.count_kind(record.kind(), RecordResult::Spooled, 1);
        metrics.spool_depth_gauge().inc();
        let first = intake.overflow.is_empty();
        intake.overflow.push(record);
        drop(intake);
        if first {
            shared.overflow_ready.notify_one();
        }
    }
}

/// Owns the background batcher.
#[derive(Debug)]
pub struct Pipeline {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<ShutdownReport>,
    shared: Arc<Shared>,
    drain_timeout: Duration,
}

/// What shutdown achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Records not written to the sink. With a spool file they stay there and the next
    /// pipeline on the same file replays them first.
    pub left: usize,
    /// Records that are gone: spooled in memory at exit, or the spool file failed.
    pub lost: usize,
}

impl Pipeline {
    /// Starts the batcher for `recorder`. Records left in the spool file by a previous run
    /// are replayed before new ones.
    pub fn start(recorder: Arc<dyn Recorder>, config: PipelineConfig) -> (RecordQueue, Pipeline) {
        let spool = match &config.spool_path {
            Some(path) => Spool::open(path).unwrap_or_else(|err| {
                tracing::error!(error = %err, path = %path.display(), "cannot open the record spool file; spooling in memory");
                Spool::memory()
            }),
            None => Spool::memory(),
        };
        let pending = spool.pending();
        config.metrics.spool_depth_gauge().set(pending as i64);
        let shared = Arc::new(Shared {
            intake: Mutex::new(Intake {
                spooling: pending > 0,
                ..Intake::default()
            }),
            spool: Mutex::new(SpoolState { spool, lost: 0 }),
            overflow_ready: Notify::new(),
            metrics: config.metrics.clone(),
        });
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let stop = CancellationToken::new();
        let drain_timeout = config.drain_timeout;
        let batcher = batcher::Batcher::new(recorder, rx, shared.clone(), &config, stop.clone());
        let task = tokio::spawn(batcher.run());
        (
            RecordQueue {
                inner: Some(QueueInner {
                    tx,
                    shared: shared.clone(),
                }),
            },
            Pipeline {
                stop,
                task,
                shared,
                drain_timeout,
            },
        )
    }

    /// Stops taking records into the queue and writes what is queued and spooled, within
    /// the drain timeout. Records submitted afterwards are appended to the spool.
    pub async fn shutdown(mut self) -> ShutdownReport {
        self.stop.cancel();
        // The batcher keeps its own deadline; this outer one only guards against a sink
        // call that ignores cancellation.
        let grace = self.drain_timeout + Duration::from_secs(5);
        let report = match tokio::time::timeout(grace, &mut self.task).await {
            Ok(Ok(report)) => report,
            Ok(Err(_)) | Err(_) => {
                self.task.abort();
                let state = self.shared.close();
                let left =
                    state.spool.pending() + self.shared.metrics.queue_depth().max(0) as usize;
                ShutdownReport {
                    left,
                    lost: state.lost + if state.spool.is_durable() { 0 } else { left },
                }
            }
        };
        if report.left > 0 || report.lost > 0 {
            tracing::warn!(
                left = report.left,
                lost = report.lost,
                "record pipeline stopped with records not written"
            );
        }
        report
    }
}
