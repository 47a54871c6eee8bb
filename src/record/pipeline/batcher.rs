//! The background task: queue → sink, sink down → spool, spool → sink.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{PipelineConfig, RecordResult, Shared, ShutdownReport};
use crate::record::{Record, RecordError, Recorder};

/// How many times a linger looks at the queue for a full batch.
const LINGER_LOOKS: u32 = 10;

/// Where a batch came from, which decides how long it is retried and how it is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// From the queue: retried for `retry_for`, then spooled.
    Queue,
    /// From the spool: already safe on disk, retried until shutdown.
    Spool,
}

pub(super) struct Batcher {
    recorder: Arc<dyn Recorder>,
    rx: mpsc::Receiver<Record>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    max_batch: usize,
    linger: Duration,
    retry_for: Duration,
    initial_backoff: Duration,
    max_backoff: Duration,
    drain_timeout: Duration,
}

impl Batcher {
    pub(super) fn new(
        recorder: Arc<dyn Recorder>,
        rx: mpsc::Receiver<Record>,
        shared: Arc<Shared>,
        config: &PipelineConfig,
        stop: CancellationToken,
    ) -> Self {
        Self {
            recorder,
            rx,
            shared,
            stop,
            max_batch: config.max_batch.max(1),
            linger: config.batch_linger,
            retry_for: config.retry_for,
            initial_backoff: config.initial_backoff.max(Duration::from_millis(1)),
            max_backoff: config.max_backoff,
            drain_timeout: config.drain_timeout,
        }
    }

    pub(super) async fn run(mut self) -> ShutdownReport {
        self.serve().await;
        self.drain().await
    }

    /// Normal operation, until shutdown is requested.
    async fn serve(&mut self) {
        // Grows to what the load needs and is reused: a full batch's room up front (a few
        // MB with the default `max_batch`) would sit in an idle bridge's memory.
        let mut batch = Vec::new();
        while !self.stop.is_cancelled() {
            // The queue always holds records older than the spool's, so it goes first.
            if !self.rx.is_empty() {
                self.rx.recv_many(&mut batch, self.max_batch).await;
                self.linger(&mut batch).await;
                self.write_queued(&mut batch, None).await;
            } else if self.shared.intake().spooling {
                self.replay_chunk(None).await;
            } else {
                tokio::select! {
                    biased;
                    () = self.stop.cancelled() => return,
                    n = self.rx.recv_many(&mut batch, self.max_batch) => {
                        if n == 0 {
                            return;
                        }
                        self.linger(&mut batch).await;
                        self.write_queued(&mut batch, None).await;
                    }
                    () = self.shared.overflow_ready.notified() => self.flush_overflow(),
                }
            }
        }
    }

    /// Unless a full batch is waiting, waits a moment and takes what arrived meanwhile: each
    /// sink call has a fixed cost (a transaction, a few thread hand-offs) that a bigger
    /// batch shares, and submits do not wake the batcher while it waits. The queue is
    /// looked at a few times during the wait, which ends once a full batch is waiting: at
    /// a high rate the records held in memory stay near `max_batch` rather than a whole
    /// linger's worth.
    async fn linger(&mut self, batch: &mut Vec<Record>) {
        if batch.len() >= self.max_batch || self.linger.is_zero() {
            return;
        }
        let until = Instant::now() + self.linger;
        let step = (self.linger / LINGER_LOOKS).max(Duration::from_millis(1));
        loop {
            let now = Instant::now();
            if now >= until || self.stop.is_cancelled() {
                break;
            }
            self.pause(step.min(until - now), None).await;
            if batch.len() + self.rx.len() >= self.max_batch {
                break;
            }
        }
        while batch.len() < self.max_batch {
            match self.rx.try_recv() {
                Ok(record) => batch.push(record),
                Err(_) => break,
            }
        }
    }

    /// Shutdown: close the queue, write it, then replay the spool, all before the deadline.
    async fn drain(&mut self) -> ShutdownReport {
        let deadline = Instant::now() + self.drain_timeout;
        {
            // Under the lock, so a concurrent submit either made it into the queue or
            // sees the queue closed and spools.
            let _intake = self.shared.intake();
            self.rx.close();
        }
        let mut batch = Vec::new();
        while self.rx.recv_many(&mut batch, self.max_batch).await > 0 {
            self.write_queued(&mut batch, Some(deadline)).await;
        }
        loop {
            let spooling = self.shared.intake().spooling;
            if !spooling || Instant::now() >= deadline {
                break;
            }
            self.replay_chunk(Some(deadline)).await;
        }
        let state = self.shared.close();
        if let Err(err) = state.spool.sync() {
            tracing::error!(error = %err, "cannot sync the record spool file");
        }
        let left = state.spool.pending();
        ShutdownReport {
            left,
            lost: state.lost + if state.spool.is_durable() { 0 } else { left },
        }
    }

    /// Writes a batch taken from the queue; if the sink stays down, spools it together with
    /// the rest of the queue.
    async fn write_queued(&mut self, batch: &mut Vec<Record>, deadline: Option<Instant>) {
        let metrics = &self.shared.metrics;
        metrics.queue_depth_gauge().dec_by(batch.len() as i64);
        let delivered = self.deliver(batch, Source::Queue, deadline).await;
        if delivered < batch.len() {
            let rest = batch.split_off(delivered);
            self.spill(rest);
        }
        batch.clear();
    }

    /// Moves `rest` and everything still queued to the front of the spool, and switches the
    /// request path to spooling so that newer records line up behind them.
    fn spill(&mut self, mut rest: Vec<Record>) {
        let metrics = self.shared.metrics.clone();
        // The spool lock first: the overflow (newer than the queue) can only reach the spool
        // file after the prepend below.
        let mut state = self.shared.spool();
        {
            let mut intake = self.shared.intake();
            while let Ok(record) = self.rx.try_recv() {
                metrics.queue_depth_gauge().dec();
                rest.push(record);
            }
            intake.spooling = true;
        }
        let count = rest.len();
        let kinds: Vec<&'static str> = rest.iter().map(Record::kind).collect();
        match state.spool.prepend(rest) {
            Ok(()) => {
                for kind in kinds {
                    metrics.count_kind(kind, RecordResult::Spooled, 1);
                }
                metrics.spool_depth_gauge().inc_by(count as i64);
                tracing::warn!(records = count, "record sink unavailable; spooling");
            }
            Err(err) => {
                tracing::error!(error = %err, records = count, "cannot write the record spool; records lost");
                metrics.count_kind("unknown", RecordResult::Failed, count as u64);
                state.lost += count;
            }
        }
    }

    /// Replays one chunk from the front of the spool; when the spool is empty, switches the
    /// request path back to the queue.
    async fn replay_chunk(&mut self, deadline: Option<Instant>) {
        let metrics = self.shared.metrics.clone();
        let peeked = {
            let mut state = self.shared.spool();
            self.shared.flush_overflow(&mut state);
            state.spool.peek(self.max_batch)
        };
        let chunk = match peeked {
            Ok(chunk) => chunk,
            Err(err) => {
                tracing::error!(error = %err, "cannot read the record spool");
                self.pause(self.max_backoff, deadline).await;
                return;
            }
        };
        if chunk.records.is_empty() && chunk.corrupt == 0 {
            if !self.finish_replay() {
                // Nothing readable, yet the file is not empty: do not spin.
                self.pause(self.max_backoff, deadline).await;
            }
            return;
        }
        if chunk.corrupt > 0 {
            tracing::error!(
                lines = chunk.corrupt,
                "unreadable lines in the record spool skipped"
            );
            metrics.count_kind("unknown", RecordResult::Failed, chunk.corrupt as u64);
        }
        let delivered = self.deliver(&chunk.records, Source::Spool, deadline).await;
        let mut state = self.shared.spool();
        let before = state.spool.pending();
        state.spool.consume(&chunk, delivered);
        let consumed = before - state.spool.pending();
        metrics.spool_depth_gauge().dec_by(consumed as i64);
    }

    /// Once nothing is left to read: empties the spool file and switches the request path
    /// back to the queue. Returns whether the spool was empty.
    fn finish_replay(&self) -> bool {
        let mut state = self.shared.spool();
        let drained = match state.spool.reset_if_drained() {
            Ok(drained) => drained,
            Err(err) => {
                tracing::error!(error = %err, "cannot truncate the record spool");
                false
            }
        };
        if drained {
            let mut intake = self.shared.intake();
            // Records submitted since the last flush keep the pipeline spooling: the next
            // round moves them to the spool and replays them.
            if intake.overflow.is_empty() {
                intake.spooling = false;
                self.shared.metrics.spool_depth_gauge().set(0);
                tracing::info!("record spool replayed");
            }
        }
        drained
    }

    /// Writes `records`, retrying while the sink is unavailable; returns how many of them
    /// (a prefix) are done: written, or rejected for good and counted as failed.
    async fn deliver(
        &self,
        records: &[Record],
        source: Source,
        deadline: Option<Instant>,
    ) -> usize {
        let metrics = &self.shared.metrics;
        let started = Instant::now();
        let mut backoff = self.initial_backoff;
        let mut attempts = 0u32;
        loop {
            match self.attempt(records, deadline).await {
                Ok(()) => {
                    metrics.count(records, success(source));
                    if attempts > 0 {
                        tracing::info!(attempts, "record sink recovered");
                    }
                    return records.len();
                }
                Err(RecordError::Rejected(reason)) => {
                    tracing::warn!(%reason, records = records.len(), "record batch rejected; writing records one by one");
                    return self.deliver_one_by_one(records, source, deadline).await;
                }
                Err(RecordError::Unavailable(reason)) => {
                    attempts += 1;
                    if attempts == 1 {
                        tracing::warn!(%reason, records = records.len(), "record sink unavailable; retrying");
                    }
                    let give_up = match source {
                        Source::Queue => started.elapsed() >= self.retry_for,
                        Source::Spool => false,
                    } || self.stop.is_cancelled() && deadline.is_none()
                        || deadline.is_some_and(|d| Instant::now() >= d);
                    if give_up {
                        return 0;
                    }
                    self.pause(backoff, deadline).await;
                    backoff = (backoff * 2).min(self.max_backoff);
                }
            }
        }
    }

    /// After a rejected batch: isolate the records the sink will never take.
    async fn deliver_one_by_one(
        &self,
        records: &[Record],
        source: Source,
        deadline: Option<Instant>,
    ) -> usize {
        let metrics = &self.shared.metrics;
        for (i, record) in records.iter().enumerate() {
            match self.attempt(std::slice::from_ref(record), deadline).await {
                Ok(()) => metrics.count_kind(record.kind(), success(source), 1),
                Err(RecordError::Rejected(reason)) => {
                    tracing::error!(kind = record.kind(), id = %record.interception_id(), %reason, "record rejected by the sink; dropped");
                    metrics.count_kind(record.kind(), RecordResult::Failed, 1);
                }
                Err(RecordError::Unavailable(_)) => return i,
            }
        }
        records.len()
    }

    /// One call to the sink, timed, bounded by the shutdown deadline.
    async fn attempt(
        &self,
        records: &[Record],
        deadline: Option<Instant>,
    ) -> Result<(), RecordError> {
        let started = Instant::now();
        let result = match deadline {
            Some(d) => self
                .flushing(tokio::time::timeout_at(
                    d,
                    self.recorder.record_batch(records),
                ))
                .await
                .unwrap_or_else(|_| {
                    Err(RecordError::Unavailable("shutdown deadline reached".into()))
                }),
            None => self.flushing(self.recorder.record_batch(records)).await,
        };
        self.shared
            .metrics
            .observe_batch(started.elapsed().as_secs_f64());
        result
    }

    /// Sleeps, waking early for shutdown (in normal operation) or at the deadline.
    async fn pause(&self, delay: Duration, deadline: Option<Instant>) {
        let until = Instant::now() + delay;
        match deadline {
            Some(d) => self.flushing(tokio::time::sleep_until(until.min(d))).await,
            None => {
                self.flushing(async {
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => {}
                        () = self.stop.cancelled() => {}
                    }
                })
                .await;
            }
        }
    }

    /// Runs `work` (a sink call, a backoff), moving the overflow list to the spool whenever
    /// it gets records meanwhile: the request path never waits on the sink, and the
    /// overflow stays small however long the sink takes.
    async fn flushing<F: Future>(&self, work: F) -> F::Output {
        tokio::pin!(work);
        loop {
            tokio::select! {
                biased;
                out = &mut work => return out,
                () = self.shared.overflow_ready.notified() => self.flush_overflow(),
            }
        }
    }

    fn flush_overflow(&self) {
        let mut state = self.shared.spool();
        self.shared.flush_overflow(&mut state);
    }
}

fn success(source: Source) -> RecordResult {
    match source {
        Source::Queue => RecordResult::Written,
        Source::Spool => RecordResult::Replayed,
    }
}
