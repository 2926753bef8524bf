//! What happened to a conversation: assignments and status changes (who, when, from, to).
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "conversation_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(indexed)]
    pub conversation_id: i64,
    pub business_id: i64,
    /// `assigned` or `status`.
    pub kind: String,
    /// The staff member who did it, when known.
    pub actor_staff_id: Option<i64>,
    pub from_value: Option<String>,
    pub to_value: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
