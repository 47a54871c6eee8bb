//! One batch of records → one transaction.
//!
//! Within the transaction, rows are inserted parents first (interceptions, then their
//! children), and interception ends are applied last, so a batch may hold an interception
//! together with everything that belongs to it in any order the pipeline delivered.
//!
//! Most interceptions start and end within one batch. Their end is written with the start
//! (one row inserted complete, no `UPDATE`): the insert is an upsert whose conflict action
//! sets only the end columns, and only for rows that carry an end, so a replayed start whose
//! row is already stored still gets its end, and a replayed start without an end never
//! clears one. Ends whose start came in an earlier batch are applied with an `UPDATE`.
//!
//! The statements are written here as SQL and run through sqlx (sea-orm's driver) on the
//! connection sea-orm opened: this is the one hot write path, and sea-orm's statement
//! builder cost more per row than SQLite's own insert did. The statement texts are fixed
//! (one per table and row count, made once), values are bound straight from the records
//! without copying them into intermediate models, and both backends share one text apart
//! from their parameter syntax. The schema itself stays in `migrations/` and the entities.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::OnceLock;

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};

use sea_orm::sqlx;
use sea_orm::{DatabaseConnection, DbBackend};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::record::{
    InterceptionEndedRecord, InterceptionRecord, ModelThoughtRecord, PromptRecord, Record,
    TokenCounts, TokenUsageRecord, ToolUsageRecord,
};
use crate::{FastHashMap, FastHashSet};

/// Rows per `INSERT`: well under the bind-parameter limits of SQLite and PostgreSQL.
const ROWS_PER_INSERT: usize = 256;

/// How many of `n` waiting rows the next `INSERT` takes: the largest power of two that
/// fits. A statement is prepared once per distinct text, and the text depends on the row
/// count, so a few fixed counts stay in the driver's statement cache where a count per
/// batch size would be parsed and planned again for almost every batch.
fn rows_per_insert(n: usize) -> usize {
    let n = n.min(ROWS_PER_INSERT);
    if n == 0 { 0 } else { 1 << n.ilog2() }
}

/// One table's insert: its name, columns, and what a conflicting id does.
struct Table {
    name: &'static str,
    columns: &'static [&'static str],
    on_conflict: &'static str,
}

const INTERCEPTIONS: Table = Table {
    name: "aibridge_interceptions",
    columns: &[
        "id",
        "initiator_id",
        "provider",
        "provider_name",
        "api",
        "model",
        "client",
        "user_agent",
        "client_session_id",
        "credential_kind",
        "credential_hint",
        "streaming",
        "started_at",
        "ended_at",
        "outcome",
        "upstream_status",
        "attempts",
        "metadata",
        "ended_metadata",
    ],
    on_conflict: "ON CONFLICT (id) DO UPDATE SET ended_at = excluded.ended_at, \
                  outcome = excluded.outcome, upstream_status = excluded.upstream_status, \
                  attempts = excluded.attempts, ended_metadata = excluded.ended_metadata \
                  WHERE excluded.ended_at IS NOT NULL",
};

const TOKEN_USAGES: Table = Table {
    name: "aibridge_token_usages",
    columns: &[
        "id",
        "interception_id",
        "provider_response_id",
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_write_input_tokens",
        "metadata",
        "created_at",
    ],
    on_conflict: "ON CONFLICT (id) DO NOTHING",
};

const USER_PROMPTS: Table = Table {
    name: "aibridge_user_prompts",
    columns: &[
        "id",
        "interception_id",
        "provider_response_id",
        "prompt",
        "metadata",
        "created_at",
    ],
    on_conflict: "ON CONFLICT (id) DO NOTHING",
};

const TOOL_USAGES: Table = Table {
    name: "aibridge_tool_usages",
    columns: &[
        "id",
        "interception_id",
        "provider_response_id",
        "provider_tool_call_id",
        "server_url",
        "tool",
        "input",
        "injected",
        "invocation_error",
        "metadata",
        "created_at",
    ],
    on_conflict: "ON CONFLICT (id) DO NOTHING",
};

const MODEL_THOUGHTS: Table = Table {
    name: "aibridge_model_thoughts",
    columns: &["id", "interception_id", "content", "metadata", "created_at"],
    on_conflict: "ON CONFLICT (id) DO NOTHING",
};

const TABLES: [&Table; 5] = [
    &INTERCEPTIONS,
    &TOKEN_USAGES,
    &USER_PROMPTS,
    &TOOL_USAGES,
    &MODEL_THOUGHTS,
];

const UPDATE_END: &str = "UPDATE aibridge_interceptions SET ended_at = {}, outcome = {}, \
                          upstream_status = {}, attempts = {}, ended_metadata = {} WHERE id = {}";

/// How a backend writes the n-th bind parameter (1-based).
#[derive(Clone, Copy)]
enum Params {
    /// SQLite: `?` (numbered left to right).
    Question,
    /// PostgreSQL: `$1`, `$2`, …
    Dollar,
}

impl Params {
    fn push(self, sql: &mut String, n: usize) {
        match self {
            Params::Question => sql.push('?'),
            Params::Dollar => {
                sql.push('$');
                sql.push_str(&n.to_string());
            }
        }
    }
}

/// Every statement text of one backend, made once.
struct Statements {
    /// Per table (in [`TABLES`] order), per power of two `k`: the insert of `2^k` rows.
    inserts: Vec<Vec<String>>,
    update_end: String,
}

impl Statements {
    fn new(params: Params) -> Statements {
        let powers = ROWS_PER_INSERT.ilog2() as usize + 1;
        let inserts = TABLES
            .iter()
            .map(|table| {
                (0..powers)
                    .map(|k| insert_sql(table, 1 << k, params))
                    .collect()
            })
            .collect();
        let mut update_end = String::new();
        for (n, part) in UPDATE_END.split("{}").enumerate() {
            if n > 0 {
                params.push(&mut update_end, n);
            }
            update_end.push_str(part);
        }
        Statements {
            inserts,
            update_end,
        }
    }

    fn for_backend(params: Params) -> &'static Statements {
        static SQLITE: OnceLock<Statements> = OnceLock::new();
        static POSTGRES: OnceLock<Statements> = OnceLock::new();
        let cell = match params {
            Params::Question => &SQLITE,
            Params::Dollar => &POSTGRES,
        };
        cell.get_or_init(|| Statements::new(params))
    }

    /// The insert of `rows` rows (a power of two) into table number `table`.
    fn insert(&'static self, table: usize, rows: usize) -> &'static str {
        &self.inserts[table][rows.ilog2() as usize]
    }
}

fn insert_sql(table: &Table, rows: usize, params: Params) -> String {
    // SQLite: `OR FAIL` instead of the default `ABORT` for constraints other than the id's
    // (NOT NULL). Under `ABORT` a multi-row insert that may fail part-way first copies every
    // stored page it changes into a statement journal (16 KiB each, in 1 KiB allocations),
    // only to undo itself alone; here a failed statement fails its batch, and the whole
    // transaction is rolled back anyway. (For the child tables this holds because their
    // foreign keys are deferred to the commit: an immediate check would make SQLite keep the
    // journal whatever the conflict clause. See migration 000006.)
    let verb = match params {
        Params::Question => "INSERT OR FAIL INTO",
        Params::Dollar => "INSERT INTO",
    };
    let mut sql = format!(
        "{verb} {} ({}) VALUES ",
        table.name,
        table.columns.join(", ")
    );
    let mut n = 0;
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for col in 0..table.columns.len() {
            if col > 0 {
                sql.push_str(", ");
            }
            n += 1;
            params.push(&mut sql, n);
        }
        sql.push(')');
    }
    sql.push(' ');
    sql.push_str(table.on_conflict);
    sql
}

/// A batch sorted into what each statement writes.
#[derive(Default)]
struct Plan<'a> {
    /// Starts, each with its end when the end is in the same batch.
    interceptions: Vec<(&'a InterceptionRecord, Option<&'a InterceptionEndedRecord>)>,
    token_usages: Vec<&'a TokenUsageRecord>,
    prompts: Vec<&'a PromptRecord>,
    tool_usages: Vec<&'a ToolUsageRecord>,
    thoughts: Vec<&'a ModelThoughtRecord>,
    /// Ends whose start came in an earlier batch.
    ends: Vec<&'a InterceptionEndedRecord>,
}

impl<'a> Plan<'a> {
    fn new(records: &'a [Record]) -> Plan<'a> {
        // Which interceptions start in this batch, and the last end of each (the one an
        // `UPDATE` per end, applied in order, would have left).
        let mut starts = FastHashSet::default();
        let mut last_end: FastHashMap<Uuid, &InterceptionEndedRecord> = FastHashMap::default();
        for record in records {
            match record {
                Record::Interception(r) => {
                    starts.insert(r.id);
                }
                Record::InterceptionEnded(r) => {
                    last_end.insert(r.id, r);
                }
                _ => {}
            }
        }
        // PostgreSQL refuses an upsert that touches one row twice: each start goes in once.
        let mut inserted = HashSet::with_capacity(starts.len());
        let mut plan = Plan::default();
        for record in records {
            match record {
                Record::Interception(r) => {
                    if inserted.insert(r.id) {
                        plan.interceptions.push((r, last_end.get(&r.id).copied()));
                    }
                }
                Record::InterceptionEnded(r) => {
                    // Written with its start, or (start in an earlier batch) updated, once.
                    if !starts.contains(&r.id)
                        && last_end.get(&r.id).is_some_and(|e| std::ptr::eq(*e, r))
                    {
                        plan.ends.push(r);
                    }
                }
                Record::TokenUsage(r) => plan.token_usages.push(r),
                Record::Prompt(r) => plan.prompts.push(r),
                Record::ToolUsage(r) => plan.tool_usages.push(r),
                Record::ModelThought(r) => plan.thoughts.push(r),
            }
        }
        plan
    }
}

/// Writes a batch in one transaction on `db`'s pool.
pub(super) async fn write_batch(
    db: &DatabaseConnection,
    records: &[Record],
) -> Result<(), sqlx::Error> {
    let plan = Plan::new(records);
    match db.get_database_backend() {
        DbBackend::Postgres => {
            postgres::write(db.get_postgres_connection_pool(), &plan, Params::Dollar).await
        }
        DbBackend::Sqlite => {
            sqlite::write(db.get_sqlite_connection_pool(), &plan, Params::Question).await
        }
        // `connect_database` opens only the two above; a connection made elsewhere is refused
        // rather than handed to a pool getter that would panic.
        other => Err(sqlx::Error::Configuration(
            format!("the audit store supports SQLite and PostgreSQL, not {other:?}").into(),
        )),
    }
}

/// The same writer for each backend: sqlx's types differ per database, the code does not.
macro_rules! backend_writer {
    (
        $module:ident,
        $db:ty,
        $text:ident,
        $name:ident,
        $id:ident,
        $time:ident,
        $object:ident,
        $counts:ident
    ) => {
        mod $module {
            use sea_orm::sqlx::{self, Database, Pool, query::Query};

            use super::*;

            type Q<'q> = Query<'q, $db, <$db as Database>::Arguments>;

            pub(super) async fn write(
                pool: &Pool<$db>,
                plan: &Plan<'_>,
                params: Params,
            ) -> Result<(), sqlx::Error> {
                let sql = Statements::for_backend(params);
                let mut tx = pool.begin().await?;
                insert(&mut tx, sql, 0, &plan.interceptions, |q, (r, end)| {
                    interception(q, r, *end)
                })
                .await?;
                insert(&mut tx, sql, 1, &plan.token_usages, |q, r| {
                    token_usage(q, r)
                })
                .await?;
                insert(&mut tx, sql, 2, &plan.prompts, |q, r| prompt(q, r)).await?;
                insert(&mut tx, sql, 3, &plan.tool_usages, |q, r| tool_usage(q, r)).await?;
                insert(&mut tx, sql, 4, &plan.thoughts, |q, r| thought(q, r)).await?;
                for end in &plan.ends {
                    let q = sqlx::query(sql.update_end.as_str())
                        .bind(Some(end.ended_at))
                        .bind(Some(end.outcome.as_str()))
                        .bind(end.upstream_status.map(i32::from))
                        .bind(Some(attempts(end.attempts)))
                        .bind(Some(json_object(&end.metadata)))
                        .bind(end.id.to_string());
                    q.execute(&mut *tx).await?;
                }
                tx.commit().await
            }

            /// Inserts `rows` into table number `table`, a power of two at a time.
            async fn insert<'q, T>(
                tx: &mut sqlx::Transaction<'_, $db>,
                sql: &'static Statements,
                table: usize,
                mut rows: &'q [T],
                bind: impl Fn(Q<'q>, &'q T) -> Q<'q>,
            ) -> Result<(), sqlx::Error> {
                while !rows.is_empty() {
                    let (chunk, rest) = rows.split_at(rows_per_insert(rows.len()));
                    let q = chunk
                        .iter()
                        .fold(sqlx::query(sql.insert(table, chunk.len())), &bind);
                    q.execute(&mut **tx).await?;
                    rows = rest;
                }
                Ok(())
            }

            fn interception<'q>(
                q: Q<'q>,
                r: &'q InterceptionRecord,
                end: Option<&'q InterceptionEndedRecord>,
            ) -> Q<'q> {
                q.bind($id(&r.id))
                    .bind($text(&r.initiator_id))
                    .bind($name(&r.provider))
                    .bind($text(&r.provider_name))
                    .bind($name(&r.api))
                    .bind($text(&r.model))
                    .bind($name(&r.client))
                    .bind(r.user_agent.as_deref().map($text))
                    .bind(r.client_session_id.as_deref().map($text))
                    .bind($name(&r.credential_kind))
                    .bind(r.credential_hint.as_deref().map($text))
                    .bind(r.streaming)
                    .bind($time(&r.started_at))
                    .bind(end.map(|e| $time(&e.ended_at)))
                    .bind(end.map(|e| e.outcome.as_str()))
                    .bind(end.and_then(|e| e.upstream_status.map(i32::from)))
                    .bind(end.map(|e| attempts(e.attempts)))
                    .bind($object(&r.metadata))
                    .bind(end.map(|e| $object(&e.metadata)))
            }

            fn token_usage<'q>(q: Q<'q>, r: &'q TokenUsageRecord) -> Q<'q> {
                q.bind($id(&r.id))
                    .bind($id(&r.interception_id))
                    .bind($text(&r.provider_response_id))
                    .bind(r.input_tokens)
                    .bind(r.output_tokens)
                    .bind(r.cache_read_input_tokens)
                    .bind(r.cache_write_input_tokens)
                    .bind($counts(&r.extra))
                    .bind($time(&r.created_at))
            }

            fn prompt<'q>(q: Q<'q>, r: &'q PromptRecord) -> Q<'q> {
                q.bind($id(&r.id))
                    .bind($id(&r.interception_id))
                    .bind($text(&r.provider_response_id))
                    .bind($text(&r.prompt))
                    .bind($object(&r.metadata))
                    .bind($time(&r.created_at))
            }

            fn tool_usage<'q>(q: Q<'q>, r: &'q ToolUsageRecord) -> Q<'q> {
                q.bind($id(&r.id))
                    .bind($id(&r.interception_id))
                    .bind($text(&r.provider_response_id))
                    .bind(r.provider_tool_call_id.as_deref().map($text))
                    .bind(r.server_url.as_deref().map($text))
                    .bind($text(&r.tool))
                    .bind(json(&r.input))
                    .bind(r.injected)
                    .bind(r.invocation_error.as_deref().map($text))
                    .bind($object(&r.metadata))
                    .bind($time(&r.created_at))
            }

            fn thought<'q>(q: Q<'q>, r: &'q ModelThoughtRecord) -> Q<'q> {
                q.bind($id(&r.id))
                    .bind($id(&r.interception_id))
                    .bind($text(&r.content))
                    .bind($object(&r.metadata))
                    .bind($time(&r.created_at))
            }
        }
    };
}

backend_writer!(
    sqlite,
    sqlx::Sqlite,
    shared_text,
    shared_name,
    shared_id,
    shared_time,
    shared_object,
    shared_counts
);
backend_writer!(
    postgres,
    sqlx::Postgres,
    text,
    text,
    id_text,
    time,
    json_object,
    json_counts
);

fn attempts(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// PostgreSQL refuses NUL in `text` and `jsonb`; a client can send one in any string, and the
/// record must still be stored, so NUL becomes U+FFFD on both backends. Text without NUL
/// (all of it, in practice) is not copied here.
fn text(s: &str) -> Cow<'_, str> {
    if memchr::memchr(0, s.as_bytes()).is_some() {
        Cow::Owned(s.replace('\0', "\u{fffd}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// [`text`] for SQLite: sqlx's SQLite arguments own their values, and take an `Arc<str>` as
/// it is, where a borrowed or owned string costs a `String` and an `Arc` of it.
fn shared_text(s: &str) -> std::sync::Arc<str> {
    std::sync::Arc::from(&*text(s))
}

/// How many fixed names a binding thread keeps (see [`shared_name`]): the bridge has fewer
/// than twenty; names beyond the limit are copied like any text.
const MAX_SHARED_NAMES: usize = 64;

thread_local! {
    static SHARED_NAMES: RefCell<Vec<(&'static str, std::sync::Arc<str>)>> =
        const { RefCell::new(Vec::new()) };
}

/// A fixed name (provider kind, API, client, credential kind) for SQLite. The bridge hands
/// over its static names borrowed; each is bound as one `Arc<str>` made once per thread
/// that binds rows (the control runtime's), so a row costs a reference count instead of an
/// allocation and a copy. Names read back from the spool are owned and go through
/// [`shared_text`].
// The `Cow` itself, not a `&str`: its variant is what tells a static name from one read back.
#[allow(clippy::ptr_arg)]
fn shared_name(name: &Cow<'static, str>) -> std::sync::Arc<str> {
    let Cow::Borrowed(name) = name else {
        return shared_text(name);
    };
    SHARED_NAMES.with(|names| {
        let mut names = names.borrow_mut();
        if let Some((_, shared)) = names.iter().find(|(known, _)| *known == *name) {
            return shared.clone();
        }
        let shared = shared_text(name);
        if names.len() < MAX_SHARED_NAMES {
            names.push((name, shared.clone()));
        }
        shared
    })
}

/// A record id as text (its hyphenated form), for PostgreSQL.
fn id_text(id: &Uuid) -> String {
    id.to_string()
}

/// A record id as text for SQLite, made in one allocation (see [`shared_text`]).
fn shared_id(id: &Uuid) -> std::sync::Arc<str> {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    std::sync::Arc::from(&*id.hyphenated().encode_lower(&mut buf))
}

/// A timestamp as bound for PostgreSQL (`timestamptz`).
fn time(t: &DateTime<Utc>) -> DateTime<Utc> {
    *t
}

/// A timestamp as text for SQLite, exactly as sqlx would bind a `DateTime<Utc>` there
/// (`to_rfc3339_opts(SecondsFormat::AutoSi, false)`: stored timestamps compare as text, so
/// the form must not change), written straight into one allocation instead of chrono's
/// formatter, a `String` and an `Arc` of it. Years outside 0–9999 and leap seconds, which
/// never occur in records, go through chrono.
fn shared_time(t: &DateTime<Utc>) -> std::sync::Arc<str> {
    let mut buf = [0u8; RFC3339_MAX];
    match rfc3339(t, &mut buf) {
        Some(text) => std::sync::Arc::from(text),
        None => std::sync::Arc::from(t.to_rfc3339_opts(SecondsFormat::AutoSi, false)),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnn+00:00`
const RFC3339_MAX: usize = 35;

fn rfc3339<'b>(t: &DateTime<Utc>, buf: &'b mut [u8; RFC3339_MAX]) -> Option<&'b str> {
    // One conversion to the calendar; `DateTime`'s own accessors each apply the offset.
    let utc = t.naive_utc();
    let (date, clock) = (utc.date(), utc.time());
    let year = u32::try_from(date.year()).ok().filter(|y| *y <= 9999)?;
    let nanos = clock.nanosecond();
    if nanos >= 1_000_000_000 {
        return None;
    }
    // chrono's `AutoSi`: no fraction, or 3, 6 or 9 digits, the fewest that are exact.
    let (fraction, width) = match nanos {
        0 => (0, 0),
        n if n % 1_000_000 == 0 => (n / 1_000_000, 3),
        n if n % 1_000 == 0 => (n / 1_000, 6),
        n => (n, 9),
    };
    *buf = *b"0000-00-00T00:00:00.000000000+00:00";
    digits(&mut buf[0..4], year);
    digits(&mut buf[5..7], date.month());
    digits(&mut buf[8..10], date.day());
    digits(&mut buf[11..13], clock.hour());
    digits(&mut buf[14..16], clock.minute());
    digits(&mut buf[17..19], clock.second());
    let mut len = 19;
    if width > 0 {
        digits(&mut buf[20..20 + width], fraction);
        len = 20 + width;
    }
    buf.copy_within(29..35, len);
    std::str::from_utf8(&buf[..len + 6]).ok()
}

/// Writes `value` in decimal into all of `out`, zero-padded (`value` fits: callers size
/// `out` for it).
fn digits(out: &mut [u8], mut value: u32) {
    for d in out.iter_mut().rev() {
        // A digit is below 10: the cast cannot truncate.
        *d = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// A metadata map as JSON text for SQLite. Most maps are empty: those share one `{}`
/// instead of a serialized `String` and an `Arc` of it each.
fn shared_object(map: &Map<String, Value>) -> std::sync::Arc<str> {
    if map.is_empty() {
        return empty_object();
    }
    // Serializing a map with string keys cannot fail; "{}" is never reached.
    let text = serde_json::to_string(&JsonObject(map)).unwrap_or_else(|_| "{}".to_owned());
    std::sync::Arc::from(text)
}

/// The one `{}` that every empty map or count list binds on SQLite.
fn empty_object() -> std::sync::Arc<str> {
    static EMPTY: OnceLock<std::sync::Arc<str>> = OnceLock::new();
    EMPTY.get_or_init(|| std::sync::Arc::from("{}")).clone()
}

/// Token counts as JSON text for SQLite (see [`shared_object`]).
fn shared_counts(counts: &TokenCounts) -> std::sync::Arc<str> {
    if counts.is_empty() {
        return empty_object();
    }
    // Serializing string keys and numbers cannot fail; "{}" is never reached.
    let text = serde_json::to_string(&CountsObject(counts)).unwrap_or_else(|_| "{}".to_owned());
    std::sync::Arc::from(text)
}

/// Token counts to bind as a JSON object, for PostgreSQL.
fn json_counts(counts: &TokenCounts) -> sqlx::types::Json<CountsObject<'_>> {
    sqlx::types::Json(CountsObject(counts))
}

/// Serializes token counts with NUL in a name replaced, as [`JsonObject`] does.
#[derive(Debug)]
struct CountsObject<'a>(&'a TokenCounts);

impl serde::Serialize for CountsObject<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0.iter() {
            map.serialize_entry(&text(k), v)?;
        }
        map.end()
    }
}

/// A JSON value to bind, NUL replaced as in [`text`] (copied only when it holds one).
fn json(value: &Value) -> sqlx::types::Json<Cow<'_, Value>> {
    sqlx::types::Json(if has_nul(value) {
        Cow::Owned(without_nul(value))
    } else {
        Cow::Borrowed(value)
    })
}

/// A metadata map to bind as a JSON object.
fn json_object(map: &Map<String, Value>) -> sqlx::types::Json<JsonObject<'_>> {
    sqlx::types::Json(JsonObject(map))
}

/// Serializes a map as a JSON object with NUL replaced, without building a `Value` first.
#[derive(Debug)]
struct JsonObject<'a>(&'a Map<String, Value>);

impl serde::Serialize for JsonObject<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            if has_nul(v) || k.contains('\0') {
                map.serialize_entry(&text(k), &without_nul(v))?;
            } else {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn without_nul(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(text(s).into_owned()),
        Value::Array(items) => Value::Array(items.iter().map(without_nul).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (text(k).into_owned(), without_nul(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_take_powers_of_two_up_to_the_limit() {
        let counts: Vec<usize> = [0, 1, 2, 3, 7, 8, 255, 256, 257, 1000]
            .into_iter()
            .map(rows_per_insert)
            .collect();
        assert_eq!(counts, [0, 1, 2, 2, 4, 8, 128, 256, 256, 256]);
    }

    #[test]
    fn fixed_names_are_shared_and_owned_ones_copied() {
        let first = shared_name(&Cow::Borrowed("anthropic"));
        let again = shared_name(&Cow::Borrowed("anthropic"));
        assert!(std::sync::Arc::ptr_eq(&first, &again));
        assert_eq!(&*first, "anthropic");
        // From the spool: owned, copied each time, NUL replaced as in any text.
        let owned = Cow::Owned("by\0ok".to_owned());
        let a = shared_name(&owned);
        assert_eq!(&*a, "by\u{fffd}ok");
        assert!(!std::sync::Arc::ptr_eq(&a, &shared_name(&owned)));
        // The cache stays bounded: names past the limit are still bound, just not kept.
        let many: Vec<&'static str> = (0..MAX_SHARED_NAMES + 8)
            .map(|n| &*Box::leak(format!("name-{n}").into_boxed_str()))
            .collect();
        for name in &many {
            assert_eq!(&*shared_name(&Cow::Borrowed(name)), *name);
        }
        SHARED_NAMES.with(|names| assert_eq!(names.borrow().len(), MAX_SHARED_NAMES));
        let last = Cow::Borrowed(many[many.len() - 1]);
        assert!(!std::sync::Arc::ptr_eq(
            &shared_name(&last),
            &shared_name(&last)
        ));
    }

    #[test]
    fn statements_number_their_parameters_per_backend() {
        let two = insert_sql(&MODEL_THOUGHTS, 2, Params::Dollar);
        assert_eq!(
            two,
            "INSERT INTO aibridge_model_thoughts (id, interception_id, content, metadata, \
             created_at) VALUES ($1, $2, $3, $4, $5), ($6, $7, $8, $9, $10) \
             ON CONFLICT (id) DO NOTHING"
        );
        let one = insert_sql(&MODEL_THOUGHTS, 1, Params::Question);
        assert!(one.contains("VALUES (?, ?, ?, ?, ?) ON CONFLICT"), "{one}");
        let update = &Statements::new(Params::Dollar).update_end;
        assert!(
            update.ends_with("ended_metadata = $5 WHERE id = $6"),
            "{update}"
        );
    }

    /// Every sub-second shape chrono's `AutoSi` picks between (none, 3, 6, 9 digits) comes up.
    fn nanos() -> impl proptest::strategy::Strategy<Value = u32> {
        use proptest::prelude::*;
        prop_oneof![
            Just(0u32),
            (0u32..1000).prop_map(|ms| ms * 1_000_000),
            (0u32..1_000_000).prop_map(|us| us * 1_000),
            0u32..1_000_000_000,
        ]
    }

    proptest::proptest! {
        #[test]
        fn timestamps_are_written_as_sqlx_binds_them(
            // Years -50..10,050: both sides of the fast path's range.
            secs in -63_800_000_000i64..255_000_000_000,
            nanos in nanos(),
        ) {
            let Some(t) = DateTime::<Utc>::from_timestamp(secs, nanos) else {
                return Ok(());
            };
            let ours = shared_time(&t);
            proptest::prop_assert_eq!(&*ours, t.to_rfc3339_opts(SecondsFormat::AutoSi, false));
        }
    }

    #[test]
    fn leap_seconds_and_far_years_go_through_chrono() {
        let mut buf = [0u8; RFC3339_MAX];
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
            .map(|n| n.and_utc());
        let far = DateTime::<Utc>::from_timestamp(300_000_000_000, 0);
        let both: Vec<DateTime<Utc>> = [leap, far].into_iter().flatten().collect();
        assert_eq!(both.len(), 2, "both timestamps exist");
        for t in both {
            assert_eq!(rfc3339(&t, &mut buf), None);
            assert_eq!(
                &*shared_time(&t),
                t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
            );
        }
    }

    #[test]
    fn metadata_objects_as_sqlite_text() {
        assert_eq!(&*shared_object(&Map::new()), "{}");
        let mut map = Map::new();
        map.insert("team".into(), Value::from("plat\0form"));
        map.insert("n\0".into(), Value::from(3));
        assert_eq!(
            &*shared_object(&map),
            "{\"team\":\"plat\u{fffd}form\",\"n\u{fffd}\":3}"
        );
    }

    #[test]
    fn nul_is_replaced_only_where_present() {
        assert!(matches!(text("plain"), Cow::Borrowed("plain")));
        assert_eq!(text("a\0b"), "a\u{fffd}b");
        let mut map = Map::new();
        map.insert("k\0".into(), serde_json::json!({"v": ["x\0", 1]}));
        map.insert("ok".into(), Value::from("fine"));
        let out = serde_json::to_value(JsonObject(&map)).unwrap_or_default();
        assert_eq!(
            out,
            serde_json::json!({"k\u{fffd}": {"v": ["x\u{fffd}", 1]}, "ok": "fine"})
        );
    }
}
