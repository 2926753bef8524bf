//! A business's messaging settings: quiet hours, the SMS keywords it honours and its HELP
//! answer. API keys only (the platform's, or the business's own).
use std::sync::Arc;

use chrono::Utc;
use entities::quiet::QuietHours;
use entities::settings::{self, MessagingSettings, keyword_form};
use entities::types::MessageCategory;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde::Deserialize;

use super::ApiTags;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;
use crate::validate::{Checker, ValidJson, Validate};

/// A daily quiet period in the sending location's local time (its `timezone`, else the
/// business's); it spans midnight when `start` is later than `end`.
#[derive(Debug, Clone, Object, Deserialize)]
pub struct QuietPeriod {
    /// `HH:MM`.
    pub start: String,
    /// `HH:MM`, not equal to `start`.
    pub end: String,
}

fn default_categories() -> Vec<MessageCategory> {
    MessagingSettings::default().quiet_categories
}

fn default_opt_out() -> Vec<String> {
    MessagingSettings::default().opt_out_keywords
}

fn default_opt_in() -> Vec<String> {
    MessagingSettings::default().opt_in_keywords
}

fn default_help() -> Vec<String> {
    MessagingSettings::default().help_keywords
}

/// Quiet hours hold back messages of `quiet_hours_categories` sent inside them: each is
/// recorded `scheduled` for the period's end. Keywords are matched against a whole inbound
/// text, any case, spaces and punctuation around it ignored. A field left out takes its
/// default.
#[derive(Debug, Object, Deserialize)]
pub struct MessagingSettingsBody {
    /// Off when null (the default).
    #[serde(default)]
    #[oai(nullable)]
    pub quiet_hours: Option<QuietPeriod>,
    #[serde(default = "default_categories")]
    #[oai(default = "default_categories")]
    pub quiet_hours_categories: Vec<MessageCategory>,
    #[serde(default = "default_opt_out")]
    #[oai(default = "default_opt_out")]
    pub opt_out_keywords: Vec<String>,
    #[serde(default = "default_opt_in")]
    #[oai(default = "default_opt_in")]
    pub opt_in_keywords: Vec<String>,
    /// A text that is one of these is answered with `help_text` (once per number a day).
    #[serde(default = "default_help")]
    #[oai(default = "default_help")]
    pub help_keywords: Vec<String>,
    /// 1 to 320 characters; null: "<business name>: reply STOP to unsubscribe."
    #[serde(default)]
    #[oai(nullable)]
    pub help_text: Option<String>,
}

const MAX_KEYWORDS: usize = 50;
const MAX_KEYWORD_CHARS: usize = 40;
/// Two SMS segments.
const MAX_HELP_CHARS: usize = 320;

impl Validate for MessagingSettingsBody {
    fn validate(&mut self, c: &mut Checker) {
        if let Some(q) = &self.quiet_hours {
            c.at("quiet_hours", |c| {
                for (field, v) in [("start", &q.start), ("end", &q.end)] {
                    if entities::quiet::parse_time(v).is_none() {
                        c.fail(field, "a time as HH:MM", "value_error.time");
                    }
                }
                if q.start == q.end {
                    c.fail(
                        "end",
                        "the period is empty: end equals start",
                        "value_error",
                    );
                }
            });
        }
        if let Some(text) = &self.help_text {
            c.length("help_text", text.trim(), 1, MAX_HELP_CHARS);
        }
        let mut seen = std::collections::HashSet::new();
        for (field, list) in [
            ("opt_out_keywords", &mut self.opt_out_keywords),
            ("opt_in_keywords", &mut self.opt_in_keywords),
            ("help_keywords", &mut self.help_keywords),
        ] {
            c.count(field, list.len(), 1, MAX_KEYWORDS);
            c.at(field, |c| {
                for (i, k) in list.iter_mut().enumerate() {
                    *k = keyword_form(k);
                    if k.is_empty() || k.chars().count() > MAX_KEYWORD_CHARS {
                        c.fail(
                            &i.to_string(),
                            format!("a keyword of 1 to {MAX_KEYWORD_CHARS} characters"),
                            "value_error",
                        );
                    } else if !seen.insert(k.clone()) {
                        c.fail(&i.to_string(), "listed twice", "value_error.duplicate");
                    }
                }
            });
        }
    }
}

impl MessagingSettingsBody {
    fn from_settings(s: MessagingSettings) -> Self {
        let time = entities::quiet::format_time;
        MessagingSettingsBody {
            quiet_hours: s.quiet_hours.map(|q| QuietPeriod {
                start: time(q.start),
                end: time(q.end),
            }),
            quiet_hours_categories: s.quiet_categories,
            opt_out_keywords: s.opt_out_keywords,
            opt_in_keywords: s.opt_in_keywords,
            help_keywords: s.help_keywords,
            help_text: s.help_text,
        }
    }

    /// Validated: the times parse.
    fn into_settings(self) -> MessagingSettings {
        let mut categories = self.quiet_hours_categories;
        let mut seen = std::collections::HashSet::new();
        categories.retain(|c| seen.insert(*c));
        MessagingSettings {
            quiet_hours: self
                .quiet_hours
                .and_then(|q| QuietHours::parse(&q.start, &q.end)),
            quiet_categories: categories,
            opt_out_keywords: self.opt_out_keywords,
            opt_in_keywords: self.opt_in_keywords,
            help_keywords: self.help_keywords,
            help_text: self.help_text.map(|t| t.trim().to_owned()),
        }
    }
}

pub struct SettingsApi {
    pub state: Arc<AppState>,
}

impl SettingsApi {
    async fn admit(&self, auth: &Auth, business_id: i64) -> Result<(), ApiError> {
        auth.principal().can_write(business_id)?;
        self.state.require_business_exists(business_id).await
    }
}

#[OpenApi]
impl SettingsApi {
    /// Messaging settings
    ///
    /// Quiet hours and SMS keywords (the defaults until some are saved).
    #[oai(
        path = "/businesses/:business_id/settings/messaging",
        method = "get",
        tag = "ApiTags::Businesses"
    )]
    async fn get(
        &self,
        auth: Auth,
        business_id: Path<i64>,
    ) -> Result<Json<MessagingSettingsBody>, ApiError> {
        self.admit(&auth, business_id.0).await?;
        let s = settings::get(&self.state.db, business_id.0).await?;
        Ok(Json(MessagingSettingsBody::from_settings(s)))
    }

    /// Replace the messaging settings
    ///
    /// Applies to sends within seconds (workers cache them briefly) and to inbound keywords at
    /// once. Answers the settings as saved.
    #[oai(
        path = "/businesses/:business_id/settings/messaging",
        method = "put",
        tag = "ApiTags::Businesses"
    )]
    async fn put(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        body: ValidJson<MessagingSettingsBody>,
    ) -> Result<Json<MessagingSettingsBody>, ApiError> {
        self.admit(&auth, business_id.0).await?;
        let wanted = body.value.into_settings();
        settings::put(&self.state.db, business_id.0, &wanted, Utc::now()).await?;
        Ok(Json(MessagingSettingsBody::from_settings(wanted)))
    }
}
