//! Client search (`q` on the client and conversation lists matches names, email and phone
//! anywhere in them, case-insensitive) served by trigram indexes on Postgres, so a business
//! with 50,000 clients is not scanned per keystroke. SQLite (the embedded deployment, small
//! businesses) scans. Without the pg_trgm extension available the indexes are left out and
//! the queries still work, by scanning.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0007_client_search"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        let available = db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'",
            ))
            .await?
            .is_some();
        if !available {
            return Ok(());
        }
        db.execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            .await?;
        // The list queries match `LOWER(column) LIKE '%q%'`: one index per column.
        for column in ["first_name", "last_name", "email", "phone"] {
            db.execute_unprepared(&format!(
                "CREATE INDEX IF NOT EXISTS idx_clients_{column}_trgm ON clients \
                 USING GIN (lower({column}) gin_trgm_ops)"
            ))
            .await?;
        }
        Ok(())
    }
}
