//! A client of a business, with per-channel consent.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "clients")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub business_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i64,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub client_type: String,
    pub location_id: Option<i64>,
    pub sms_opt_in: bool,
    pub sms_opted_out_at: Option<DateTimeUtc>,
    pub sms_opt_out_reason: Option<String>,
    pub email_opt_in: bool,
    pub email_opted_out_at: Option<DateTimeUtc>,
    pub email_opt_out_reason: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
