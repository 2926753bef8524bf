//! One conversation per business, location and client. location_key is the location id, or 0 when the messages name no location, so that the unique key also holds then.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "conversations")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique_key = "conversation_identity")]
    pub business_id: i64,
    #[sea_orm(unique_key = "conversation_identity")]
    pub location_key: i64,
    #[sea_orm(unique_key = "conversation_identity")]
    pub client_id: i64,
    pub status: String,
    pub assigned_staff_id: Option<i64>,
    pub unread_count: i32,
    pub last_message_id: Option<i64>,
    pub last_activity_at: DateTimeUtc,
    pub snoozed_until: Option<DateTimeUtc>,
    /// The channels its messages used, as bits (`types::Channel::bit`): filters and their
    /// counts read this instead of the messages.
    #[sea_orm(default_value = 0)]
    pub channels: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
