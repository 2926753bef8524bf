//! One attempt to deliver an event to a webhook endpoint.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "webhook_attempts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(indexed)]
    pub webhook_id: i64,
    /// The event delivered (`webhook-id`).
    pub event_id: String,
    pub event_type: String,
    /// 1 for the first attempt of this delivery.
    pub attempt: i32,
    /// The endpoint's HTTP status; None when no answer came (timeout, connection error).
    pub status_code: Option<i32>,
    pub latency_ms: i64,
    /// Why it failed; None for a 2xx.
    pub error: Option<String>,
    #[sea_orm(indexed)]
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
