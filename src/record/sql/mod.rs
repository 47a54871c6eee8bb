//! [`SqlRecorder`]: the default sink, sea-orm on a SQLite file or PostgreSQL.
//!
//! A batch is written in one transaction; every insert is `ON CONFLICT (id) DO NOTHING` and
//! the end of an interception is an `UPDATE`, so writing the same batch twice (after a retry
//! or a spool replay) leaves exactly one row per record.

pub mod entity;
mod write;

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, Statement,
    TransactionTrait,
};

use super::{
    InterceptionEndedRecord, InterceptionRecord, ModelThoughtRecord, PromptRecord, Record,
    RecordError, Recorder, TokenUsageRecord, ToolUsageRecord,
};

/// The database used when neither the config nor `AIBRIDGE_DATABASE_URL` names one.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://aibridge.db?mode=rwc";

/// Page size of a SQLite audit database created by the bridge.
const SQLITE_PAGE_SIZE: u32 = 16 * 1024;

/// An arbitrary constant: the PostgreSQL advisory lock that serializes migrations when
/// several replicas start at once.
const MIGRATION_LOCK_KEY: i64 = 0x00a1_b71d_6e00_0001;

/// Why the SQL store could not be opened or migrated. Messages never include the URL,
/// which may carry a password.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The URL is not a `sqlite:` or `postgres:` URL.
    #[error("unsupported database URL scheme (expected sqlite: or postgres:)")]
    UnsupportedUrl,
    /// The database could not be reached.
    #[error("cannot connect to the audit database: {0}")]
    Connect(#[source] DbErr),
    /// Running the migrations failed.
    #[error("audit database migration failed: {0}")]
    Migrate(#[source] DbErr),
}

/// Connection tuning. The defaults suit a server; tests shorten the timeouts.
#[derive(Debug, Clone)]
pub struct SqlOptions {
    /// How long a SQLite writer waits for a lock held by another connection.
    pub busy_timeout: Duration,
    /// How long to wait for a pooled connection (PostgreSQL: also the connect timeout).
    pub acquire_timeout: Duration,
    /// Pool size for PostgreSQL (SQLite always uses one writer connection).
    pub max_connections: u32,
}

impl Default for SqlOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
            max_connections: 4,
        }
    }
}

/// A [`Recorder`] writing to the audit tables through sea-orm.
#[derive(Debug, Clone)]
pub struct SqlRecorder {
    db: DatabaseConnection,
}

impl SqlRecorder {
    /// Opens `url` (`sqlite://path?mode=rwc` or `postgres://…`) with default options.
    /// SQLite files are opened in WAL mode with a busy timeout.
    pub async fn connect(url: &str) -> Result<Self, SqlError> {
        Self::connect_with(url, SqlOptions::default()).await
    }

    /// Opens `url` with the given options.
    pub async fn connect_with(url: &str, options: SqlOptions) -> Result<Self, SqlError> {
        connect_database(url, &options).await.map(|db| Self { db })
    }

    /// Brings the schema up to date. On PostgreSQL an advisory lock lets several replicas
    /// call this at once.
    pub async fn migrate(&self) -> Result<(), SqlError> {
        migrate(&self.db).await.map_err(SqlError::Migrate)
    }

    /// The underlying connection, for queries (the audit CLI, tests).
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }
}

/// Opens a sea-orm connection the way the recorder and the audit CLI both want it.
pub async fn connect_database(
    url: &str,
    options: &SqlOptions,
) -> Result<DatabaseConnection, SqlError> {
    let scheme = url.split(':').next().unwrap_or_default();
    if !matches!(scheme, "sqlite" | "postgres" | "postgresql") {
        return Err(SqlError::UnsupportedUrl);
    }
    let mut opts = ConnectOptions::new(url);
    // Statement logging would copy prompts into the logs.
    opts.sqlx_logging(false)
        .acquire_timeout(options.acquire_timeout)
        .connect_timeout(options.acquire_timeout);
    if scheme == "sqlite" {
        let busy = options.busy_timeout;
        opts.max_connections(1).map_sqlx_sqlite_opts(move |o| {
            // Only a new file takes it (WAL fixes the page size of an existing one). The
            // audit tables are written as appends of a few KB per request: 16 KB pages
            // write the same bytes in less than half of the WAL and checkpoint system
            // calls (strace of 20,000 blocking requests: 52k -> 22k).
            o.page_size(SQLITE_PAGE_SIZE)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(busy)
                .foreign_keys(true)
        });
    } else {
        opts.max_connections(options.max_connections.max(1));
    }
    Database::connect(opts).await.map_err(SqlError::Connect)
}

/// Runs the migrations on `db`.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    if db.get_database_backend() == DbBackend::Postgres {
        let txn = db.begin().await?;
        txn.execute_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"),
        ))
        .await?;
        Migrator::up(&txn, None).await?;
        txn.commit().await
    } else {
        Migrator::up(db, None).await
    }
}

/// Sorts a database error into "retry later" and "this record will never fit".
fn classify(err: sea_orm::sqlx::Error) -> RecordError {
    use sea_orm::sqlx::error::ErrorKind;
    let rejected = match &err {
        sea_orm::sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            !matches!(db.kind(), ErrorKind::Other)
                // PostgreSQL data exceptions (bad encoding, NUL in text, …).
                || code.starts_with("22")
                // SQLite: string or blob too big, datatype mismatch.
                || code == "18"
                || code == "20"
        }
        sea_orm::sqlx::Error::Encode(_) => true,
        _ => false,
    };
    if rejected {
        RecordError::Rejected(err.to_string())
    } else {
        RecordError::Unavailable(err.to_string())
    }
}

#[async_trait::async_trait]
impl Recorder for SqlRecorder {
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
        write::write_batch(&self.db, records)
            .await
            .map_err(classify)
    }
}
