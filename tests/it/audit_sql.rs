//! `SqlRecorder` against a real SQLite file and a real PostgreSQL database.

use aibridge::record::sql::entity::{
    interception, model_thought, token_usage, tool_usage, user_prompt,
};
use aibridge::record::{Record, RecordError, Recorder, TokenUsageRecord};
use migration::{Migrator, MigratorTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};

use crate::testdb::{TestDb, on_both_backends, sample};

on_both_backends!(
    writes_each_kind_as_one_row,
    per_kind_methods_write_rows,
    writing_a_batch_twice_keeps_one_row_each,
    an_end_applies_whether_its_start_is_stored_or_in_the_batch,
    a_replayed_start_never_clears_a_stored_end,
    a_record_that_cannot_fit_is_rejected,
    migrations_go_down_and_up_again,
    the_unused_provider_index_is_dropped,
    nul_characters_do_not_lose_the_record,
    a_replay_over_many_large_stored_rows_is_written,
);

async fn writes_each_kind_as_one_row(db: TestDb) {
    let recorder = db.recorder().await;
    let records = sample::interception("alice", "claude-sonnet-4-5", 0);
    recorder.record_batch(&records).await.unwrap();
    let conn = recorder.connection();
    let id = sample::id_of(&records).to_string();

    let row = interception::Entity::find_by_id(id.clone())
        .one(conn)
        .await
        .unwrap()
        .unwrap();
    let Record::Interception(start) = &records[0] else {
        unreachable!()
    };
    assert_eq!(
        row,
        interception::Model {
            id: id.clone(),
            initiator_id: "alice".into(),
            provider: "anthropic".into(),
            provider_name: "anthropic".into(),
            api: "messages".into(),
            model: "claude-sonnet-4-5".into(),
            client: "claude-code".into(),
            user_agent: Some("claude-cli/2.1.0 (external, cli)".into()),
            client_session_id: Some("session-alice".into()),
            credential_kind: "centralized".into(),
            credential_hint: Some("sk-a…wxyz".into()),
            streaming: true,
            started_at: start.started_at,
            ended_at: Some(sample::at(3)),
            outcome: Some("completed".into()),
            upstream_status: Some(200),
            attempts: Some(1),
            metadata: json!({"team": "platform"}),
            ended_metadata: Some(json!({"tool_loop_iterations": 1})),
        }
    );

    let usage = token_usage::Entity::find().all(conn).await.unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].interception_id, id);
    assert_eq!(
        (
            usage[0].input_tokens,
            usage[0].output_tokens,
            usage[0].cache_read_input_tokens,
            usage[0].cache_write_input_tokens
        ),
        (1200, 340, 5000, 80)
    );
    assert_eq!(usage[0].metadata, json!({"ephemeral_5m_input_tokens": 80}));
    assert_eq!(usage[0].created_at, sample::at(2));

    let prompts = user_prompt::Entity::find().all(conn).await.unwrap();
    assert_eq!(prompts.len(), 1);
    assert_eq!(
        prompts[0].prompt,
        "refactor the parser for alice — ünïcode ✓"
    );

    let tools = tool_usage::Entity::find().all(conn).await.unwrap();
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0].tool, "bmcp_time_get_current_time");
    assert_eq!(tools[0].input, json!({"timezone": "UTC", "n": 1.5}));
    assert!(tools[0].injected);
    assert_eq!(tools[0].provider_tool_call_id.as_deref(), Some("toolu_01"));
    assert_eq!(
        tools[0].server_url.as_deref(),
        Some("stdio:mcp-server-time")
    );

    let thoughts = model_thought::Entity::find().all(conn).await.unwrap();
    assert_eq!(thoughts.len(), 1);
    assert_eq!(thoughts[0].metadata["source"], Value::from("thinking"));
}

async fn per_kind_methods_write_rows(db: TestDb) {
    let recorder = db.recorder().await;
    let records = sample::interception("bob", "gpt-5", 10);
    for record in &records {
        match record {
            Record::Interception(r) => recorder.record_interception(r).await.unwrap(),
            Record::InterceptionEnded(r) => recorder.record_interception_ended(r).await.unwrap(),
            Record::TokenUsage(r) => recorder.record_token_usage(r).await.unwrap(),
            Record::Prompt(r) => recorder.record_prompt(r).await.unwrap(),
            Record::ToolUsage(r) => recorder.record_tool_usage(r).await.unwrap(),
            Record::ModelThought(r) => recorder.record_model_thought(r).await.unwrap(),
        }
    }
    let conn = recorder.connection();
    let row = interception::Entity::find()
        .one(conn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.initiator_id, "bob");
    assert_eq!(row.outcome.as_deref(), Some("completed"));
    assert_eq!(token_usage::Entity::find().count(conn).await.unwrap(), 1);
    assert_eq!(user_prompt::Entity::find().count(conn).await.unwrap(), 1);
    assert_eq!(tool_usage::Entity::find().count(conn).await.unwrap(), 1);
    assert_eq!(model_thought::Entity::find().count(conn).await.unwrap(), 1);
}

async fn writing_a_batch_twice_keeps_one_row_each(db: TestDb) {
    let recorder = db.recorder().await;
    let mut batch = sample::interception("carol", "claude-opus-4-1", 0);
    batch.extend(sample::interception("carol", "claude-opus-4-1", 5));
    recorder.record_batch(&batch).await.unwrap();
    recorder.record_batch(&batch).await.unwrap();
    recorder.record_batch(&batch[2..]).await.unwrap();
    let conn = recorder.connection();
    assert_eq!(interception::Entity::find().count(conn).await.unwrap(), 2);
    assert_eq!(token_usage::Entity::find().count(conn).await.unwrap(), 2);
    assert_eq!(user_prompt::Entity::find().count(conn).await.unwrap(), 2);
    assert_eq!(tool_usage::Entity::find().count(conn).await.unwrap(), 2);
    assert_eq!(model_thought::Entity::find().count(conn).await.unwrap(), 2);
    assert_eq!(
        interception::Entity::find()
            .filter(interception::Column::EndedAt.is_null())
            .count(conn)
            .await
            .unwrap(),
        0
    );
}

/// The stored outcome of interception `id`.
async fn stored_end(conn: &sea_orm::DatabaseConnection, id: uuid::Uuid) -> Option<String> {
    interception::Entity::find_by_id(id.to_string())
        .one(conn)
        .await
        .unwrap()
        .unwrap()
        .outcome
}

async fn an_end_applies_whether_its_start_is_stored_or_in_the_batch(db: TestDb) {
    let recorder = db.recorder().await;
    let conn = recorder.connection();
    // Start and end in one batch: the row is inserted complete.
    let together = sample::interception("frank", "gpt-5", 0);
    // The start stored by an earlier batch, the end in a later one: the end is an UPDATE.
    let split = sample::interception("frank", "gpt-5", 10);
    // The start stored, then replayed together with its end (a spool replayed after a
    // crash): the coalesced row conflicts with the stored one and must still take the end.
    let replayed = sample::interception("frank", "gpt-5", 20);
    recorder.record_batch(&split[..1]).await.unwrap();
    recorder.record_batch(&replayed[..1]).await.unwrap();
    assert_eq!(stored_end(conn, sample::id_of(&replayed)).await, None);

    let mut batch = together.clone();
    batch.extend_from_slice(&split[1..]);
    batch.extend_from_slice(&replayed);
    // A start twice in one batch (a replay overlapping the queue) is one row.
    batch.push(replayed[0].clone());
    recorder.record_batch(&batch).await.unwrap();

    for (records, start) in [(&together, 0), (&split, 10), (&replayed, 20)] {
        let row = interception::Entity::find_by_id(sample::id_of(records).to_string())
            .one(conn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.ended_at, Some(sample::at(start + 3)));
        assert_eq!(row.outcome.as_deref(), Some("completed"));
        assert_eq!(row.upstream_status, Some(200));
        assert_eq!(row.attempts, Some(1));
        assert_eq!(row.ended_metadata, Some(json!({"tool_loop_iterations": 1})));
        assert_eq!(row.metadata, json!({"team": "platform"}));
    }
    assert_eq!(interception::Entity::find().count(conn).await.unwrap(), 3);
    assert_eq!(token_usage::Entity::find().count(conn).await.unwrap(), 3);
}

async fn a_replayed_start_never_clears_a_stored_end(db: TestDb) {
    let recorder = db.recorder().await;
    let conn = recorder.connection();
    let records = sample::interception("grace", "gpt-5", 0);
    let id = sample::id_of(&records);
    recorder.record_batch(&records).await.unwrap();
    assert_eq!(stored_end(conn, id).await.as_deref(), Some("completed"));
    recorder.record_batch(&records[..1]).await.unwrap();
    recorder.record_batch(&records[..3]).await.unwrap();
    assert_eq!(stored_end(conn, id).await.as_deref(), Some("completed"));

    // Two ends in one batch (never made by the bridge): the last one wins, as it would
    // with one UPDATE per end, whether the start is in the batch or not.
    let Record::InterceptionEnded(end) = &records[5] else {
        unreachable!()
    };
    let mut failed = end.clone();
    failed.outcome = aibridge::record::Outcome::Failed;
    let second = Record::InterceptionEnded(failed);
    recorder
        .record_batch(&[records[0].clone(), records[5].clone(), second.clone()])
        .await
        .unwrap();
    assert_eq!(stored_end(conn, id).await.as_deref(), Some("failed"));
    recorder
        .record_batch(&[second, records[5].clone()])
        .await
        .unwrap();
    assert_eq!(stored_end(conn, id).await.as_deref(), Some("completed"));
}

/// Token usage of an interception that was never stored.
fn orphan_usage() -> Record {
    Record::TokenUsage(TokenUsageRecord {
        id: aibridge::record::new_id(),
        interception_id: aibridge::record::new_id(),
        provider_response_id: "msg_x".into(),
        input_tokens: 1,
        output_tokens: 1,
        cache_read_input_tokens: 0,
        cache_write_input_tokens: 0,
        extra: Default::default(),
        created_at: sample::at(0),
    })
}

async fn a_record_that_cannot_fit_is_rejected(db: TestDb) {
    let recorder = db.recorder().await;
    // No interception row with this id: the foreign key refuses it, and retrying won't help.
    let orphan = orphan_usage();
    let err = recorder
        .record_batch(std::slice::from_ref(&orphan))
        .await
        .unwrap_err();
    assert!(matches!(err, RecordError::Rejected(_)), "{err:?}");

    // Behind whole interceptions in one batch: the batch is refused as a whole, nothing of
    // it stays stored (each statement may stop part-way, the transaction undoes them all).
    let mut batch = sample::interception("frank", "gpt-5", 0);
    batch.extend(sample::interception("grace", "gpt-5", 1));
    batch.push(orphan);
    let err = recorder.record_batch(&batch).await.unwrap_err();
    assert!(matches!(err, RecordError::Rejected(_)), "{err:?}");
    let conn = recorder.connection();
    assert_eq!(interception::Entity::find().count(conn).await.unwrap(), 0);
    assert_eq!(user_prompt::Entity::find().count(conn).await.unwrap(), 0);
    recorder
        .record_batch(&batch[..batch.len() - 1])
        .await
        .unwrap();
    assert_eq!(interception::Entity::find().count(conn).await.unwrap(), 2);
}

async fn migrations_go_down_and_up_again(db: TestDb) {
    let recorder = db.recorder().await;
    recorder.migrate().await.unwrap();
    let conn = recorder.connection();
    Migrator::down(conn, None).await.unwrap();
    assert!(
        conn.execute_unprepared("SELECT count(*) FROM aibridge_interceptions")
            .await
            .is_err()
    );
    recorder.migrate().await.unwrap();
    recorder
        .record_batch(&sample::interception("dave", "gpt-5", 0))
        .await
        .unwrap();
    assert_eq!(interception::Entity::find().count(conn).await.unwrap(), 1);
}

/// The names of the interceptions table's indexes, from the backend's own catalog.
async fn interception_indexes(conn: &sea_orm::DatabaseConnection) -> Vec<String> {
    let sql = match conn.get_database_backend() {
        sea_orm::DbBackend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'index' \
             AND tbl_name = 'aibridge_interceptions' AND sql IS NOT NULL ORDER BY name"
        }
        _ => {
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() \
             AND tablename = 'aibridge_interceptions' AND indexname LIKE 'idx_%' \
             ORDER BY indexname"
        }
    };
    conn.query_all_raw(sea_orm::Statement::from_string(
        conn.get_database_backend(),
        sql,
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| row.try_get_by_index::<String>(0).unwrap())
    .collect()
}

async fn the_unused_provider_index_is_dropped(db: TestDb) {
    const PROVIDER: &str = "idx_aibridge_interceptions_provider_started";
    let recorder = db.recorder().await;
    let conn = recorder.connection();
    let kept = [
        "idx_aibridge_interceptions_initiator_started",
        "idx_aibridge_interceptions_model_started",
        "idx_aibridge_interceptions_started_at",
    ];
    assert_eq!(interception_indexes(conn).await, kept);
    // A database made before the drop: the index comes back down one step and goes again.
    Migrator::down(conn, Some(1)).await.unwrap();
    let mut before = kept.to_vec();
    before.insert(2, PROVIDER);
    assert_eq!(interception_indexes(conn).await, before);
    recorder
        .record_batch(&sample::interception("frank", "gpt-5", 0))
        .await
        .unwrap();
    recorder.migrate().await.unwrap();
    assert_eq!(interception_indexes(conn).await, kept);
    assert_eq!(interception::Entity::find().count(conn).await.unwrap(), 1);
}

async fn nul_characters_do_not_lose_the_record(db: TestDb) {
    let recorder = db.recorder().await;
    let mut records = sample::interception("eve", "m\0odel", 0);
    for r in &mut records {
        match r {
            Record::Prompt(p) => p.prompt = "before\0after".into(),
            Record::ToolUsage(t) => t.input = json!({"k\0": ["v\0"]}),
            _ => {}
        }
    }
    recorder.record_batch(&records).await.unwrap();
    let conn = recorder.connection();
    let prompt = user_prompt::Entity::find()
        .one(conn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(prompt.prompt, "before\u{fffd}after");
    let tool = tool_usage::Entity::find().one(conn).await.unwrap().unwrap();
    assert_eq!(tool.input, json!({"k\u{fffd}": ["v\u{fffd}"]}));
    let row = interception::Entity::find()
        .one(conn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.model, "m\u{fffd}odel");
}

/// Each statement of the replay rewrites hundreds of stored 4 KB rows, and SQLite journals
/// every stored page a statement changes (well over a MiB here) so it can undo that
/// statement alone: however big that journal gets, the batch is written.
async fn a_replay_over_many_large_stored_rows_is_written(db: TestDb) {
    let recorder = db.recorder().await;
    let conn = recorder.connection();
    let note = Value::from("x".repeat(4096));
    let (mut starts, mut ends) = (Vec::new(), Vec::new());
    for n in 0..512 {
        let mut records = sample::interception("grace", "gpt-5", n);
        if let Some(Record::Interception(r)) = records.first_mut() {
            r.metadata.insert("note".into(), note.clone());
        }
        starts.push(records[0].clone());
        ends.extend(records.pop());
    }
    recorder.record_batch(&starts).await.unwrap();
    let mut replay = starts;
    replay.append(&mut ends);
    recorder.record_batch(&replay).await.unwrap();
    let ended = interception::Entity::find()
        .filter(interception::Column::EndedAt.is_not_null())
        .count(conn)
        .await
        .unwrap();
    assert_eq!(ended, 512);
}

async fn sqlite_pragma(conn: &sea_orm::DatabaseConnection, name: &str) -> String {
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            format!("PRAGMA {name}"),
        ))
        .await
        .unwrap()
        .unwrap();
    match row.try_get_by_index::<String>(0) {
        Ok(text) => text,
        Err(_) => row.try_get_by_index::<i64>(0).unwrap().to_string(),
    }
}

/// A file the bridge creates gets WAL and 16 KiB pages, and a batch big enough that each
/// multi-row insert journals well over SQLite's default 64 KiB in-memory limit is written
/// whole.
#[tokio::test]
async fn a_new_sqlite_file_gets_wal_and_16_kib_pages() {
    let db = TestDb::sqlite().await;
    let recorder = db.recorder().await;
    let conn = recorder.connection();
    assert_eq!(sqlite_pragma(conn, "journal_mode").await, "wal");
    assert_eq!(sqlite_pragma(conn, "page_size").await, "16384");
    let records: Vec<Record> = (0..2000)
        .flat_map(|n| sample::interception(&format!("actor-{}", n % 7), "gpt-5", n))
        .collect();
    recorder.record_batch(&records).await.unwrap();
    assert_eq!(
        interception::Entity::find().count(conn).await.unwrap(),
        2000
    );
    assert_eq!(user_prompt::Entity::find().count(conn).await.unwrap(), 2000);
}

/// A file made before (4 KiB pages) keeps its page size, and is written as before.
#[tokio::test]
async fn an_existing_sqlite_file_keeps_its_page_size() {
    use sea_orm::sqlx::{self, ConnectOptions as _};
    let db = TestDb::sqlite().await;
    let options: sqlx::sqlite::SqliteConnectOptions = db.url.parse().unwrap();
    let mut conn = options
        .page_size(4096)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .connect()
        .await
        .unwrap();
    sqlx::query("CREATE TABLE made_before (x INTEGER)")
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);
    let recorder = db.recorder().await;
    let conn = recorder.connection();
    assert_eq!(sqlite_pragma(conn, "page_size").await, "4096");
    recorder
        .record_batch(&sample::interception("erin", "gpt-5", 0))
        .await
        .unwrap();
    assert_eq!(interception::Entity::find().count(conn).await.unwrap(), 1);
}

/// The stored `CREATE` statements of SQLite's schema, by kind and name.
async fn sqlite_schema(conn: &sea_orm::DatabaseConnection) -> Vec<(String, String, String)> {
    conn.query_all_raw(sea_orm::Statement::from_string(
        sea_orm::DbBackend::Sqlite,
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL \
         AND (name LIKE 'aibridge_%' OR name LIKE 'idx_aibridge_%') ORDER BY name",
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| {
        (
            row.try_get_by_index::<String>(0).unwrap(),
            row.try_get_by_index::<String>(1).unwrap(),
            row.try_get_by_index::<String>(2).unwrap(),
        )
    })
    .collect()
}

/// Rows in each child table.
async fn child_counts(conn: &sea_orm::DatabaseConnection) -> [u64; 4] {
    [
        token_usage::Entity::find().count(conn).await.unwrap(),
        user_prompt::Entity::find().count(conn).await.unwrap(),
        tool_usage::Entity::find().count(conn).await.unwrap(),
        model_thought::Entity::find().count(conn).await.unwrap(),
    ]
}

/// A file made by the first five migrations, with rows in it, is rebuilt by the sixth: the
/// child tables' foreign keys become deferred, and rows, indexes and the cascade stay; the
/// way down rebuilds them with immediate keys again.
#[tokio::test]
async fn an_existing_sqlite_file_gets_deferred_child_keys_and_keeps_its_rows() {
    let db = TestDb::sqlite().await;
    let recorder =
        aibridge::record::SqlRecorder::connect_with(&db.url, crate::testdb::fast_options())
            .await
            .unwrap();
    let conn = recorder.connection();
    Migrator::up(conn, Some(5)).await.unwrap();
    let records: Vec<Record> = (0..50)
        .flat_map(|n| sample::interception(&format!("actor-{}", n % 3), "gpt-5", n))
        .collect();
    recorder.record_batch(&records).await.unwrap();
    let before = sqlite_schema(conn).await;
    let rows = child_counts(conn).await;
    assert!(rows.iter().all(|&n| n == 50), "{rows:?}");
    let deferred = |schema: &[(String, String, String)]| {
        schema
            .iter()
            .filter(|(_, _, sql)| sql.contains("DEFERRABLE INITIALLY DEFERRED"))
            .map(|(_, name, _)| name.clone())
            .collect::<Vec<_>>()
    };
    assert!(deferred(&before).is_empty());

    Migrator::up(conn, Some(1)).await.unwrap();
    let after = sqlite_schema(conn).await;
    assert_eq!(
        deferred(&after),
        [
            "aibridge_model_thoughts",
            "aibridge_token_usages",
            "aibridge_tool_usages",
            "aibridge_user_prompts"
        ]
    );
    let names = |schema: &[(String, String, String)]| {
        schema
            .iter()
            .map(|(kind, name, _)| format!("{kind} {name}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&after), names(&before));
    assert_eq!(child_counts(conn).await, rows);
    // Still a foreign key: an orphan fails its batch, at commit now.
    let orphan = orphan_usage();
    let err = recorder.record_batch(&[orphan]).await.unwrap_err();
    assert!(matches!(err, RecordError::Rejected(_)), "{err:?}");

    Migrator::down(conn, Some(1)).await.unwrap();
    let down = sqlite_schema(conn).await;
    assert!(deferred(&down).is_empty());
    assert_eq!(names(&down), names(&before));
    assert_eq!(child_counts(conn).await, rows);

    recorder.migrate().await.unwrap();
    // Retention is one delete: the children go with their interception.
    let first = sample::id_of(&records).to_string();
    interception::Entity::delete_by_id(first)
        .exec(conn)
        .await
        .unwrap();
    assert_eq!(child_counts(conn).await, [49; 4]);
}
