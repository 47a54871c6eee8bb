//! `aibridge_tool_usages`: tool calls the model made, client tools and injected MCP tools.
use sea_orm_migration::{prelude::*, schema::*};

use crate::{ID_LEN, interception_fk};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000004_create_tool_usages"
    }
}

#[derive(DeriveIden)]
enum AibridgeToolUsages {
    Table,
    Id,
    InterceptionId,
    ProviderResponseId,
    ProviderToolCallId,
    ServerUrl,
    Tool,
    Input,
    Injected,
    InvocationError,
    Metadata,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use AibridgeToolUsages as T;
        manager
            .create_table(
                Table::create()
                    .table(T::Table)
                    .col(string_len(T::Id, ID_LEN).primary_key())
                    .col(string_len(T::InterceptionId, ID_LEN))
                    .col(string(T::ProviderResponseId))
                    .col(string_null(T::ProviderToolCallId))
                    .col(text_null(T::ServerUrl))
                    .col(string(T::Tool))
                    .col(json_binary(T::Input))
                    .col(boolean(T::Injected))
                    .col(text_null(T::InvocationError))
                    .col(json_binary(T::Metadata))
                    .col(timestamp_with_time_zone(T::CreatedAt))
                    .foreign_key(&mut interception_fk(T::Table, T::InterceptionId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_aibridge_tool_usages_interception")
                    .table(T::Table)
                    .col(T::InterceptionId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_aibridge_tool_usages_tool_created")
                    .table(T::Table)
                    .col(T::Tool)
                    .col(T::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AibridgeToolUsages::Table).to_owned())
            .await
    }
}
