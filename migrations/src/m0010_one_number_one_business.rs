//! A phone number belongs to one location of one business: inbound SMS and calls are routed
//! by the number they were sent to, so two rows with one number would send a client's reply
//! to whichever the database returned first. A partial unique index (numbers are optional)
//! guarantees it under concurrent onboardings.
//!
//! Rows that already share a number keep it on the first (lowest business id, then location
//! id) and lose it on the others; onboarding those locations again reports the conflict.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0010_one_number_one_business"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "UPDATE locations SET phone_number = NULL
             WHERE phone_number IS NOT NULL AND EXISTS (
                 SELECT 1 FROM locations o
                 WHERE o.phone_number = locations.phone_number
                   AND (o.business_id < locations.business_id
                        OR (o.business_id = locations.business_id AND o.id < locations.id)))",
        )
        .await?;
        db.execute_unprepared(
            "CREATE UNIQUE INDEX locations_phone_number_key ON locations (phone_number)
             WHERE phone_number IS NOT NULL",
        )
        .await?;
        Ok(())
    }
}
