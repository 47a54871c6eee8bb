//! Real databases for the audit tests: a SQLite file in a temp dir, or a fresh PostgreSQL
//! database (from `AIBRIDGE_TEST_POSTGRES_URL`) created per test and dropped after.

use std::path::PathBuf;
use std::time::Duration;

use aibridge::record::SqlRecorder;
use aibridge::record::sql::SqlOptions;
use sea_orm::sqlx::{self, Connection};
use tokio::sync::Mutex;

/// The env var naming a PostgreSQL server the tests may create databases on.
pub const POSTGRES_ENV: &str = "AIBRIDGE_TEST_POSTGRES_URL";

/// One test's database.
pub struct TestDb {
    /// The URL the code under test connects to.
    pub url: String,
    /// A scratch directory for the SQLite file, spool files, …
    pub dir: tempfile::TempDir,
    kind: Kind,
    /// The connection holding the SQLite write lock during an outage.
    lock: Mutex<Option<sqlx::SqliteConnection>>,
}

enum Kind {
    Sqlite,
    Postgres { admin_url: String, name: String },
}

/// Options with short timeouts, so an outage turns into errors quickly.
pub fn fast_options() -> SqlOptions {
    SqlOptions {
        busy_timeout: Duration::from_millis(200),
        acquire_timeout: Duration::from_secs(2),
        max_connections: 4,
    }
}

/// Says once per run, on the real stderr, that the PostgreSQL tests are skipped. The test
/// harness captures `eprintln!` of passing tests, so the notice is written to the stream
/// directly (which the harness does not capture).
fn note_postgres_skipped() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "NOTE: {POSTGRES_ENV} is not set: the PostgreSQL tests were skipped"
        );
    });
}

impl TestDb {
    /// A new SQLite file in a temp dir.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("audit.db").display()
        );
        TestDb {
            url,
            dir,
            kind: Kind::Sqlite,
            lock: Mutex::new(None),
        }
    }

    /// A new PostgreSQL database, or `None` (with a note) when the env var is not set.
    pub async fn postgres() -> Option<TestDb> {
        let Ok(admin_url) = std::env::var(POSTGRES_ENV) else {
            note_postgres_skipped();
            return None;
        };
        let name = format!("aibridge_t_{}", uuid::Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let url = with_database(&admin_url, &name);
        Some(TestDb {
            url,
            dir: tempfile::tempdir().unwrap(),
            kind: Kind::Postgres { admin_url, name },
            lock: Mutex::new(None),
        })
    }

    /// A migrated recorder on this database.
    pub async fn recorder(&self) -> SqlRecorder {
        let recorder = SqlRecorder::connect_with(&self.url, fast_options())
            .await
            .unwrap();
        recorder.migrate().await.unwrap();
        recorder
    }

    /// A path in the scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Makes the database refuse writes: PostgreSQL stops accepting connections to it and
    /// drops the open ones; for SQLite another connection holds the write lock.
    ///
    /// Why a lock and not a read-only file (`chmod 0444`): file permissions are checked when
    /// a file is opened, so the recorder's already open connection keeps writing after a
    /// chmod; and CI runs as root, which ignores them anyway. Held by another connection, the
    /// write lock makes each write of the recorder fail after its busy timeout, an error the
    /// sink sorts as "unavailable, retry" exactly like SQLite's `SQLITE_READONLY` (both are
    /// neither constraint nor data errors), so the pipeline takes the same retry-then-spool
    /// path.
    pub async fn outage_start(&self) {
        match &self.kind {
            Kind::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query("BEGIN EXCLUSIVE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                *self.lock.lock().await = Some(conn);
            }
            Kind::Postgres { admin_url, name } => {
                let mut admin = sqlx::PgConnection::connect(admin_url).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "ALTER DATABASE {name} ALLOW_CONNECTIONS false"
                )))
                .execute(&mut admin)
                .await
                .unwrap();
                sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
                    .bind(name)
                    .execute(&mut admin)
                    .await
                    .unwrap();
                admin.close().await.unwrap();
            }
        }
    }

    /// Ends the outage.
    pub async fn outage_end(&self) {
        match &self.kind {
            Kind::Sqlite => {
                if let Some(mut conn) = self.lock.lock().await.take() {
                    sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
                    conn.close().await.unwrap();
                }
            }
            Kind::Postgres { admin_url, name } => {
                let mut admin = sqlx::PgConnection::connect(admin_url).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "ALTER DATABASE {name} ALLOW_CONNECTIONS true"
                )))
                .execute(&mut admin)
                .await
                .unwrap();
                admin.close().await.unwrap();
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Kind::Postgres { admin_url, name } = &self.kind {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs inside the test's runtime; the cleanup gets its own.
            let cleanup = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut admin)
                        .await;
                        let _ = admin.close().await;
                    }
                });
            });
            let _ = cleanup.join();
        }
    }
}

/// `postgres://user@host:port/db?params` with `db` replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Declares each listed `async fn name(db: TestDb)` as two tests, `sqlite::name` and
/// `postgres::name`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::testdb::TestDb::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = $crate::testdb::TestDb::postgres().await {
                        super::$name(db).await;
                    }
                }
            )*
        }
    };
}
pub(crate) use on_both_backends;

/// Builders of realistic records.
pub mod sample {
    use aibridge::record::*;
    use chrono::{DateTime, TimeZone, Utc};
    use serde_json::{Map, Value, json};
    use uuid::Uuid;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    /// A fixed instant plus `secs`, with microseconds so round trips are checked.
    pub fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_790_000_000 + secs, 123_456_000)
            .unwrap()
    }

    /// The six records of one interception, in the order the bridge emits them:
    /// start, prompt, thought, tool usage, token usage, end.
    pub fn interception(actor: &str, model: &str, start: i64) -> Vec<Record> {
        let id = new_id();
        vec![
            Record::Interception(InterceptionRecord {
                id,
                initiator_id: actor.into(),
                provider: "anthropic".into(),
                provider_name: "anthropic".into(),
                api: "messages".into(),
                model: model.into(),
                client: "claude-code".into(),
                user_agent: Some("claude-cli/2.1.0 (external, cli)".into()),
                client_session_id: Some(format!("session-{actor}")),
                credential_kind: "centralized".into(),
                credential_hint: Some("sk-a…wxyz".into()),
                streaming: true,
                started_at: at(start),
                metadata: map(json!({"team": "platform"})),
            }),
            Record::Prompt(PromptRecord {
                id: new_id(),
                interception_id: id,
                provider_response_id: String::new(),
                prompt: format!("refactor the parser for {actor} — ünïcode ✓"),
                metadata: Map::new(),
                created_at: at(start),
            }),
            Record::ModelThought(ModelThoughtRecord {
                id: new_id(),
                interception_id: id,
                content: "The parser has two entry points.".into(),
                metadata: map(json!({"source": "thinking"})),
                created_at: at(start + 1),
            }),
            Record::ToolUsage(ToolUsageRecord {
                id: new_id(),
                interception_id: id,
                provider_response_id: "msg_01".into(),
                provider_tool_call_id: Some("toolu_01".into()),
                server_url: Some("stdio:mcp-server-time".into()),
                tool: "bmcp_time_get_current_time".into(),
                input: json!({"timezone": "UTC", "n": 1.5}),
                injected: true,
                invocation_error: None,
                metadata: Map::new(),
                created_at: at(start + 1),
            }),
            Record::TokenUsage(TokenUsageRecord {
                id: new_id(),
                interception_id: id,
                provider_response_id: "msg_01".into(),
                input_tokens: 1200,
                output_tokens: 340,
                cache_read_input_tokens: 5000,
                cache_write_input_tokens: 80,
                extra: [("ephemeral_5m_input_tokens", 80)].into_iter().collect(),
                created_at: at(start + 2),
            }),
            Record::InterceptionEnded(InterceptionEndedRecord {
                id,
                ended_at: at(start + 3),
                outcome: Outcome::Completed,
                upstream_status: Some(200),
                attempts: 1,
                metadata: map(json!({"tool_loop_iterations": 1})),
            }),
        ]
    }

    /// The interception id of a record set made by [`interception`].
    pub fn id_of(records: &[Record]) -> Uuid {
        records[0].interception_id()
    }
}
