//! The recording pipeline: order, overflow, outages, spool replay, shutdown accounting.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use aibridge::record::pipeline::RecordResult;
use aibridge::record::sql::entity::{
    interception, model_thought, token_usage, tool_usage, user_prompt,
};
use aibridge::record::*;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::testdb::{TestDb, on_both_backends, sample};

/// A sink that refuses everything while `down`, and can be held until released.
struct Flaky {
    inner: MemoryRecorder,
    down: AtomicBool,
    gate: Semaphore,
    /// Batches it was handed.
    calls: AtomicUsize,
}

impl Flaky {
    fn new(down: bool, open: bool) -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryRecorder::new(),
            down: AtomicBool::new(down),
            gate: Semaphore::new(if open { Semaphore::MAX_PERMITS } else { 0 }),
            calls: AtomicUsize::new(0),
        })
    }
}

#[async_trait::async_trait]
impl Recorder for Flaky {
    async fn record_interception(&self, r: &InterceptionRecord) -> Result<(), RecordError> {
        self.record_batch(&[Record::Interception(r.clone())]).await
    }
    async fn record_interception_ended(
        &self,
        r: &InterceptionEndedRecord,
    ) -> Result<(), RecordError> {
        self.record_batch(&[Record::InterceptionEnded(r.clone())])
            .await
    }
    async fn record_token_usage(&self, r: &TokenUsageRecord) -> Result<(), RecordError> {
        self.record_batch(&[Record::TokenUsage(r.clone())]).await
    }
    async fn record_prompt(&self, r: &PromptRecord) -> Result<(), RecordError> {
        self.record_batch(&[Record::Prompt(r.clone())]).await
    }
    async fn record_tool_usage(&self, r: &ToolUsageRecord) -> Result<(), RecordError> {
        self.record_batch(&[Record::ToolUsage(r.clone())]).await
    }
    async fn record_model_thought(&self, r: &ModelThoughtRecord) -> Result<(), RecordError> {
        self.record_batch(&[Record::ModelThought(r.clone())]).await
    }
    async fn record_batch(&self, records: &[Record]) -> Result<(), RecordError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let _permit = self.gate.acquire().await.unwrap();
        if self.down.load(Ordering::SeqCst) {
            return Err(RecordError::Unavailable("down for the test".into()));
        }
        self.inner.record_batch(records).await
    }
}

fn quick_config(spool: Option<std::path::PathBuf>) -> PipelineConfig {
    PipelineConfig {
        queue_capacity: 16,
        max_batch: 8,
        batch_linger: Duration::from_millis(1),
        drain_timeout: Duration::from_secs(30),
        spool_path: spool,
        retry_for: Duration::from_millis(20),
        initial_backoff: Duration::from_millis(2),
        max_backoff: Duration::from_millis(20),
        metrics: PipelineMetrics::default(),
    }
}

/// Waits (without asserting on time) until `done` holds.
async fn until(mut done: impl FnMut() -> bool) {
    for _ in 0..6000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within a minute");
}

/// Groups records by interception, keeping their order.
fn by_interception(records: &[Record]) -> HashMap<Uuid, Vec<Record>> {
    let mut map: HashMap<Uuid, Vec<Record>> = HashMap::new();
    for r in records {
        map.entry(r.interception_id()).or_default().push(r.clone());
    }
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_survives_overflow_and_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Flaky::new(false, true);
    let config = quick_config(Some(dir.path().join("spool.jsonl")));
    let metrics = config.metrics.clone();
    let (queue, pipeline) = Pipeline::start(sink.clone(), config);

    let mut submitted = Vec::new();
    for i in 0..50 {
        submitted.extend(sample::interception(&format!("a{}", i % 5), "m", i));
    }
    let (first, second) = submitted.split_at(120);
    for r in first {
        queue.submit(r.clone());
    }
    sink.down.store(true, Ordering::SeqCst);
    for r in &second[..60] {
        queue.submit(r.clone());
    }
    until(|| metrics.records_total_all(RecordResult::Spooled) > 0).await;
    for r in &second[60..] {
        queue.submit(r.clone());
    }
    sink.down.store(false, Ordering::SeqCst);
    let report = pipeline.shutdown().await;

    assert_eq!(report, ShutdownReport { left: 0, lost: 0 });
    let stored = sink.inner.records();
    assert_eq!(stored.len(), submitted.len());
    assert_eq!(by_interception(&stored), by_interception(&submitted));
    assert!(metrics.records_total_all(RecordResult::Replayed) > 0);
    assert_eq!(
        metrics.records_total_all(RecordResult::Written)
            + metrics.records_total_all(RecordResult::Replayed),
        submitted.len() as u64
    );
}

#[tokio::test]
async fn a_full_queue_spools_instead_of_blocking_or_dropping() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Flaky::new(false, false);
    let spool = dir.path().join("spool.jsonl");
    let mut config = quick_config(Some(spool.clone()));
    config.queue_capacity = 4;
    let metrics = config.metrics.clone();
    let (queue, pipeline) = Pipeline::start(sink.clone(), config);

    let submitted: Vec<Record> = (0..20)
        .flat_map(|i| sample::interception("busy", "m", i))
        .collect();
    // The sink is held shut, so these calls return only because submit never waits.
    for r in &submitted {
        queue.submit(r.clone());
    }
    assert!(metrics.records_total_all(RecordResult::Spooled) > 0);
    // The batcher has not run yet (one thread, no await since the start): the request path
    // itself wrote nothing to the spool file.
    assert_eq!(std::fs::metadata(&spool).unwrap().len(), 0);
    // While the sink call hangs, the batcher moves the overflow to the file.
    until(|| std::fs::metadata(&spool).unwrap().len() > 0).await;
    sink.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    let report = pipeline.shutdown().await;
    assert_eq!(report, ShutdownReport { left: 0, lost: 0 });
    assert_eq!(sink.inner.records(), submitted);
}

#[tokio::test]
async fn records_arriving_together_share_one_batch() {
    for (linger, batches) in [(Duration::from_secs(30), 1), (Duration::ZERO, 2)] {
        let sink = Flaky::new(false, true);
        let mut config = quick_config(None);
        config.batch_linger = linger;
        let (queue, pipeline) = Pipeline::start(sink.clone(), config);
        let records = sample::interception("calm", "m", 0);
        // One thread: the batcher runs only when this task yields. It waits for the queue…
        tokio::task::yield_now().await;
        queue.submit(records[0].clone());
        // …takes the first record, and waits for more or writes it.
        tokio::task::yield_now().await;
        for r in &records[1..] {
            queue.submit(r.clone());
        }
        // Shutdown ends the wait early.
        assert_eq!(
            pipeline.shutdown().await,
            ShutdownReport { left: 0, lost: 0 }
        );
        assert_eq!(sink.inner.records(), records);
        assert_eq!(
            sink.calls.load(Ordering::SeqCst),
            batches,
            "linger {linger:?}"
        );
    }
}

#[tokio::test]
async fn a_full_batch_ends_the_linger() {
    let linger = Duration::from_secs(5);
    let sink = Flaky::new(false, true);
    let mut config = quick_config(None);
    config.batch_linger = linger;
    let max_batch = config.max_batch;
    let (queue, pipeline) = Pipeline::start(sink.clone(), config);
    let records: Vec<Record> = (0..3)
        .flat_map(|i| sample::interception("busy", "m", i))
        .collect();
    assert!(records.len() > max_batch);
    // One thread: the batcher takes the first record alone and starts to linger…
    tokio::task::yield_now().await;
    queue.submit(records[0].clone());
    tokio::task::yield_now().await;
    // …and a full batch arrives while it waits.
    for r in &records[1..] {
        queue.submit(r.clone());
    }
    let started = tokio::time::Instant::now();
    while sink.inner.records().len() < max_batch {
        assert!(
            started.elapsed() < linger - Duration::from_secs(1),
            "the batcher waited out its linger with a full batch queued"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = pipeline.shutdown().await;
    assert_eq!(report, ShutdownReport { left: 0, lost: 0 });
    assert_eq!(sink.inner.records(), records);
}

#[tokio::test]
async fn the_spool_file_outlives_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool.jsonl");
    let records: Vec<Record> = (0..10)
        .flat_map(|i| sample::interception("late", "m", i))
        .collect();

    let down = Flaky::new(true, true);
    let mut config = quick_config(Some(spool.clone()));
    config.drain_timeout = Duration::from_millis(200);
    let (queue, pipeline) = Pipeline::start(down.clone(), config);
    for r in &records {
        queue.submit(r.clone());
    }
    let report = pipeline.shutdown().await;
    assert_eq!(
        report,
        ShutdownReport {
            left: records.len(),
            lost: 0
        }
    );
    assert!(down.inner.records().is_empty());

    let up = Flaky::new(false, true);
    let config = quick_config(Some(spool.clone()));
    let metrics = config.metrics.clone();
    let (_queue, pipeline) = Pipeline::start(up.clone(), config);
    let report = pipeline.shutdown().await;
    assert_eq!(report, ShutdownReport { left: 0, lost: 0 });
    assert_eq!(up.inner.records(), records);
    assert_eq!(
        metrics.records_total_all(RecordResult::Replayed),
        records.len() as u64
    );
    assert_eq!(std::fs::metadata(&spool).unwrap().len(), 0);
}

#[tokio::test]
async fn records_submitted_after_shutdown_wait_in_the_spool_file() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool.jsonl");
    let first = Flaky::new(false, true);
    let (queue, pipeline) = Pipeline::start(first.clone(), quick_config(Some(spool.clone())));
    let before = sample::interception("early", "m", 0);
    for r in &before {
        queue.submit(r.clone());
    }
    assert_eq!(
        pipeline.shutdown().await,
        ShutdownReport { left: 0, lost: 0 }
    );
    assert_eq!(first.inner.records(), before);

    // A request still finishing after shutdown: no batcher any more, so the file keeps it.
    let late = sample::interception("late", "m", 1);
    for r in &late {
        queue.submit(r.clone());
    }
    assert!(std::fs::metadata(&spool).unwrap().len() > 0);

    let next = Flaky::new(false, true);
    let (_queue, pipeline) = Pipeline::start(next.clone(), quick_config(Some(spool.clone())));
    assert_eq!(
        pipeline.shutdown().await,
        ShutdownReport { left: 0, lost: 0 }
    );
    assert_eq!(next.inner.records(), late);
}

#[tokio::test]
async fn without_a_spool_file_shutdown_counts_what_is_lost() {
    let down = Flaky::new(true, true);
    let mut config = quick_config(None);
    config.drain_timeout = Duration::from_millis(200);
    let (queue, pipeline) = Pipeline::start(down, config);
    for r in sample::interception("gone", "m", 0) {
        queue.submit(r);
    }
    let report = pipeline.shutdown().await;
    assert_eq!(report, ShutdownReport { left: 6, lost: 6 });
}

on_both_backends!(
    no_record_is_lost_while_the_database_is_down,
    thousands_of_concurrent_interceptions_land_exactly_once,
    thousands_of_concurrent_interceptions_through_an_outage_land_exactly_once
);

/// Submits the interceptions of `actors` × `per_actor` from one task per actor.
async fn submit_concurrently(
    queue: &RecordQueue,
    actors: usize,
    per_actor: i64,
    offset: i64,
) -> usize {
    let mut tasks = Vec::new();
    for a in 0..actors {
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            for i in 0..per_actor {
                for r in
                    sample::interception(&format!("actor-{a}"), "claude-sonnet-4-5", offset + i)
                {
                    queue.submit(r);
                    n += 1;
                }
                tokio::task::yield_now().await;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}

async fn assert_rows(recorder: &SqlRecorder, interceptions: u64) {
    let conn = recorder.connection();
    assert_eq!(
        interception::Entity::find().count(conn).await.unwrap(),
        interceptions
    );
    assert_eq!(
        token_usage::Entity::find().count(conn).await.unwrap(),
        interceptions
    );
    assert_eq!(
        user_prompt::Entity::find().count(conn).await.unwrap(),
        interceptions
    );
    assert_eq!(
        tool_usage::Entity::find().count(conn).await.unwrap(),
        interceptions
    );
    assert_eq!(
        model_thought::Entity::find().count(conn).await.unwrap(),
        interceptions
    );
    // Every end arrived after its start: none was applied to a missing row.
    let open = interception::Entity::find()
        .filter(interception::Column::EndedAt.is_null())
        .count(conn)
        .await
        .unwrap();
    assert_eq!(open, 0);
}

fn loaded_config(db: &TestDb) -> PipelineConfig {
    PipelineConfig {
        queue_capacity: 1024,
        max_batch: 256,
        batch_linger: Duration::from_millis(5),
        drain_timeout: Duration::from_secs(120),
        spool_path: Some(db.path("spool.jsonl")),
        retry_for: Duration::from_millis(300),
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        metrics: PipelineMetrics::default(),
    }
}

async fn no_record_is_lost_while_the_database_is_down(db: TestDb) {
    let recorder = db.recorder().await;
    let config = loaded_config(&db);
    let metrics = config.metrics.clone();
    let (queue, pipeline) = Pipeline::start(Arc::new(recorder.clone()), config);

    let mut total = submit_concurrently(&queue, 8, 40, 0).await;
    db.outage_start().await;
    total += submit_concurrently(&queue, 8, 40, 1000).await;
    until(|| metrics.records_total_all(RecordResult::Spooled) > 0).await;
    total += submit_concurrently(&queue, 8, 40, 2000).await;
    db.outage_end().await;
    total += submit_concurrently(&queue, 8, 40, 3000).await;
    let report = pipeline.shutdown().await;
    assert_replayed_exactly_once(report, &recorder, &metrics, total as u64, 8 * 160).await;
}

/// After an outage: nothing left or lost, every interception's six records stored, some of
/// them replayed from the spool, and each counted once (written or replayed, never both).
async fn assert_replayed_exactly_once(
    report: ShutdownReport,
    recorder: &SqlRecorder,
    metrics: &PipelineMetrics,
    total: u64,
    interceptions: u64,
) {
    assert_eq!(report, ShutdownReport { left: 0, lost: 0 });
    assert_eq!(total, interceptions * 6);
    assert_rows(recorder, interceptions).await;
    assert!(metrics.records_total_all(RecordResult::Replayed) > 0);
    assert_eq!(metrics.records_total_all(RecordResult::Failed), 0);
    assert_eq!(
        metrics.records_total_all(RecordResult::Written)
            + metrics.records_total_all(RecordResult::Replayed),
        total
    );
}

async fn thousands_of_concurrent_interceptions_land_exactly_once(db: TestDb) {
    let recorder = db.recorder().await;
    let config = loaded_config(&db);
    let metrics = config.metrics.clone();
    let (queue, pipeline) = Pipeline::start(Arc::new(recorder.clone()), config);
    let total = submit_concurrently(&queue, 16, 250, 0).await;
    let report = pipeline.shutdown().await;
    assert_eq!(report, ShutdownReport { left: 0, lost: 0 });
    assert_eq!(total, 16 * 250 * 6);
    assert_rows(&recorder, 16 * 250).await;
    assert_eq!(metrics.records_total_all(RecordResult::Failed), 0);
}

/// 4,000 interceptions from 32 concurrent producers while the database goes down and comes
/// back: every record is written exactly once, part of them through the spool.
async fn thousands_of_concurrent_interceptions_through_an_outage_land_exactly_once(db: TestDb) {
    let recorder = db.recorder().await;
    let config = loaded_config(&db);
    let metrics = config.metrics.clone();
    let (queue, pipeline) = Pipeline::start(Arc::new(recorder.clone()), config);

    db.outage_start().await;
    let during = {
        let queue = queue.clone();
        tokio::spawn(async move { submit_concurrently(&queue, 16, 125, 0).await })
    };
    until(|| metrics.records_total_all(RecordResult::Spooled) > 0).await;
    // The database comes back while the second wave is being submitted.
    let after = {
        let queue = queue.clone();
        tokio::spawn(async move { submit_concurrently(&queue, 16, 125, 1000).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    db.outage_end().await;
    let total = during.await.unwrap() + after.await.unwrap();
    let report = pipeline.shutdown().await;
    assert_replayed_exactly_once(report, &recorder, &metrics, total as u64, 32 * 125).await;
}

/// A read-only SQLite database (opened `mode=ro`, the effect a read-only file has on a new
/// connection) fails writes as "unavailable": the pipeline retries and spools them rather
/// than dropping them as rejected.
#[tokio::test]
async fn a_read_only_sqlite_database_is_unavailable_not_rejected() {
    let db = TestDb::sqlite().await;
    db.recorder().await;
    let read_only = db.url.replace("mode=rwc", "mode=ro");
    assert_ne!(read_only, db.url);
    let recorder = SqlRecorder::connect_with(&read_only, crate::testdb::fast_options())
        .await
        .unwrap();
    let err = recorder
        .record_batch(&sample::interception("alice", "m", 0))
        .await
        .unwrap_err();
    match err {
        RecordError::Unavailable(message) => {
            assert!(message.contains("readonly"), "{message}");
        }
        RecordError::Rejected(message) => panic!("rejected: {message}"),
    }
}
