//! `GET /businesses/{business_id}/events`: the business's event log, in pages, for clients
//! that cannot hold a stream. Resuming from the last id read misses nothing
//! ([`entities::event_log`] says why).
use std::sync::Arc;

use chrono::{DateTime, Utc};
use entities::event_log::{self, Event, EventId, EventType};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::ApiTags;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;

/// Events a page holds unless `limit` says otherwise.
const DEFAULT_LIMIT: u64 = 100;

/// Something that happened in a business.
#[derive(Debug, Object)]
pub struct BusinessEvent {
    /// Sorts in log order; give it as `after` (or `Last-Event-ID`) to resume after it.
    pub id: String,
    /// `message.received`, `message.status_updated`, `conversation.assigned`,
    /// `conversation.status_updated`, `conversation.note_added`, `client.consent_updated`,
    /// `call.status_updated`.
    #[oai(rename = "type")]
    pub event_type: String,
    pub business_id: i64,
    pub created_at: DateTime<Utc>,
    /// What happened: for message events the `MessageItem` (and `previous_status`).
    pub data: serde_json::Value,
}

impl From<Event> for BusinessEvent {
    fn from(e: Event) -> Self {
        BusinessEvent {
            id: e.id.to_string(),
            event_type: e.event_type,
            business_id: e.business_id,
            created_at: e.created_at,
            data: e.data,
        }
    }
}

#[derive(Debug, Object)]
pub struct BusinessEventPage {
    pub events: Vec<BusinessEvent>,
    /// The id to ask for the next page with (`after`): the last event's, or the `after`
    /// given when there is nothing new.
    #[oai(nullable)]
    pub next_after: Option<String>,
}

pub struct EventsApi {
    pub state: Arc<AppState>,
}

#[OpenApi]
impl EventsApi {
    /// List a business's events
    ///
    /// Oldest first, after `after` (an event id; from the start of the kept log without
    /// it), of the given `types` (comma-separated; all without). Events are kept
    /// `OMEGA_RETENTION_EVENTS_HOURS` (168 by default). API keys of the business, the platform
    /// key, or a staff session of the business.
    #[oai(
        path = "/businesses/:business_id/events",
        method = "get",
        tag = "ApiTags::Businesses"
    )]
    async fn list(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        after: Query<Option<String>>,
        types: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))] limit: Query<Option<u64>>,
    ) -> Result<Json<BusinessEventPage>, ApiError> {
        auth.principal().can_read(business_id.0)?;
        self.state.require_business_exists(business_id.0).await?;
        let after = match after.0.as_deref() {
            Some(a) => Some(a.parse::<EventId>().map_err(|_| {
                ApiError::invalid_at(
                    &["query", "after"],
                    "not an event id (evt_ and 32 hex digits)",
                    "value_error",
                )
            })?),
            None => None,
        };
        let types = parse_types(types.0.as_deref())?;
        let events = event_log::page(
            &self.state.db,
            business_id.0,
            after,
            &types,
            limit.0.unwrap_or(DEFAULT_LIMIT),
        )
        .await?;
        let next_after = events
            .last()
            .map(|e| e.id)
            .or(after)
            .map(|id| id.to_string());
        Ok(Json(BusinessEventPage {
            events: events.into_iter().map(BusinessEvent::from).collect(),
            next_after,
        }))
    }
}

/// `types=a,b`: each a known event type.
pub fn parse_types(types: Option<&str>) -> Result<Vec<EventType>, ApiError> {
    let Some(types) = types else {
        return Ok(vec![]);
    };
    types
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse().map_err(|_| {
                ApiError::invalid_at(
                    &["query", "types"],
                    format!("unknown event type {t:?}"),
                    "value_error",
                )
            })
        })
        .collect()
}
