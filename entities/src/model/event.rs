//! One entry of a business's event log (`crate::event_log` says how entries are ordered).
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "events")]
pub struct Model {
    /// Insert order, across businesses.
    #[sea_orm(primary_key)]
    pub seq: i64,
    pub business_id: i64,
    /// The writing transaction's id on Postgres (the column's default); 0 on SQLite.
    #[sea_orm(default_value = 0)]
    pub txid: i64,
    /// `message.received`, `message.status_updated`, …
    pub event_type: String,
    pub data: Json,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
