//! `aibridge_token_usages`: token counts of each upstream response.
use sea_orm_migration::{prelude::*, schema::*};

use crate::{ID_LEN, interception_fk};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000002_create_token_usages"
    }
}

#[derive(DeriveIden)]
enum AibridgeTokenUsages {
    Table,
    Id,
    InterceptionId,
    ProviderResponseId,
    InputTokens,
    OutputTokens,
    CacheReadInputTokens,
    CacheWriteInputTokens,
    Metadata,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use AibridgeTokenUsages as T;
        manager
            .create_table(
                Table::create()
                    .table(T::Table)
                    .col(string_len(T::Id, ID_LEN).primary_key())
                    .col(string_len(T::InterceptionId, ID_LEN))
                    .col(string(T::ProviderResponseId))
                    .col(big_integer(T::InputTokens))
                    .col(big_integer(T::OutputTokens))
                    .col(big_integer(T::CacheReadInputTokens))
                    .col(big_integer(T::CacheWriteInputTokens))
                    .col(json_binary(T::Metadata))
                    .col(timestamp_with_time_zone(T::CreatedAt))
                    .foreign_key(&mut interception_fk(T::Table, T::InterceptionId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_aibridge_token_usages_interception")
                    .table(T::Table)
                    .col(T::InterceptionId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_aibridge_token_usages_created_at")
                    .table(T::Table)
                    .col(T::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AibridgeTokenUsages::Table).to_owned())
            .await
    }
}
