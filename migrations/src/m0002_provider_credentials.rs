//! Per-business provider credentials (sealed), and row-level onboarding errors.
use entities::{onboarding_run, provider_credential};
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::Schema;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0002_provider_credentials"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let schema = Schema::new(manager.get_database_backend());
        manager
            .create_table(
                schema
                    .create_table_from_entity(provider_credential::Entity)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // m0001 builds tables from the entities as they stand, so a database created after
        // this column was added already has it.
        if !manager.has_column("onboarding_runs", "row_errors").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(onboarding_run::Entity)
                        .add_column(
                            ColumnDef::new(onboarding_run::Column::RowErrors)
                                .json()
                                .not_null()
                                .default("[]"),
                        )
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
