//! Every message of every channel and direction, notes too.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique_key = "message_caller_id")]
    pub business_id: i64,
    pub conversation_id: i64,
    pub client_id: i64,
    pub location_id: Option<i64>,
    #[sea_orm(unique_key = "message_caller_id")]
    pub channel: String,
    pub direction: String,
    pub category: Option<String>,
    pub notification_type: Option<String>,
    pub sender_type: String,
    pub sent_by: Option<i64>,
    pub staff_id: Option<i64>,
    #[sea_orm(unique_key = "message_provider_id")]
    pub provider: Option<String>,
    #[sea_orm(unique_key = "message_provider_id")]
    pub provider_message_id: Option<String>,
    /// The caller's own id for the message (`message_id` in requests).
    #[sea_orm(unique_key = "message_caller_id")]
    pub external_id: Option<i64>,
    #[sea_orm(unique_key = "message_request_slot")]
    pub request_id: Option<String>,
    /// Position of the message in its request: with request_id, makes a re-run of a job record nothing twice.
    #[sea_orm(unique_key = "message_request_slot")]
    pub request_index: Option<i32>,
    pub subject: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub body: String,
    pub from_addr: Option<String>,
    pub to_addr: Option<String>,
    pub cc: Json,
    pub bcc: Json,
    pub attachments: Json,
    pub status: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub is_read: bool,
    pub metadata: Json,
    /// When a `scheduled` message is due to be sent.
    pub scheduled_at: Option<DateTimeUtc>,
    pub sent_at: Option<DateTimeUtc>,
    pub delivered_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
