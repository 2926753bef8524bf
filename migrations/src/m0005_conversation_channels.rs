//! Conversations remember which channels their messages used (a bit set), so the channel
//! filter and the filter counts read conversations only.
use entities::conversation;
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0005_conversation_channels"
    }
}

/// Sets the bits from the messages already recorded (bits as in `types::Channel::bit`).
const BACKFILL: &str = "UPDATE conversations SET channels = \
    (CASE WHEN EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = conversations.id AND m.channel = 'sms') THEN 1 ELSE 0 END) + \
    (CASE WHEN EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = conversations.id AND m.channel = 'email') THEN 2 ELSE 0 END) + \
    (CASE WHEN EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = conversations.id AND m.channel = 'voice') THEN 4 ELSE 0 END) + \
    (CASE WHEN EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = conversations.id AND m.channel = 'note') THEN 8 ELSE 0 END)";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // m0001 builds tables from the entities as they stand: a new database has the column.
        if !manager.has_column("conversations", "channels").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(conversation::Entity)
                        .add_column(
                            ColumnDef::new(conversation::Column::Channels)
                                .integer()
                                .not_null()
                                .default(0),
                        )
                        .to_owned(),
                )
                .await?;
            manager
                .get_connection()
                .execute_unprepared(BACKFILL)
                .await?;
        }
        Ok(())
    }
}
