//! Records per second sustained through the recording pipeline into a `SqlRecorder`.
//!
//! ```text
//! cargo run --release --example recorder_throughput -- [DATABASE_URL] [RECORDS]
//! ```
//! Without a URL it writes a fresh SQLite file in a temp dir. A PostgreSQL URL should name
//! an empty database; the tables are created. The producer keeps the queue below three
//! quarters full, so the figure is what the sink sustains, not how fast the spool fills.

use std::sync::Arc;
use std::time::Instant;

use aibridge::record::pipeline::RecordResult;
use aibridge::record::*;
use chrono::Utc;
use serde_json::{Map, json};

const QUEUE: usize = 65_536;

fn interception(actor: usize, n: usize) -> Vec<Record> {
    let id = new_id();
    let now = Utc::now();
    let mut meta = Map::new();
    meta.insert("team".into(), json!("platform"));
    vec![
        Record::Interception(InterceptionRecord {
            id,
            initiator_id: format!("actor-{actor}"),
            provider: "anthropic".into(),
            provider_name: "anthropic".into(),
            api: "messages".into(),
            model: "claude-sonnet-4-5".into(),
            client: "claude-code".into(),
            user_agent: Some("claude-cli/2.1.0 (external, cli)".into()),
            client_session_id: Some(format!("session-{actor}")),
            credential_kind: "centralized".into(),
            credential_hint: Some("sk-a…wxyz".into()),
            streaming: true,
            started_at: now,
            metadata: meta,
        }),
        Record::Prompt(PromptRecord {
            id: new_id(),
            interception_id: id,
            provider_response_id: String::new(),
            prompt: format!("Refactor module {n} so that the parser handles nested blocks."),
            metadata: Map::new(),
            created_at: now,
        }),
        Record::ModelThought(ModelThoughtRecord {
            id: new_id(),
            interception_id: id,
            content: "The parser has two entry points; start with the outer one.".into(),
            metadata: Map::new(),
            created_at: now,
        }),
        Record::ToolUsage(ToolUsageRecord {
            id: new_id(),
            interception_id: id,
            provider_response_id: "msg_01".into(),
            provider_tool_call_id: Some("toolu_01".into()),
            server_url: None,
            tool: "Read".into(),
            input: json!({"file_path": "/src/parser.rs"}),
            injected: false,
            invocation_error: None,
            metadata: Map::new(),
            created_at: now,
        }),
        Record::TokenUsage(TokenUsageRecord {
            id: new_id(),
            interception_id: id,
            provider_response_id: "msg_01".into(),
            input_tokens: 1200,
            output_tokens: 340,
            cache_read_input_tokens: 5000,
            cache_write_input_tokens: 80,
            extra: TokenCounts::new(),
            created_at: now,
        }),
        Record::InterceptionEnded(InterceptionEndedRecord {
            id,
            ended_at: now,
            outcome: Outcome::Completed,
            upstream_status: Some(200),
            attempts: 1,
            metadata: Map::new(),
        }),
    ]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = tempfile::tempdir()?;
    let url = args.next().unwrap_or_else(|| {
        format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("bench.db").display()
        )
    });
    let records: usize = args.next().map_or(Ok(300_000), |n| n.parse())?;
    let recorder = SqlRecorder::connect(&url).await?;
    recorder.migrate().await?;

    let config = PipelineConfig {
        queue_capacity: QUEUE,
        spool_path: Some(dir.path().join("spool.jsonl")),
        ..PipelineConfig::default()
    };
    let metrics = config.metrics.clone();
    let (queue, pipeline) = Pipeline::start(Arc::new(recorder), config);

    let started = Instant::now();
    let mut submitted = 0;
    let mut n = 0;
    while submitted < records {
        while metrics.queue_depth() > (QUEUE * 3 / 4) as i64 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        for record in interception(n % 50, n) {
            queue.submit(record);
            submitted += 1;
        }
        n += 1;
    }
    let report = pipeline.shutdown().await;
    let secs = started.elapsed().as_secs_f64();
    let scheme = url.split(':').next().unwrap_or_default();
    println!(
        "{scheme}: {submitted} records ({n} interceptions) in {secs:.2}s = {:.0} records/s \
         (written {}, spooled {}, left {}, lost {})",
        submitted as f64 / secs,
        metrics.records_total_all(RecordResult::Written),
        metrics.records_total_all(RecordResult::Spooled),
        report.left,
        report.lost,
    );
    Ok(())
}
