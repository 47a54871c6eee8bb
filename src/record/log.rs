//! A [`Recorder`] that writes each record as one structured `tracing` event.

use super::{
    InterceptionEndedRecord, InterceptionRecord, ModelThoughtRecord, PromptRecord, Record,
    RecordError, Recorder, TokenUsageRecord, ToolUsageRecord,
};

/// Logs records at `info` under the target `aibridge::record`, as JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogRecorder;

impl LogRecorder {
    fn emit(record: &Record) -> Result<(), RecordError> {
        let json =
            serde_json::to_string(record).map_err(|e| RecordError::Rejected(e.to_string()))?;
        tracing::info!(target: "aibridge::record", kind = record.kind(), record = %json);
        Ok(())
    }
}

#[async_trait::async_trait]
impl Recorder for LogRecorder {
    async fn record_interception(&self, r: &InterceptionRecord) -> Result<(), RecordError> {
        Self::emit(&Record::Interception(r.clone()))
    }
    async fn record_interception_ended(
        &self,
        r: &InterceptionEndedRecord,
    ) -> Result<(), RecordError> {
        Self::emit(&Record::InterceptionEnded(r.clone()))
    }
    async fn record_token_usage(&self, r: &TokenUsageRecord) -> Result<(), RecordError> {
        Self::emit(&Record::TokenUsage(r.clone()))
    }
    async fn record_prompt(&self, r: &PromptRecord) -> Result<(), RecordError> {
        Self::emit(&Record::Prompt(r.clone()))
    }
    async fn record_tool_usage(&self, r: &ToolUsageRecord) -> Result<(), RecordError> {
        Self::emit(&Record::ToolUsage(r.clone()))
    }
    async fn record_model_thought(&self, r: &ModelThoughtRecord) -> Result<(), RecordError> {
        Self::emit(&Record::ModelThought(r.clone()))
    }

    async fn record_batch(&self, records: &[Record]) -> Result<(), RecordError> {
        records.iter().try_for_each(Self::emit)
    }
}
