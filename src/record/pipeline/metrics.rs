//! The pipeline's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::record::Record;

/// What happened to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordResult {
    /// Written to the sink from the queue.
    Written,
    /// Put in the spool because the queue was full or the sink was down.
    Spooled,
    /// Written to the sink from the spool.
    Replayed,
    /// Rejected by the sink, unreadable in the spool, or impossible to spool.
    Failed,
}

impl RecordResult {
    fn as_str(self) -> &'static str {
        match self {
            RecordResult::Written => "written",
            RecordResult::Spooled => "spooled",
            RecordResult::Replayed => "replayed",
            RecordResult::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecordLabels {
    kind: &'static str,
    result: &'static str,
}

/// Counters and gauges of the recording pipeline. Cloning shares the same metrics.
#[derive(Debug, Clone)]
pub struct PipelineMetrics {
    records: Family<RecordLabels, Counter>,
    queue_depth: Gauge,
    spool_depth: Gauge,
    batch_duration: Histogram,
}

impl Default for PipelineMetrics {
    fn default() -> Self {
        Self {
            records: Family::default(),
            queue_depth: Gauge::default(),
            spool_depth: Gauge::default(),
            batch_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
        }
    }
}

impl PipelineMetrics {
    /// Creates the metrics and registers them: `aibridge_records_total{kind,result}`,
    /// `aibridge_record_queue_depth`, `aibridge_record_spool_depth` and
    /// `aibridge_record_batch_duration_seconds`.
    pub fn register(registry: &mut Registry) -> PipelineMetrics {
        let metrics = PipelineMetrics::default();
        registry.register(
            "records",
            "Records by kind and result (written, spooled, replayed, failed)",
            metrics.records.clone(),
        );
        registry.register(
            "record_queue_depth",
            "Records waiting in the in-memory queue",
            metrics.queue_depth.clone(),
        );
        registry.register(
            "record_spool_depth",
            "Records waiting in the spool for the sink to recover",
            metrics.spool_depth.clone(),
        );
        registry.register(
            "record_batch_duration_seconds",
            "Time to write one batch to the sink, failures included",
            metrics.batch_duration.clone(),
        );
        metrics
    }

    /// How many records of `kind` ended with `result` so far (for tests and dashboards).
    pub fn records_total(&self, kind: &'static str, result: RecordResult) -> u64 {
        self.records
            .get_or_create(&RecordLabels {
                kind,
                result: result.as_str(),
            })
            .get()
    }

    /// The sum of [`Self::records_total`] over all kinds.
    pub fn records_total_all(&self, result: RecordResult) -> u64 {
        [
            "interception",
            "interception_ended",
            "token_usage",
            "prompt",
            "tool_usage",
            "model_thought",
            "unknown",
        ]
        .into_iter()
        .map(|kind| self.records_total(kind, result))
        .sum()
    }

    /// Records in the queue now.
    pub fn queue_depth(&self) -> i64 {
        self.queue_depth.get()
    }

    /// Records in the spool now.
    pub fn spool_depth(&self) -> i64 {
        self.spool_depth.get()
    }

    /// Counts a batch by kind: one family lookup per kind present, not one per record.
    pub(super) fn count(&self, records: &[Record], result: RecordResult) {
        let mut counts: [(&'static str, u64); Record::KINDS] = [("", 0); Record::KINDS];
        for record in records {
            let kind = record.kind();
            // Kinds are distinct static strings: a slot is free or holds this kind.
            if let Some(slot) = counts.iter_mut().find(|(k, _)| k.is_empty() || *k == kind) {
                slot.0 = kind;
                slot.1 += 1;
            }
        }
        for (kind, n) in counts.into_iter().take_while(|(k, _)| !k.is_empty()) {
            self.count_kind(kind, result, n);
        }
    }

    pub(super) fn count_kind(&self, kind: &'static str, result: RecordResult, n: u64) {
        self.records
            .get_or_create(&RecordLabels {
                kind,
                result: result.as_str(),
            })
            .inc_by(n);
    }

    pub(super) fn queue_depth_gauge(&self) -> &Gauge {
        &self.queue_depth
    }

    pub(super) fn spool_depth_gauge(&self) -> &Gauge {
        &self.spool_depth
    }

    pub(super) fn observe_batch(&self, seconds: f64) {
        self.batch_duration.observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::Map;
    use uuid::Uuid;

    use super::*;
    use crate::record::{InterceptionEndedRecord, Outcome, PromptRecord};

    fn prompt() -> Record {
        Record::Prompt(PromptRecord {
            id: Uuid::now_v7(),
            interception_id: Uuid::now_v7(),
            provider_response_id: String::new(),
            prompt: "p".into(),
            metadata: Map::new(),
            created_at: Utc::now(),
        })
    }

    fn ended() -> Record {
        Record::InterceptionEnded(InterceptionEndedRecord {
            id: Uuid::now_v7(),
            ended_at: Utc::now(),
            outcome: Outcome::Completed,
            upstream_status: Some(200),
            attempts: 1,
            metadata: Map::new(),
        })
    }

    #[test]
    fn a_batch_is_counted_per_kind() {
        let metrics = PipelineMetrics::default();
        let batch = [prompt(), ended(), prompt(), prompt(), ended()];
        metrics.count(&batch, RecordResult::Written);
        metrics.count(&batch[..1], RecordResult::Written);
        metrics.count(&batch[1..2], RecordResult::Failed);
        assert_eq!(metrics.records_total("prompt", RecordResult::Written), 4);
        assert_eq!(
            metrics.records_total("interception_ended", RecordResult::Written),
            2
        );
        assert_eq!(
            metrics.records_total("interception_ended", RecordResult::Failed),
            1
        );
        assert_eq!(metrics.records_total_all(RecordResult::Written), 6);
        assert_eq!(
            metrics.records_total("token_usage", RecordResult::Written),
            0
        );
    }
}
