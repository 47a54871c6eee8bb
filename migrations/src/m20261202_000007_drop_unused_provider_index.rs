//! Drops `idx_aibridge_interceptions_provider_started`.
//!
//! No query uses it: a provider filter matches the configured name or the kind
//! (`provider_name = ? OR provider = ?`), which one index on `provider_name` cannot serve, so
//! both backends answer it from the `started_at` index within the time window, and grouping
//! by provider reads the rows it sums anyway. Every interception still paid for it: one more
//! B-tree insert per row, about 1 µs of the SQLite writer's time per blocking request
//! (docs/performance.md, rounds 7 and 11).
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000007_drop_unused_provider_index"
    }
}

const NAME: &str = "idx_aibridge_interceptions_provider_started";

#[derive(DeriveIden)]
enum AibridgeInterceptions {
    Table,
    ProviderName,
    StartedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(NAME)
                    .table(AibridgeInterceptions::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(NAME)
                    .table(AibridgeInterceptions::Table)
                    .col(AibridgeInterceptions::ProviderName)
                    .col(AibridgeInterceptions::StartedAt)
                    .to_owned(),
            )
            .await
    }
}
