//! One batch of records → one transaction.
//!
//! Within the transaction, rows are inserted parents first (interceptions, then their
//! children), and interception ends are applied last, so a batch may hold an interception
//! together with everything that belongs to it in any order the pipeline delivered.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, TransactionTrait,
};
use serde_json::{Map, Value};

use super::entity::{interception, model_thought, token_usage, tool_usage, user_prompt};
use crate::record::{InterceptionEndedRecord, Record};

/// Rows per `INSERT`: well under the bind-parameter limits of SQLite and PostgreSQL.
const ROWS_PER_INSERT: usize = 500;

pub(super) async fn write_batch(db: &DatabaseConnection, records: &[Record]) -> Result<(), DbErr> {
    let mut interceptions = Vec::new();
    let mut token_usages = Vec::new();
    let mut prompts = Vec::new();
    let mut tool_usages = Vec::new();
    let mut thoughts = Vec::new();
    let mut ends = Vec::new();
    for record in records {
        match record {
            Record::Interception(r) => interceptions.push(
                interception::Model {
                    id: r.id.to_string(),
                    initiator_id: r.initiator_id.clone(),
                    provider: r.provider.clone(),
                    provider_name: r.provider_name.clone(),
                    api: r.api.clone(),
                    model: r.model.clone(),
                    client: r.client.clone(),
                    user_agent: r.user_agent.clone(),
                    client_session_id: r.client_session_id.clone(),
                    credential_kind: r.credential_kind.clone(),
                    credential_hint: r.credential_hint.clone(),
                    streaming: r.streaming,
                    started_at: r.started_at,
                    ended_at: None,
                    outcome: None,
                    upstream_status: None,
                    attempts: None,
                    metadata: object(&r.metadata),
                    ended_metadata: None,
                }
                .into_active_model(),
            ),
            Record::InterceptionEnded(r) => ends.push(r),
            Record::TokenUsage(r) => token_usages.push(
                token_usage::Model {
                    id: r.id.to_string(),
                    interception_id: r.interception_id.to_string(),
                    provider_response_id: r.provider_response_id.clone(),
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
                    provider_response_id: r.provider_response_id.clone(),
                    prompt: r.prompt.clone(),
                    metadata: object(&r.metadata),
                    created_at: r.created_at,
                }
                .into_active_model(),
            ),
            Record::ToolUsage(r) => tool_usages.push(
                tool_usage::Model {
                    id: r.id.to_string(),
                    interception_id: r.interception_id.to_string(),
                    provider_response_id: r.provider_response_id.clone(),
                    provider_tool_call_id: r.provider_tool_call_id.clone(),
                    server_url: r.server_url.clone(),
                    tool: r.tool.clone(),
                    input: r.input.clone(),
                    injected: r.injected,
                    invocation_error: r.invocation_error.clone(),
                    metadata: object(&r.metadata),
                    created_at: r.created_at,
                }
                .into_active_model(),
            ),
            Record::ModelThought(r) => thoughts.push(
                model_thought::Model {
                    id: r.id.to_string(),
                    interception_id: r.interception_id.to_string(),
                    content: r.content.clone(),
                    metadata: object(&r.metadata),
                    created_at: r.created_at,
                }
                .into_active_model(),
            ),
        }
    }

    let txn = db.begin().await?;
    insert_new::<interception::Entity, _>(&txn, interceptions).await?;
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
        let rest = rows.split_off(rows.len().min(ROWS_PER_INSERT));
        let chunk = std::mem::replace(&mut rows, rest);
        E::insert_many(chunk)
            .on_conflict_do_nothing()
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
        .col_expr(
            Column::Attempts,
            Expr::value(i32::try_from(end.attempts).unwrap_or(i32::MAX)),
        )
        .col_expr(Column::EndedMetadata, Expr::value(object(&end.metadata)))
        .filter(Column::Id.eq(end.id.to_string()))
        .exec(txn)
        .await?;
    Ok(())
}

fn object(map: &Map<String, Value>) -> Value {
    Value::Object(map.clone())
}
