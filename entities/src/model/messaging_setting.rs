//! A business's messaging rules: quiet hours, the SMS keywords it honours and its HELP answer. No row means
//! the defaults (`settings::MessagingSettings::default`).
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "messaging_settings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub business_id: i64,
    /// `HH:MM`, local time of the sending location; both or neither.
    pub quiet_start: Option<String>,
    pub quiet_end: Option<String>,
    /// The message categories quiet hours hold back (JSON list).
    pub quiet_categories: Json,
    /// Whole-message SMS keywords, upper case (JSON lists).
    pub opt_out_keywords: Json,
    pub opt_in_keywords: Json,
    pub help_keywords: Json,
    /// The answer to a HELP text; None: "<business name>: reply STOP to unsubscribe."
    pub help_text: Option<String>,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
