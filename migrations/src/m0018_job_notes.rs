//! Notes a job leaves outside the queue's deliveries (the SQL queue's counterpart of the
//! Redis queue's note keys): a provider's acceptance of a message, written the moment it is
//! known, so a re-delivery after a crash does not send the message again before the batch
//! recording it committed (`jobs::JobQueue::note`).
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0018_job_notes"
    }
}

#[derive(DeriveIden)]
enum OmegaJobNotes {
    Table,
    Key,
    Value,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OmegaJobNotes::Table)
                    .col(
                        ColumnDef::new(OmegaJobNotes::Key)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(OmegaJobNotes::Value).text().not_null())
                    // Milliseconds since the epoch, like the queue's other times.
                    .col(
                        ColumnDef::new(OmegaJobNotes::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }
}
