//! What was done to personal data, by whom and when: client exports and erasures. Kept after
//! the data itself is gone, so it holds no personal data of its own, only ids and counts.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(indexed)]
    pub business_id: i64,
    /// `client.export` or `client.erase`.
    pub action: String,
    /// What it was done to (`client:42`).
    pub subject: String,
    /// Who did it: `platform_key:7` or `business_key:3`.
    pub actor: String,
    /// The request's id (`X-Request-Id`), to find its log lines.
    pub request_id: Option<String>,
    /// What was exported or erased, as counts.
    pub detail: Json,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
