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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use chrono::{TimeZone, Utc};
    use serde_json::{Map, Value, json};
    use uuid::Uuid;

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn each_record_is_one_json_log_event() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || writer.clone())
            .finish();
        let prompt = Record::Prompt(PromptRecord {
            id: Uuid::nil(),
            interception_id: Uuid::max(),
            provider_response_id: "msg_1".into(),
            prompt: "hello".into(),
            metadata: Map::new(),
            created_at: Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
        });
        tracing::subscriber::with_default(subscriber, || {
            LogRecorder::emit(&prompt).unwrap();
        });
        let out = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        let event: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(event["level"], "INFO");
        assert_eq!(event["target"], "aibridge::record");
        assert_eq!(event["fields"]["kind"], "prompt");
        let record: Value =
            serde_json::from_str(event["fields"]["record"].as_str().unwrap()).unwrap();
        assert_eq!(record, serde_json::to_value(&prompt).unwrap());
        assert_eq!(record["prompt"], json!("hello"));
    }
}
