//! Consent per (business, channel, address), kept besides each client's own: a STOP from a
//! number holds for every client row with that number.
use entities::address_consent;
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::Schema;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0012_address_consents"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let schema = Schema::new(manager.get_database_backend());
        manager
            .create_table(
                schema
                    .create_table_from_entity(address_consent::Entity)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}
