//! Messaging settings per business: quiet hours and SMS keywords.
use entities::messaging_setting;
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0015_messaging_settings"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::create_table_if_missing(manager, messaging_setting::Entity).await
    }
}
