//! Webhook endpoints, their delivery attempts, and the relay's place in the event log
//! (which it reads across businesses, hence the index in log order).
use entities::{relay_position, webhook, webhook_attempt};
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0017_webhooks"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::create_table_if_missing(manager, webhook::Entity).await?;
        crate::create_table_if_missing(manager, webhook_attempt::Entity).await?;
        crate::create_table_if_missing(manager, relay_position::Entity).await?;
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS events_in_log_order ON events (txid, seq)",
        )
        .await?;
        // The relay starts at the log's current end: events from before webhooks existed
        // were never promised to anyone. (`WHERE true`: SQLite's parser needs it before an
        // upsert clause.)
        db.execute_unprepared(
            "INSERT INTO relay_position (id, after_txid, after_seq) \
             SELECT 1, COALESCE(MAX(txid), 0), COALESCE(MAX(seq), 0) FROM events WHERE true \
             ON CONFLICT (id) DO NOTHING",
        )
        .await?;
        Ok(())
    }
}
