//! Messages remember when a `scheduled` one is due (send_at, quiet hours).
use entities::message;
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0014_message_scheduled_at"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // m0001 builds tables from the entities as they stand: a new database has the column.
        if !manager.has_column("messages", "scheduled_at").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(message::Entity)
                        .add_column(
                            ColumnDef::new(message::Column::ScheduledAt)
                                .timestamp_with_time_zone()
                                .null(),
                        )
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
