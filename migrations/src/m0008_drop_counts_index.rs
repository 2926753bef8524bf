//! The covering index an earlier version of m0005 made for grouping conversations into filter
//! counts is unused since the counts come from `conversation_cells` (m0006), and every
//! conversation update (one per message) paid for it.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0008_drop_counts_index"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS idx_conversations_counts")
            .await?;
        Ok(())
    }
}
