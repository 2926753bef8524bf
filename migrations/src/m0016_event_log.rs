//! The event log (`entities::event_log`): one row per event, ordered per business by the
//! writing transaction's id (Postgres: the column's default) and insert order.
use entities::event;
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0016_event_log"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::create_table_if_missing(manager, event::Entity).await?;
        let db = manager.get_connection();
        if manager.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(
                "ALTER TABLE events ALTER COLUMN txid SET DEFAULT (pg_current_xact_id()::text::bigint)",
            )
            .await?;
        }
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS events_in_order ON events (business_id, txid, seq)",
        )
        .await?;
        db.execute_unprepared("CREATE INDEX IF NOT EXISTS events_by_age ON events (created_at)")
            .await?;
        Ok(())
    }
}
