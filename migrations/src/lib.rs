//! Schema migrations for the aibridge audit database.
//!
//! One change per file, each with `up` and `down`; the same migrations run on SQLite and
//! PostgreSQL. Ids are UUIDv7 stored as text (36 characters) so that the same SQL works on
//! both backends and ids sort by time; timestamps are UTC (`timestamptz` on PostgreSQL,
//! RFC 3339 text on SQLite); JSON columns are `jsonb` on PostgreSQL and text on SQLite.
pub use sea_orm_migration::prelude::*;

mod m20261122_000001_create_interceptions;
mod m20261122_000002_create_token_usages;
mod m20261122_000003_create_user_prompts;
mod m20261122_000004_create_tool_usages;
mod m20261122_000005_create_model_thoughts;
mod m20261201_000006_defer_child_foreign_keys_sqlite;
mod m20261202_000007_drop_unused_provider_index;

/// The ordered list of migrations.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    /// Our own bookkeeping table, so the schema can live in a database shared with other apps.
    fn migration_table_name() -> DynIden {
        "aibridge_schema_migrations".into_iden()
    }

    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_interceptions::Migration),
            Box::new(m20261122_000002_create_token_usages::Migration),
            Box::new(m20261122_000003_create_user_prompts::Migration),
            Box::new(m20261122_000004_create_tool_usages::Migration),
            Box::new(m20261122_000005_create_model_thoughts::Migration),
            Box::new(m20261201_000006_defer_child_foreign_keys_sqlite::Migration),
            Box::new(m20261202_000007_drop_unused_provider_index::Migration),
        ]
    }
}

/// The length of a UUID in its hyphenated text form, the width of every id column.
const ID_LEN: u32 = 36;

/// The interceptions table's name and id column, which every other table references.
#[derive(DeriveIden)]
enum AibridgeInterceptions {
    Table,
    Id,
}

/// A column `interception_id` referencing `aibridge_interceptions(id)`, deleted with it.
fn interception_fk(table: impl IntoIden, column: impl IntoIden) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, column)
        .to(AibridgeInterceptions::Table, AibridgeInterceptions::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}
