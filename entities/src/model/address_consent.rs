//! Consent per address: whether a phone number or email address said no to a business on a
//! channel. Carriers and the TCPA hold the number to its STOP, not the client row it came
//! through, so every send checks this besides the client's own consent.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "address_consents")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub business_id: i64,
    /// `sms` (voice follows it: one number, one consent) or `email`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub channel: String,
    /// E.164, or a lower-case email address.
    #[sea_orm(primary_key, auto_increment = false)]
    pub address: String,
    pub opted_out: bool,
    /// Why it changed last (`replied STOP`, `bounce`, …).
    pub reason: Option<String>,
    /// When the current state began (a repeated opt-out keeps the first one's time).
    pub changed_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
