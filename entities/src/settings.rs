//! A business's messaging settings: quiet hours (and the categories they hold back), the SMS
//! keywords that opt a number out or back in or ask for help, and the help answer. No row
//! means the defaults.
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, EntityTrait, Set, sea_query::OnConflict};

use crate::quiet::QuietHours;
use crate::types::MessageCategory;
use crate::{Result, messaging_setting as row};

/// Twilio's standard opt-out keywords.
pub const OPT_OUT_KEYWORDS: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "OPTOUT",
    "REVOKE",
];
/// Twilio's standard opt-in keywords.
pub const OPT_IN_KEYWORDS: &[&str] = &["START", "YES", "UNSTOP"];
/// Twilio's standard help keywords.
pub const HELP_KEYWORDS: &[&str] = &["HELP", "INFO"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessagingSettings {
    /// Off when None.
    pub quiet_hours: Option<QuietHours>,
    pub quiet_categories: Vec<MessageCategory>,
    /// Upper case, whole-message keywords.
    pub opt_out_keywords: Vec<String>,
    pub opt_in_keywords: Vec<String>,
    pub help_keywords: Vec<String>,
    /// The answer to a HELP text; None: the default (`help_text`).
    pub help_text: Option<String>,
}

impl Default for MessagingSettings {
    fn default() -> Self {
        MessagingSettings {
            quiet_hours: None,
            quiet_categories: vec![MessageCategory::Campaign, MessageCategory::Automated],
            opt_out_keywords: OPT_OUT_KEYWORDS.iter().map(|k| (*k).to_owned()).collect(),
            opt_in_keywords: OPT_IN_KEYWORDS.iter().map(|k| (*k).to_owned()).collect(),
            help_keywords: HELP_KEYWORDS.iter().map(|k| (*k).to_owned()).collect(),
            help_text: None,
        }
    }
}

impl MessagingSettings {
    /// Whether quiet hours hold back a message of this category.
    pub fn holds(&self, category: Option<MessageCategory>) -> Option<QuietHours> {
        let q = self.quiet_hours?;
        category
            .is_some_and(|c| self.quiet_categories.contains(&c))
            .then_some(q)
    }

    /// The answer to a HELP text from a client of `business_name`.
    pub fn help_answer(&self, business_name: &str) -> String {
        self.help_text
            .clone()
            .unwrap_or_else(|| format!("{business_name}: reply STOP to unsubscribe."))
    }
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    crate::query::json_strings(v)
}

/// The business's settings (the defaults until some are saved).
pub async fn get(db: &impl ConnectionTrait, business_id: i64) -> Result<MessagingSettings> {
    let Some(r) = row::Entity::find_by_id(business_id).one(db).await? else {
        return Ok(MessagingSettings::default());
    };
    let quiet_hours = match (&r.quiet_start, &r.quiet_end) {
        (Some(s), Some(e)) => QuietHours::parse(s, e),
        _ => None,
    };
    Ok(MessagingSettings {
        quiet_hours,
        quiet_categories: strings(&r.quiet_categories)
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect(),
        opt_out_keywords: strings(&r.opt_out_keywords),
        opt_in_keywords: strings(&r.opt_in_keywords),
        help_keywords: strings(&r.help_keywords),
        help_text: r.help_text,
    })
}

/// Replaces the business's settings.
pub async fn put(
    db: &impl ConnectionTrait,
    business_id: i64,
    s: &MessagingSettings,
    now: DateTime<Utc>,
) -> Result<()> {
    let time = crate::quiet::format_time;
    row::Entity::insert(row::ActiveModel {
        business_id: Set(business_id),
        quiet_start: Set(s.quiet_hours.map(|q| time(q.start))),
        quiet_end: Set(s.quiet_hours.map(|q| time(q.end))),
        quiet_categories: Set(serde_json::json!(
            s.quiet_categories
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
        )),
        opt_out_keywords: Set(serde_json::json!(s.opt_out_keywords)),
        opt_in_keywords: Set(serde_json::json!(s.opt_in_keywords)),
        help_keywords: Set(serde_json::json!(s.help_keywords)),
        help_text: Set(s.help_text.clone()),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(row::Column::BusinessId)
            .update_columns([
                row::Column::QuietStart,
                row::Column::QuietEnd,
                row::Column::QuietCategories,
                row::Column::OptOutKeywords,
                row::Column::OptInKeywords,
                row::Column::HelpKeywords,
                row::Column::HelpText,
                row::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// A message as a keyword is matched (as Twilio does): the whole message, any case, spaces
/// and punctuation around it ignored.
pub fn keyword_form(body: &str) -> String {
    body.trim_matches(|c: char| c.is_whitespace() || c.is_ascii_punctuation())
        .to_uppercase()
}
