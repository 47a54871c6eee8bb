//! SQLite only: the child tables' foreign keys to `aibridge_interceptions` become
//! `DEFERRABLE INITIALLY DEFERRED`.
//!
//! An immediate foreign key makes SQLite keep a statement journal for every insert into a
//! child table (a copy of each page the statement changes, so that the one statement can be
//! undone alone), even though the recorder writes each batch in one transaction and rolls
//! the whole of it back on any failure. Checked at commit instead, an orphan row still fails
//! the batch, and nothing of it is stored; the journal is gone from every insert.
//!
//! SQLite cannot alter a constraint, so each table is rebuilt under the same name with the
//! same columns, rows and indexes (the documented twelve-step procedure, inside this
//! migration's transaction). PostgreSQL keeps immediate keys: it has no such journal.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000006_defer_child_foreign_keys_sqlite"
    }
}

/// The tables whose `interception_id` references `aibridge_interceptions(id)`.
const CHILD_TABLES: [&str; 4] = [
    "aibridge_token_usages",
    "aibridge_user_prompts",
    "aibridge_tool_usages",
    "aibridge_model_thoughts",
];

/// The foreign key's action as sea-query writes it in every child table's definition.
const ACTION: &str = "ON DELETE CASCADE";
/// What the rebuilt tables say instead.
const DEFERRED: &str = "ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// Either every table is rebuilt or none is: a failure part-way must not leave a
    /// `_rebuild` table behind or a table without its indexes.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rebuild_children(manager, ACTION, DEFERRED).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rebuild_children(manager, DEFERRED, ACTION).await
    }
}

/// On SQLite, [`rebuild`]s every child table with `from` replaced by `to`; elsewhere nothing.
async fn rebuild_children(manager: &SchemaManager<'_>, from: &str, to: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Sqlite {
        return Ok(());
    }
    for table in CHILD_TABLES {
        rebuild(manager, table, from, to).await?;
    }
    Ok(())
}

/// Rebuilds `table` with its stored definition's foreign key clause `from` replaced by `to`:
/// a new table, the rows copied in column order, the old table dropped, the new one
/// renamed, the old indexes created again from their stored definitions.
async fn rebuild(
    manager: &SchemaManager<'_>,
    table: &str,
    from: &str,
    to: &str,
) -> Result<(), DbErr> {
    let db = manager.get_connection();
    let definition = stored_sql(manager, "table", table).await?;
    let [table_sql] = definition.as_slice() else {
        return Err(DbErr::Migration(format!("{table}: no such table")));
    };
    // `to` contains `from` on the way up: only a definition without the deferral qualifies.
    if table_sql.matches(from).count() != 1 || (to.contains(from) && table_sql.contains(to)) {
        return Err(DbErr::Migration(format!(
            "{table}: its definition does not hold exactly one `{from}` foreign key to change"
        )));
    }
    let quoted = format!("\"{table}\"");
    let rebuilt = format!("{table}_rebuild");
    let Some(rest) = table_sql.strip_prefix(&format!("CREATE TABLE {quoted}")) else {
        return Err(DbErr::Migration(format!(
            "{table}: unexpected definition, not created by these migrations"
        )));
    };
    let new_sql = format!("CREATE TABLE \"{rebuilt}\"{}", rest.replacen(from, to, 1));
    let indexes = stored_sql(manager, "index", table).await?;

    db.execute_unprepared(&new_sql).await?;
    db.execute_unprepared(&format!("INSERT INTO \"{rebuilt}\" SELECT * FROM {quoted}"))
        .await?;
    db.execute_unprepared(&format!("DROP TABLE {quoted}"))
        .await?;
    db.execute_unprepared(&format!("ALTER TABLE \"{rebuilt}\" RENAME TO {quoted}"))
        .await?;
    for index in &indexes {
        db.execute_unprepared(index).await?;
    }
    Ok(())
}

/// The stored `CREATE` statements of `kind` (`table` or `index`) belonging to `table`, in
/// the order they were made; automatic indexes (the primary key's) have none and are made
/// again with the table.
async fn stored_sql(
    manager: &SchemaManager<'_>,
    kind: &str,
    table: &str,
) -> Result<Vec<String>, DbErr> {
    let rows = manager
        .get_connection()
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "SELECT sql FROM sqlite_master WHERE type = ? AND tbl_name = ? AND sql IS NOT NULL \
             ORDER BY rowid",
            [kind.into(), table.into()],
        ))
        .await?;
    rows.iter()
        .map(|row| row.try_get::<String>("", "sql"))
        .collect()
}
