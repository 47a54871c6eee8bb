//! An in-memory [`Recorder`], for tests and embedders that inspect records directly.

use std::sync::{Arc, Mutex, PoisonError};

use super::{
    InterceptionEndedRecord, InterceptionRecord, ModelThoughtRecord, PromptRecord, Record,
    RecordError, Recorder, TokenUsageRecord, ToolUsageRecord,
};

/// Keeps every record in a vector, in the order received.
#[derive(Debug, Clone, Default)]
pub struct MemoryRecorder {
    records: Arc<Mutex<Vec<Record>>>,
}

impl MemoryRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of everything recorded so far.
    pub fn records(&self) -> Vec<Record> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn push(&self, record: Record) {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record);
    }
}

#[async_trait::async_trait]
impl Recorder for MemoryRecorder {
    async fn record_interception(&self, r: &InterceptionRecord) -> Result<(), RecordError> {
        self.push(Record::Interception(r.clone()));
        Ok(())
    }
    async fn record_interception_ended(
        &self,
        r: &InterceptionEndedRecord,
    ) -> Result<(), RecordError> {
        self.push(Record::InterceptionEnded(r.clone()));
        Ok(())
    }
    async fn record_token_usage(&self, r: &TokenUsageRecord) -> Result<(), RecordError> {
        self.push(Record::TokenUsage(r.clone()));
        Ok(())
    }
    async fn record_prompt(&self, r: &PromptRecord) -> Result<(), RecordError> {
        self.push(Record::Prompt(r.clone()));
        Ok(())
    }
    async fn record_tool_usage(&self, r: &ToolUsageRecord) -> Result<(), RecordError> {
        self.push(Record::ToolUsage(r.clone()));
        Ok(())
    }
    async fn record_model_thought(&self, r: &ModelThoughtRecord) -> Result<(), RecordError> {
        self.push(Record::ModelThought(r.clone()));
        Ok(())
    }
}
