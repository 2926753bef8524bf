//! The foundation schema: tenants, people, conversations, messages, keys, and the embedded
//! job queue's tables. Tables are created from the entities as they stand at this migration;
//! later changes get migrations of their own.
use entities::*;
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{EntityTrait, Schema};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0001_foundation"
    }
}

async fn create<E: EntityTrait>(
    manager: &SchemaManager<'_>,
    schema: &Schema,
    entity: E,
) -> Result<(), DbErr> {
    manager
        .create_table(schema.create_table_from_entity(entity))
        .await?;
    for index in schema.create_index_from_entity(entity) {
        manager.create_index(index).await?;
    }
    Ok(())
}

#[derive(DeriveIden)]
enum OmegaJobs {
    Table,
    Id,
    JobType,
    Payload,
    RequestId,
    BusinessId,
    State,
    Attempts,
    RunAt,
    LockedBy,
    LockedUntil,
    LastError,
    CreatedAt,
    FirstFailedAt,
    LastFailedAt,
}

#[derive(DeriveIden)]
enum OmegaJobCounters {
    Table,
    JobType,
    Done,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let schema = Schema::new(manager.get_database_backend());
        create(manager, &schema, business::Entity).await?;
        create(manager, &schema, location::Entity).await?;
        create(manager, &schema, staff::Entity).await?;
        create(manager, &schema, staff_location::Entity).await?;
        create(manager, &schema, client::Entity).await?;
        create(manager, &schema, conversation::Entity).await?;
        create(manager, &schema, message::Entity).await?;
        create(manager, &schema, message_event::Entity).await?;
        create(manager, &schema, api_key::Entity).await?;
        create(manager, &schema, session::Entity).await?;
        create(manager, &schema, idempotency_record::Entity).await?;
        create(manager, &schema, webhook_receipt::Entity).await?;
        create(manager, &schema, onboarding_run::Entity).await?;

        // Inbox indexes: the conversation list (newest activity first), a client's messages,
        // a conversation's timeline, and clients by phone and email.
        let indexes = [
            Index::create()
                .name("idx_conversations_activity")
                .table(conversation::Entity)
                .col(conversation::Column::BusinessId)
                .col(conversation::Column::LastActivityAt)
                .col(conversation::Column::Id)
                .to_owned(),
            Index::create()
                .name("idx_conversations_client")
                .table(conversation::Entity)
                .col(conversation::Column::BusinessId)
                .col(conversation::Column::ClientId)
                .to_owned(),
            Index::create()
                .name("idx_messages_conversation")
                .table(message::Entity)
                .col(message::Column::ConversationId)
                .col(message::Column::CreatedAt)
                .col(message::Column::Id)
                .to_owned(),
            Index::create()
                .name("idx_messages_client")
                .table(message::Entity)
                .col(message::Column::BusinessId)
                .col(message::Column::ClientId)
                .to_owned(),
            Index::create()
                .name("idx_clients_phone")
                .table(client::Entity)
                .col(client::Column::BusinessId)
                .col(client::Column::Phone)
                .to_owned(),
            Index::create()
                .name("idx_clients_email")
                .table(client::Entity)
                .col(client::Column::BusinessId)
                .col(client::Column::Email)
                .to_owned(),
        ];
        for index in indexes {
            manager.create_index(index).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(OmegaJobs::Table)
                    .col(
                        ColumnDef::new(OmegaJobs::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(OmegaJobs::JobType).string().not_null())
                    .col(ColumnDef::new(OmegaJobs::Payload).text().not_null())
                    .col(ColumnDef::new(OmegaJobs::RequestId).string())
                    .col(ColumnDef::new(OmegaJobs::BusinessId).big_integer())
                    .col(ColumnDef::new(OmegaJobs::State).string().not_null())
                    .col(
                        ColumnDef::new(OmegaJobs::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(OmegaJobs::RunAt).big_integer().not_null())
                    .col(ColumnDef::new(OmegaJobs::LockedBy).string())
                    .col(ColumnDef::new(OmegaJobs::LockedUntil).big_integer())
                    .col(ColumnDef::new(OmegaJobs::LastError).text())
                    .col(
                        ColumnDef::new(OmegaJobs::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(OmegaJobs::FirstFailedAt).big_integer())
                    .col(ColumnDef::new(OmegaJobs::LastFailedAt).big_integer())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_omega_jobs_due")
                    .table(OmegaJobs::Table)
                    .col(OmegaJobs::JobType)
                    .col(OmegaJobs::State)
                    .col(OmegaJobs::RunAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OmegaJobCounters::Table)
                    .col(
                        ColumnDef::new(OmegaJobCounters::JobType)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(OmegaJobCounters::Done)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
