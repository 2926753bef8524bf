//! An endpoint that receives events as signed POSTs (`crate::webhooks`).
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "webhooks")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The business whose events it receives; None for a platform-wide endpoint, which
    /// receives every business's.
    #[sea_orm(indexed)]
    pub business_id: Option<i64>,
    pub url: String,
    /// The event types it receives (a JSON list); None for all.
    pub event_types: Option<Json>,
    pub description: Option<String>,
    /// The signing secret (`whsec_…`), sealed like provider credentials.
    pub secret: String,
    pub created_at: DateTimeUtc,
    /// Since when every attempt has failed; None while the last one succeeded.
    pub failing_since: Option<DateTimeUtc>,
    /// Set when it kept failing for too long; a disabled endpoint gets no deliveries.
    pub disabled_at: Option<DateTimeUtc>,
    pub disabled_reason: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
