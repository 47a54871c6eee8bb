//! The audit queries. Plain SQL that runs unchanged on SQLite and PostgreSQL, apart from
//! placeholders and the day expression, so what the README shows is what the CLI runs.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbBackend, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, Statement, Value,
};
use serde::Serialize;

use super::{
    AuditError, Filters, GroupBy, InterceptionsArgs, PromptsArgs, ToolsArgs, UsageArgs, bounds,
};
use crate::record::sql::entity::{
    interception, model_thought, token_usage, tool_usage, user_prompt,
};

/// A statement under construction: SQL text plus its bound values.
struct Sql {
    backend: DbBackend,
    text: String,
    values: Vec<Value>,
}

impl Sql {
    fn new(backend: DbBackend, text: &str) -> Self {
        Self {
            backend,
            text: text.to_owned(),
            values: Vec::new(),
        }
    }

    /// Binds `value` and returns its placeholder.
    fn bind(&mut self, value: impl Into<Value>) -> String {
        self.values.push(value.into());
        match self.backend {
            DbBackend::Postgres => format!("${}", self.values.len()),
            _ => "?".to_owned(),
        }
    }

    fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    /// Adds `AND`ed conditions for `filters`; `time` is the column the time bounds apply to
    /// and the interceptions table is aliased `i`.
    fn filters(
        &mut self,
        filters: &Filters,
        time: &str,
        now: DateTime<Utc>,
    ) -> Result<(), AuditError> {
        let (since, until) = bounds(filters, now)?;
        for (column, value) in [
            ("i.initiator_id", &filters.actor),
            ("i.model", &filters.model),
            ("i.client", &filters.client),
        ] {
            if let Some(v) = value {
                let p = self.bind(v.clone());
                self.push(&format!(" AND {column} = {p}"));
            }
        }
        if let Some(v) = &filters.provider {
            let a = self.bind(v.clone());
            let b = self.bind(v.clone());
            self.push(&format!(" AND (i.provider_name = {a} OR i.provider = {b})"));
        }
        if let Some(t) = since {
            let p = self.bind(t);
            self.push(&format!(" AND {time} >= {p}"));
        }
        if let Some(t) = until {
            let p = self.bind(t);
            self.push(&format!(" AND {time} < {p}"));
        }
        Ok(())
    }

    fn build(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text, self.values)
    }
}

/// One interception in a listing, with its token totals.
#[derive(Debug, Clone, Serialize)]
pub struct InterceptionSummary {
    /// The stored row.
    #[serde(flatten)]
    pub interception: interception::Model,
    /// Summed over the interception's token usages.
    #[serde(flatten)]
    pub tokens: TokenTotals,
}

/// Token sums.
#[derive(Debug, Clone, Default, Serialize, FromQueryResult)]
pub struct TokenTotals {
    /// Uncached input tokens.
    pub input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// Input tokens read from the cache.
    pub cache_read_input_tokens: i64,
    /// Input tokens written to the cache.
    pub cache_write_input_tokens: i64,
}

#[derive(Debug, FromQueryResult)]
struct TotalsById {
    interception_id: String,
    input_tokens: i64,
    output_tokens: i64,
    cache_read_input_tokens: i64,
    cache_write_input_tokens: i64,
}

/// A page of interceptions.
#[derive(Debug, Clone, Serialize)]
pub struct InterceptionPage {
    /// Newest first.
    pub interceptions: Vec<InterceptionSummary>,
    /// Pass as `--cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

const SUMS: &str = "CAST(COALESCE(SUM(t.input_tokens), 0) AS BIGINT) AS input_tokens, \
     CAST(COALESCE(SUM(t.output_tokens), 0) AS BIGINT) AS output_tokens, \
     CAST(COALESCE(SUM(t.cache_read_input_tokens), 0) AS BIGINT) AS cache_read_input_tokens, \
     CAST(COALESCE(SUM(t.cache_write_input_tokens), 0) AS BIGINT) AS cache_write_input_tokens";

pub(super) async fn interceptions(
    db: &DatabaseConnection,
    args: &InterceptionsArgs,
    now: DateTime<Utc>,
) -> Result<InterceptionPage, AuditError> {
    let backend = db.get_database_backend();
    let mut sql = Sql::new(
        backend,
        "SELECT i.* FROM aibridge_interceptions i WHERE 1 = 1",
    );
    sql.filters(&args.filters, "i.started_at", now)?;
    if let Some(cursor) = &args.cursor {
        let after = interception::Entity::find_by_id(cursor.clone())
            .one(db)
            .await?
            .ok_or_else(|| AuditError::NotFound(cursor.clone()))?;
        let t1 = sql.bind(after.started_at);
        let t2 = sql.bind(after.started_at);
        let id = sql.bind(after.id);
        sql.push(&format!(
            " AND (i.started_at < {t1} OR (i.started_at = {t2} AND i.id < {id}))"
        ));
    }
    let limit = args.limit.max(1);
    let fetch = sql.bind(i64::try_from(limit + 1).unwrap_or(i64::MAX));
    sql.push(&format!(
        " ORDER BY i.started_at DESC, i.id DESC LIMIT {fetch}"
    ));
    let mut rows = interception::Model::find_by_statement(sql.build())
        .all(db)
        .await?;
    let next_cursor = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id.clone())
    } else {
        None
    };

    let mut totals = std::collections::HashMap::new();
    if !rows.is_empty() {
        let mut sql = Sql::new(backend, "SELECT t.interception_id, ");
        sql.push(SUMS);
        sql.push(" FROM aibridge_token_usages t WHERE t.interception_id IN (");
        let marks: Vec<String> = rows.iter().map(|r| sql.bind(r.id.clone())).collect();
        sql.push(&marks.join(", "));
        sql.push(") GROUP BY t.interception_id");
        for t in TotalsById::find_by_statement(sql.build()).all(db).await? {
            totals.insert(
                t.interception_id,
                TokenTotals {
                    input_tokens: t.input_tokens,
                    output_tokens: t.output_tokens,
                    cache_read_input_tokens: t.cache_read_input_tokens,
                    cache_write_input_tokens: t.cache_write_input_tokens,
                },
            );
        }
    }
    Ok(InterceptionPage {
        interceptions: rows
            .into_iter()
            .map(|interception| InterceptionSummary {
                tokens: totals.remove(&interception.id).unwrap_or_default(),
                interception,
            })
            .collect(),
        next_cursor,
    })
}

/// An interception and everything recorded about it.
#[derive(Debug, Clone, Serialize)]
pub struct InterceptionDetail {
    /// The interception row.
    pub interception: interception::Model,
    /// Its prompts.
    pub prompts: Vec<user_prompt::Model>,
    /// Its token usages.
    pub token_usages: Vec<token_usage::Model>,
    /// Its tool calls.
    pub tool_usages: Vec<tool_usage::Model>,
    /// Its model thoughts.
    pub thoughts: Vec<model_thought::Model>,
}

pub(super) async fn show(
    db: &DatabaseConnection,
    id: &str,
) -> Result<InterceptionDetail, AuditError> {
    let interception = interception::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .ok_or_else(|| AuditError::NotFound(id.to_owned()))?;
    Ok(InterceptionDetail {
        prompts: user_prompt::Entity::find()
            .filter(user_prompt::Column::InterceptionId.eq(id))
            .order_by_asc(user_prompt::Column::CreatedAt)
            .order_by_asc(user_prompt::Column::Id)
            .all(db)
            .await?,
        token_usages: token_usage::Entity::find()
            .filter(token_usage::Column::InterceptionId.eq(id))
            .order_by_asc(token_usage::Column::CreatedAt)
            .order_by_asc(token_usage::Column::Id)
            .all(db)
            .await?,
        tool_usages: tool_usage::Entity::find()
            .filter(tool_usage::Column::InterceptionId.eq(id))
            .order_by_asc(tool_usage::Column::CreatedAt)
            .order_by_asc(tool_usage::Column::Id)
            .all(db)
            .await?,
        thoughts: model_thought::Entity::find()
            .filter(model_thought::Column::InterceptionId.eq(id))
            .order_by_asc(model_thought::Column::CreatedAt)
            .order_by_asc(model_thought::Column::Id)
            .all(db)
            .await?,
        interception,
    })
}

/// Token sums of one group.
#[derive(Debug, Clone, Serialize, FromQueryResult)]
pub struct UsageRow {
    /// The actor, model, provider or day (`YYYY-MM-DD`).
    pub key: String,
    /// Interceptions with token usage in the group.
    pub interceptions: i64,
    /// Uncached input tokens.
    pub input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// Input tokens read from the cache.
    pub cache_read_input_tokens: i64,
    /// Input tokens written to the cache.
    pub cache_write_input_tokens: i64,
    /// All of the above.
    pub total_tokens: i64,
}

pub(super) async fn usage(
    db: &DatabaseConnection,
    args: &UsageArgs,
    now: DateTime<Utc>,
) -> Result<Vec<UsageRow>, AuditError> {
    let backend = db.get_database_backend();
    let key = match (args.group_by, backend) {
        (GroupBy::Actor, _) => "i.initiator_id",
        (GroupBy::Model, _) => "i.model",
        (GroupBy::Provider, _) => "i.provider_name",
        (GroupBy::Day, DbBackend::Postgres) => {
            "to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        }
        // SQLite stores RFC 3339 text in UTC: the date is its first ten characters.
        (GroupBy::Day, _) => "substr(t.created_at, 1, 10)",
    };
    let mut sql = Sql::new(
        backend,
        &format!(
            "SELECT {key} AS key, COUNT(DISTINCT t.interception_id) AS interceptions, {SUMS}, \
         CAST(COALESCE(SUM(t.input_tokens + t.output_tokens + t.cache_read_input_tokens + t.cache_write_input_tokens), 0) AS BIGINT) AS total_tokens \
         FROM aibridge_token_usages t JOIN aibridge_interceptions i ON i.id = t.interception_id WHERE 1 = 1"
        ),
    );
    sql.filters(&args.filters, "t.created_at", now)?;
    sql.push(&format!(" GROUP BY {key}"));
    sql.push(if args.group_by == GroupBy::Day {
        " ORDER BY key"
    } else {
        " ORDER BY total_tokens DESC, key"
    });
    Ok(UsageRow::find_by_statement(sql.build()).all(db).await?)
}

/// Calls of one tool.
#[derive(Debug, Clone, Serialize, FromQueryResult)]
pub struct ToolRow {
    /// The tool's name as the model saw it.
    pub tool: String,
    /// Injected by the bridge (MCP) or a client tool.
    pub injected: bool,
    /// The MCP server, for injected tools (empty otherwise).
    pub server_url: String,
    /// Calls.
    pub calls: i64,
    /// Injected calls that failed.
    pub errors: i64,
    /// Interceptions with at least one call.
    pub interceptions: i64,
}

pub(super) async fn tools(
    db: &DatabaseConnection,
    args: &ToolsArgs,
    now: DateTime<Utc>,
) -> Result<Vec<ToolRow>, AuditError> {
    let mut sql = Sql::new(
        db.get_database_backend(),
        "SELECT u.tool, u.injected, COALESCE(u.server_url, '') AS server_url, COUNT(*) AS calls, \
         CAST(SUM(CASE WHEN u.invocation_error IS NULL THEN 0 ELSE 1 END) AS BIGINT) AS errors, \
         COUNT(DISTINCT u.interception_id) AS interceptions \
         FROM aibridge_tool_usages u JOIN aibridge_interceptions i ON i.id = u.interception_id WHERE 1 = 1",
    );
    sql.filters(&args.filters, "u.created_at", now)?;
    sql.push(
        " GROUP BY u.tool, u.injected, COALESCE(u.server_url, '') ORDER BY calls DESC, u.tool",
    );
    Ok(ToolRow::find_by_statement(sql.build()).all(db).await?)
}

/// A recorded prompt with who sent it.
#[derive(Debug, Clone, Serialize, FromQueryResult)]
pub struct PromptRow {
    /// The interception.
    pub interception_id: String,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// The actor.
    pub initiator_id: String,
    /// The model.
    pub model: String,
    /// The client.
    pub client: String,
    /// The prompt text.
    pub prompt: String,
}

pub(super) async fn prompts(
    db: &DatabaseConnection,
    args: &PromptsArgs,
    now: DateTime<Utc>,
) -> Result<Vec<PromptRow>, AuditError> {
    let mut sql = Sql::new(
        db.get_database_backend(),
        "SELECT p.interception_id, p.created_at, i.initiator_id, i.model, i.client, p.prompt \
         FROM aibridge_user_prompts p JOIN aibridge_interceptions i ON i.id = p.interception_id WHERE 1 = 1",
    );
    sql.filters(&args.filters, "p.created_at", now)?;
    if let Some(needle) = &args.grep {
        let escaped = needle
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let p = sql.bind(format!("%{escaped}%"));
        sql.push(&format!(" AND LOWER(p.prompt) LIKE {p} ESCAPE '\\'"));
    }
    let limit = sql.bind(i64::try_from(args.limit.max(1)).unwrap_or(i64::MAX));
    sql.push(&format!(
        " ORDER BY p.created_at DESC, p.id DESC LIMIT {limit}"
    ));
    Ok(PromptRow::find_by_statement(sql.build()).all(db).await?)
}
