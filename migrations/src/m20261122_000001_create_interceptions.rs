//! `aibridge_interceptions`: one row per bridged client request.
use sea_orm_migration::{prelude::*, schema::*};

use crate::ID_LEN;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000001_create_interceptions"
    }
}

#[derive(DeriveIden)]
enum AibridgeInterceptions {
    Table,
    Id,
    InitiatorId,
    Provider,
    ProviderName,
    Api,
    Model,
    Client,
    UserAgent,
    ClientSessionId,
    CredentialKind,
    CredentialHint,
    Streaming,
    StartedAt,
    EndedAt,
    Outcome,
    UpstreamStatus,
    Attempts,
    Metadata,
    EndedMetadata,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use AibridgeInterceptions as T;
        manager
            .create_table(
                Table::create()
                    .table(T::Table)
                    .col(string_len(T::Id, ID_LEN).primary_key())
                    .col(string(T::InitiatorId))
                    .col(string(T::Provider))
                    .col(string(T::ProviderName))
                    .col(string(T::Api))
                    .col(string(T::Model))
                    .col(string(T::Client))
                    .col(text_null(T::UserAgent))
                    .col(string_null(T::ClientSessionId))
                    .col(string(T::CredentialKind))
                    .col(string_null(T::CredentialHint))
                    .col(boolean(T::Streaming))
                    .col(timestamp_with_time_zone(T::StartedAt))
                    .col(timestamp_with_time_zone_null(T::EndedAt))
                    .col(string_null(T::Outcome))
                    .col(integer_null(T::UpstreamStatus))
                    .col(integer_null(T::Attempts))
                    .col(json_binary(T::Metadata))
                    .col(json_binary_null(T::EndedMetadata))
                    .to_owned(),
            )
            .await?;
        // Newest-first listings and keyset pagination walk (started_at, id).
        for (name, cols) in [
            (
                "idx_aibridge_interceptions_started_at",
                vec![T::StartedAt, T::Id],
            ),
            (
                "idx_aibridge_interceptions_initiator_started",
                vec![T::InitiatorId, T::StartedAt],
            ),
            (
                "idx_aibridge_interceptions_model_started",
                vec![T::Model, T::StartedAt],
            ),
            (
                "idx_aibridge_interceptions_provider_started",
                vec![T::ProviderName, T::StartedAt],
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(T::Table);
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AibridgeInterceptions::Table).to_owned())
            .await
    }
}
