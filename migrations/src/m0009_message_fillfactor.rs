//! Room on each page of `messages` (Postgres) for the status updates every message gets
//! after it is recorded: a new row version that changes no indexed column and fits on the
//! same page is a HOT update, which writes no index entries (the table has eight indexes,
//! one of them the full-text GIN index). Applies to pages written from now on.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0009_message_fillfactor"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("ALTER TABLE messages SET (fillfactor = 75)")
                .await?;
        }
        Ok(())
    }
}
