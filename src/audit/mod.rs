//! `aibridge audit`: who used which model, with which prompt and tools, at what token cost.
//!
//! Reads the audit database (the same URL as `aibridge serve`) and prints tables for people
//! or, with `--json`, one JSON document for scripts. Timestamps are RFC 3339 in UTC.

mod query;
mod render;
mod time;

use std::io::Write;

use chrono::{DateTime, Utc};
use sea_orm::DbErr;

use crate::record::sql::{SqlError, SqlOptions, connect_database};

pub use time::parse_instant;

/// The audit subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AuditCommand {
    /// List interceptions, newest first (pages with `--cursor`).
    Interceptions(InterceptionsArgs),
    /// One interception with its prompts, token usages, tool usages and thoughts.
    Show(ShowArgs),
    /// Tokens summed by actor, model, provider or day.
    Usage(UsageArgs),
    /// Tool calls by tool: injected vs client tools, errors.
    Tools(ToolsArgs),
    /// Recorded prompts, newest first, optionally matching `--grep`.
    Prompts(PromptsArgs),
}

/// Filters shared by the subcommands (all optional, combined with AND).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Filters {
    /// Only this actor (`initiator_id`).
    #[arg(long)]
    pub actor: Option<String>,
    /// Only this provider (configured name or kind).
    #[arg(long)]
    pub provider: Option<String>,
    /// Only this model.
    #[arg(long)]
    pub model: Option<String>,
    /// Only this client (`claude-code`, `codex`, …).
    #[arg(long)]
    pub client: Option<String>,
    /// From this instant on: RFC 3339, a date (`2026-11-01`) or an age (`24h`, `7d`).
    #[arg(long)]
    pub since: Option<String>,
    /// Before this instant (same forms as `--since`).
    #[arg(long)]
    pub until: Option<String>,
}

/// `audit interceptions`.
#[derive(Debug, Clone, clap::Args)]
pub struct InterceptionsArgs {
    #[command(flatten)]
    /// Filters.
    pub filters: Filters,
    /// Rows per page.
    #[arg(long, default_value_t = 50)]
    pub limit: u64,
    /// Continue after this interception id (the `next_cursor` of the previous page).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `audit show`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// The interception id (`x-aibridge-interception-id`).
    pub id: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// How `audit usage` groups token counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum GroupBy {
    /// By actor (`initiator_id`).
    #[default]
    Actor,
    /// By model.
    Model,
    /// By provider name.
    Provider,
    /// By UTC day of the usage.
    Day,
}

/// `audit usage`.
#[derive(Debug, Clone, clap::Args)]
pub struct UsageArgs {
    #[command(flatten)]
    /// Filters.
    pub filters: Filters,
    /// What to sum by.
    #[arg(long, value_enum, default_value_t = GroupBy::Actor)]
    pub group_by: GroupBy,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `audit tools`.
#[derive(Debug, Clone, clap::Args)]
pub struct ToolsArgs {
    #[command(flatten)]
    /// Filters.
    pub filters: Filters,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `audit prompts`.
#[derive(Debug, Clone, clap::Args)]
pub struct PromptsArgs {
    #[command(flatten)]
    /// Filters.
    pub filters: Filters,
    /// Only prompts containing this text (case-insensitive).
    #[arg(long)]
    pub grep: Option<String>,
    /// The most prompts to print.
    #[arg(long, default_value_t = 50)]
    pub limit: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Why an audit command failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The database could not be opened.
    #[error(transparent)]
    Connect(#[from] SqlError),
    /// A query failed (run `aibridge migrate` if the tables are missing).
    #[error("audit query failed: {0}")]
    Query(#[from] DbErr),
    /// `--since`/`--until` could not be read.
    #[error("invalid time {0:?}: expected RFC 3339, a date (2026-11-01) or an age (24h, 7d)")]
    InvalidTime(String),
    /// No interception has this id.
    #[error("no interception with id {0}")]
    NotFound(String),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// Encoding JSON output failed.
    #[error("cannot encode JSON output: {0}")]
    Json(#[from] serde_json::Error),
}

/// Runs `cmd` against the audit database at `database_url`, writing to `out`.
pub async fn run(
    cmd: AuditCommand,
    database_url: &str,
    out: &mut dyn Write,
) -> Result<(), AuditError> {
    let db = connect_database(database_url, &SqlOptions::default()).await?;
    let now = Utc::now();
    match cmd {
        AuditCommand::Interceptions(args) => {
            let page = query::interceptions(&db, &args, now).await?;
            if args.json {
                render::json(out, &page)
            } else {
                render::interceptions(out, &page)
            }
        }
        AuditCommand::Show(args) => {
            let detail = query::show(&db, &args.id).await?;
            if args.json {
                render::json(out, &detail)
            } else {
                render::show(out, &detail)
            }
        }
        AuditCommand::Usage(args) => {
            let rows = query::usage(&db, &args, now).await?;
            if args.json {
                render::json(
                    out,
                    &serde_json::json!({ "group_by": group_name(args.group_by), "usage": rows }),
                )
            } else {
                render::usage(out, group_name(args.group_by), &rows)
            }
        }
        AuditCommand::Tools(args) => {
            let rows = query::tools(&db, &args, now).await?;
            if args.json {
                render::json(out, &serde_json::json!({ "tools": rows }))
            } else {
                render::tools(out, &rows)
            }
        }
        AuditCommand::Prompts(args) => {
            let rows = query::prompts(&db, &args, now).await?;
            if args.json {
                render::json(out, &serde_json::json!({ "prompts": rows }))
            } else {
                render::prompts(out, &rows)
            }
        }
    }
}

fn group_name(group: GroupBy) -> &'static str {
    match group {
        GroupBy::Actor => "actor",
        GroupBy::Model => "model",
        GroupBy::Provider => "provider",
        GroupBy::Day => "day",
    }
}

/// `--since` and `--until`, resolved.
type Bounds = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// The time bounds of `filters`, resolved against `now`.
fn bounds(filters: &Filters, now: DateTime<Utc>) -> Result<Bounds, AuditError> {
    let since = filters
        .since
        .as_deref()
        .map(|t| parse_instant(t, now))
        .transpose()?;
    let until = filters
        .until
        .as_deref()
        .map(|t| parse_instant(t, now))
        .transpose()?;
    Ok((since, until))
}
