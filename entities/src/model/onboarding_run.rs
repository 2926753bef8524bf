//! One onboarding request and how it went.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "onboarding_runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub request_id: String,
    #[sea_orm(indexed)]
    pub business_id: i64,
    pub status: String,
    pub locations: i32,
    pub staff: i32,
    pub clients: i32,
    pub error: Option<String>,
    /// Rows that were not imported: `[{section, index, id, reason}]`.
    pub row_errors: Json,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
