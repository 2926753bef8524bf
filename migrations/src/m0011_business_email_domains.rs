//! The email domains a business owns (onboarding data): it may send from any address on
//! them, besides its locations' own addresses.
use entities::business;
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0011_business_email_domains"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // m0001 builds tables from the entities as they stand, so a database created after
        // this column was added already has it.
        if !manager.has_column("businesses", "email_domains").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(business::Entity)
                        .add_column(
                            ColumnDef::new(business::Column::EmailDomains)
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
