//! Append-only status history of a message.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "message_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(indexed)]
    pub message_id: i64,
    pub status: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// Who reported it: record, api, provider, worker.
    pub source: String,
    /// Set when the same report may arrive twice (provider callbacks); unique.
    #[sea_orm(unique)]
    pub dedupe_key: Option<String>,
    pub occurred_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
