//! The recording pipeline: a bounded queue between the request path and a [`Recorder`].
//!
//! The request path calls [`RecordQueue::submit`], which never waits; a background task
//! batches records and hands them to the sink.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{Record, Recorder};

/// Tuning of the pipeline.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// How many records may wait in the queue.
    pub queue_capacity: usize,
    /// The most records written in one batch.
    pub max_batch: usize,
    /// How long shutdown may take to drain the queue.
    pub drain_timeout: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 65_536,
            max_batch: 512,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// The request path's handle: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct RecordQueue {
    tx: mpsc::Sender<Record>,
}

impl RecordQueue {
    /// Hands a record to the pipeline without waiting.
    pub fn submit(&self, record: Record) {
        if let Err(err) = self.tx.try_send(record) {
            tracing::error!(
                kind = err.into_inner().kind(),
                "record queue full or closed; record dropped"
            );
        }
    }
}

/// Owns the background batcher.
#[derive(Debug)]
pub struct Pipeline {
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    drain_timeout: Duration,
}

/// What shutdown achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Records that could not be written before the timeout.
    pub left: usize,
}

impl Pipeline {
    /// Starts the batcher for `recorder`.
    pub fn start(recorder: Arc<dyn Recorder>, config: PipelineConfig) -> (RecordQueue, Pipeline) {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run(recorder, rx, stop_rx, config.max_batch.max(1)));
        (
            RecordQueue { tx },
            Pipeline {
                shutdown: Some(stop_tx),
                task,
                drain_timeout: config.drain_timeout,
            },
        )
    }

    /// Stops accepting records and writes what is queued, within the drain timeout.
    pub async fn shutdown(mut self) -> ShutdownReport {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        match tokio::time::timeout(self.drain_timeout, &mut self.task).await {
            Ok(_) => ShutdownReport { left: 0 },
            Err(_) => {
                self.task.abort();
                ShutdownReport { left: 1 }
            }
        }
    }
}

async fn run(
    recorder: Arc<dyn Recorder>,
    mut rx: mpsc::Receiver<Record>,
    mut stop: oneshot::Receiver<()>,
    max_batch: usize,
) {
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, max_batch) => {
                if n == 0 {
                    return;
                }
                write(&*recorder, &mut batch).await;
            }
            _ = &mut stop => {
                rx.close();
                while rx.recv_many(&mut batch, max_batch).await > 0 {
                    write(&*recorder, &mut batch).await;
                }
                return;
            }
        }
    }
}

async fn write(recorder: &dyn Recorder, batch: &mut Vec<Record>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match recorder.record_batch(batch).await {
            Ok(()) => break,
            Err(err) => {
                tracing::warn!(error = %err, records = batch.len(), "record batch failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    batch.clear();
}
