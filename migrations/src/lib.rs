//! Schema migrations for Postgres and SQLite.
pub use sea_orm_migration::prelude::*;

mod m0001_foundation;
mod m0002_provider_credentials;
mod m0003_conversation_events;
mod m0004_message_search;
mod m0005_conversation_channels;
mod m0006_conversation_cells;
mod m0007_client_search;
mod m0008_drop_counts_index;
mod m0009_message_fillfactor;
mod m0010_one_number_one_business;
mod m0011_business_email_domains;
mod m0012_address_consents;
mod m0013_audit_log;
mod m0014_message_scheduled_at;
mod m0015_messaging_settings;
mod m0016_event_log;
mod m0017_webhooks;
mod m0018_job_notes;

/// Creates an entity's table and its indexes as the entity stands, unless they exist: the
/// body of a migration that adds a table.
pub(crate) async fn create_table_if_missing<E: sea_orm_migration::sea_orm::EntityTrait>(
    manager: &SchemaManager<'_>,
    entity: E,
) -> Result<(), DbErr> {
    let schema = sea_orm_migration::sea_orm::Schema::new(manager.get_database_backend());
    manager
        .create_table(
            schema
                .create_table_from_entity(entity)
                .if_not_exists()
                .to_owned(),
        )
        .await?;
    for mut index in schema.create_index_from_entity(entity) {
        manager
            .create_index(index.if_not_exists().to_owned())
            .await?;
    }
    Ok(())
}

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_foundation::Migration),
            Box::new(m0002_provider_credentials::Migration),
            Box::new(m0003_conversation_events::Migration),
            Box::new(m0004_message_search::Migration),
            Box::new(m0005_conversation_channels::Migration),
            Box::new(m0006_conversation_cells::Migration),
            Box::new(m0007_client_search::Migration),
            Box::new(m0008_drop_counts_index::Migration),
            Box::new(m0009_message_fillfactor::Migration),
            Box::new(m0010_one_number_one_business::Migration),
            Box::new(m0011_business_email_domains::Migration),
            Box::new(m0012_address_consents::Migration),
            Box::new(m0013_audit_log::Migration),
            Box::new(m0014_message_scheduled_at::Migration),
            Box::new(m0015_messaging_settings::Migration),
            Box::new(m0016_event_log::Migration),
            Box::new(m0017_webhooks::Migration),
            Box::new(m0018_job_notes::Migration),
        ]
    }
}
