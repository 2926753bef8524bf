//! Inbound webhook deliveries, kept to drop provider retries and to show orphans.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "webhook_receipts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique_key = "receipt_identity")]
    pub provider: String,
    #[sea_orm(unique_key = "receipt_identity")]
    pub dedupe_key: String,
    pub business_id: Option<i64>,
    pub orphan: bool,
    pub payload: Json,
    pub received_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
