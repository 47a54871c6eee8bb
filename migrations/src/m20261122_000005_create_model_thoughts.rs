//! `aibridge_model_thoughts`: thinking blocks, reasoning summaries and commentary.
use sea_orm_migration::{prelude::*, schema::*};

use crate::{ID_LEN, interception_fk};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000005_create_model_thoughts"
    }
}

#[derive(DeriveIden)]
enum AibridgeModelThoughts {
    Table,
    Id,
    InterceptionId,
    Content,
    Metadata,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use AibridgeModelThoughts as T;
        manager
            .create_table(
                Table::create()
                    .table(T::Table)
                    .col(string_len(T::Id, ID_LEN).primary_key())
                    .col(string_len(T::InterceptionId, ID_LEN))
                    .col(text(T::Content))
                    .col(json_binary(T::Metadata))
                    .col(timestamp_with_time_zone(T::CreatedAt))
                    .foreign_key(&mut interception_fk(T::Table, T::InterceptionId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_aibridge_model_thoughts_interception")
                    .table(T::Table)
                    .col(T::InterceptionId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AibridgeModelThoughts::Table).to_owned())
            .await
    }
}
