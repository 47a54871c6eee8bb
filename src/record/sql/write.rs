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

use std::collections::{HashMap, HashSet};

use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, TransactionTrait,
};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::entity::{interception, model_thought, token_usage, tool_usage, user_prompt};
use crate::record::{InterceptionEndedRecord, InterceptionRecord, Record};

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

pub(super) async fn write_batch(db: &DatabaseConnection, records: &[Record]) -> Result<(), DbErr> {
    // Which interceptions start in this batch, and the last end of each (the one an
    // `UPDATE` per end, applied in order, would have left).
    let mut starts = HashSet::new();
    let mut last_end: HashMap<Uuid, &InterceptionEndedRecord> = HashMap::new();
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
    let mut interceptions = Vec::new();
    let mut token_usages = Vec::new();
    let mut prompts = Vec::new();
    let mut tool_usages = Vec::new();
    let mut thoughts = Vec::new();
    let mut ends = Vec::new();
    for record in records {
        match record {
            Record::Interception(r) => {
                if inserted.insert(r.id) {
                    interceptions.push(interception_row(r, last_end.get(&r.id).copied()));
                }
            }
            Record::InterceptionEnded(r) => {
                // Written with its start, or (start in an earlier batch) updated, once.
                if !starts.contains(&r.id)
                    && last_end.get(&r.id).is_some_and(|e| std::ptr::eq(*e, r))
                {
                    ends.push(r);
                }
            }
            Record::TokenUsage(r) => token_usages.push(
                token_usage::Model {
                    id: r.id.to_string(),
                    interception_id: r.interception_id.to_string(),
                    provider_response_id: text(&r.provider_response_id),
                    input_tokens: r.input_tokens,
                    output_tokens: r.output_tokens,
                    cache_read_input_tokens: r.cache_read_input_tokens,
                    cache_write_input_tokens: r.cache_write_input_tokens,
                    metadata: object(&r.extra),
                    created_at: r.created_at,
                }
                .into_active_model(),
            ),
            Record::Prompt(r) => prompts.push(
                user_prompt::Model {
                    id: r.id.to_string(),
                    interception_id: r.interception_id.to_string(),
                    provider_response_id: text(&r.provider_response_id),
                    prompt: text(&r.prompt),
                    metadata: object(&r.metadata),
                    created_at: r.created_at,
                }
                .into_active_model(),
            ),
            Record::ToolUsage(r) => tool_usages.push(
                tool_usage::Model {
                    id: r.id.to_string(),
                    interception_id: r.interception_id.to_string(),
                    provider_response_id: text(&r.provider_response_id),
                    provider_tool_call_id: r.provider_tool_call_id.as_deref().map(text),
                    server_url: r.server_url.as_deref().map(text),
                    tool: text(&r.tool),
                    input: json(&r.input),
                    injected: r.injected,
                    invocation_error: r.invocation_error.as_deref().map(text),
                    metadata: object(&r.metadata),
                    created_at: r.created_at,
                }
                .into_active_model(),
            ),
            Record::ModelThought(r) => thoughts.push(
                model_thought::Model {
                    id: r.id.to_string(),
                    interception_id: r.interception_id.to_string(),
                    content: text(&r.content),
                    metadata: object(&r.metadata),
                    created_at: r.created_at,
                }
                .into_active_model(),
            ),
        }
    }

    let txn = db.begin().await?;
    upsert_interceptions(&txn, interceptions).await?;
    insert_new::<token_usage::Entity, _>(&txn, token_usages).await?;
    insert_new::<user_prompt::Entity, _>(&txn, prompts).await?;
    insert_new::<tool_usage::Entity, _>(&txn, tool_usages).await?;
    insert_new::<model_thought::Entity, _>(&txn, thoughts).await?;
    for end in ends {
        apply_end(&txn, end).await?;
    }
    txn.commit().await
}

/// Inserts rows whose id is not stored yet; rows already there (a replay) are skipped.
async fn insert_new<E, A>(txn: &sea_orm::DatabaseTransaction, mut rows: Vec<A>) -> Result<(), DbErr>
where
    E: EntityTrait,
    A: ActiveModelTrait<Entity = E> + Send,
{
    while !rows.is_empty() {
        let rest = rows.split_off(rows_per_insert(rows.len()));
        let chunk = std::mem::replace(&mut rows, rest);
        E::insert_many(chunk)
            .on_conflict_do_nothing()
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// The row of an interception, complete with its end when the end is known.
fn interception_row(
    r: &InterceptionRecord,
    end: Option<&InterceptionEndedRecord>,
) -> interception::ActiveModel {
    interception::Model {
        id: r.id.to_string(),
        initiator_id: text(&r.initiator_id),
        provider: text(&r.provider),
        provider_name: text(&r.provider_name),
        api: text(&r.api),
        model: text(&r.model),
        client: text(&r.client),
        user_agent: r.user_agent.as_deref().map(text),
        client_session_id: r.client_session_id.as_deref().map(text),
        credential_kind: text(&r.credential_kind),
        credential_hint: r.credential_hint.as_deref().map(text),
        streaming: r.streaming,
        started_at: r.started_at,
        ended_at: end.map(|e| e.ended_at),
        outcome: end.map(|e| e.outcome.as_str().to_owned()),
        upstream_status: end.and_then(|e| e.upstream_status.map(i32::from)),
        attempts: end.map(|e| attempts(e.attempts)),
        metadata: object(&r.metadata),
        ended_metadata: end.map(|e| object(&e.metadata)),
    }
    .into_active_model()
}

/// Inserts interception rows. A row already stored (a replay) keeps its start columns; if
/// the new row carries an end, the stored row takes that end, as the `UPDATE` of
/// [`apply_end`] would; if it carries none, the stored row is left alone.
async fn upsert_interceptions(
    txn: &sea_orm::DatabaseTransaction,
    mut rows: Vec<interception::ActiveModel>,
) -> Result<(), DbErr> {
    use interception::Column;
    let on_conflict = OnConflict::column(Column::Id)
        .update_columns([
            Column::EndedAt,
            Column::Outcome,
            Column::UpstreamStatus,
            Column::Attempts,
            Column::EndedMetadata,
        ])
        .action_and_where(Expr::col((Alias::new("excluded"), Column::EndedAt)).is_not_null())
        .to_owned();
    while !rows.is_empty() {
        let rest = rows.split_off(rows_per_insert(rows.len()));
        let chunk = std::mem::replace(&mut rows, rest);
        interception::Entity::insert_many(chunk)
            .on_conflict(on_conflict.clone())
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

async fn apply_end(
    txn: &sea_orm::DatabaseTransaction,
    end: &InterceptionEndedRecord,
) -> Result<(), DbErr> {
    use interception::Column;
    interception::Entity::update_many()
        .col_expr(Column::EndedAt, Expr::value(end.ended_at))
        .col_expr(Column::Outcome, Expr::value(end.outcome.as_str()))
        .col_expr(
            Column::UpstreamStatus,
            Expr::value(end.upstream_status.map(i32::from)),
        )
        .col_expr(Column::Attempts, Expr::value(attempts(end.attempts)))
        .col_expr(Column::EndedMetadata, Expr::value(object(&end.metadata)))
        .filter(Column::Id.eq(end.id.to_string()))
        .exec(txn)
        .await?;
    Ok(())
}

fn attempts(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn object(map: &Map<String, Value>) -> Value {
    Value::Object(map.iter().map(|(k, v)| (text(k), json(v))).collect())
}

/// PostgreSQL refuses NUL in `text` and `jsonb`; a client can send one in any string, and the
/// record must still be stored, so NUL becomes U+FFFD on both backends.
fn text(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{fffd}")
    } else {
        s.to_owned()
    }
}

fn json(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(text(s)),
        Value::Array(items) => Value::Array(items.iter().map(json).collect()),
        Value::Object(map) => object(map),
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
}
