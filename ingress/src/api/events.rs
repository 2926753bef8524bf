//! The business's event log: `GET /businesses/{business_id}/events` in pages, for clients
//! that cannot hold a stream, and `…/events/stream`, live as Server-Sent Events
//! (`crate::streams`). Resuming from the last id read misses nothing
//! ([`entities::event_log`] says why).
use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use entities::event_log::{self, Event, EventId, EventType};
use futures::StreamExt;
use poem::web::sse;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{EventStream, Json};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::{ToJSON, Type};
use poem_openapi::{Object, OpenApi};

use super::ApiTags;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;
use crate::streams::Published;

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

/// An event as webhooks POST it and streams send it (the Standard Webhooks payload).
#[derive(Debug, Object)]
pub struct EventPayload {
    #[oai(rename = "type")]
    pub event_type: String,
    /// When it happened (RFC 3339).
    pub timestamp: String,
    /// What happened, with `business_id` and `event_id`.
    pub data: serde_json::Value,
}

/// A stream's frame: an `EventPayload` serialized once for every reader in the process
/// (`crate::streams`), documented as one.
pub struct StreamedEvent(Arc<Published>);

impl Type for StreamedEvent {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        EventPayload::name()
    }

    fn schema_ref() -> MetaSchemaRef {
        EventPayload::schema_ref()
    }

    fn register(registry: &mut Registry) {
        EventPayload::register(registry)
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl ToJSON for StreamedEvent {
    fn to_json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.0.data).ok()
    }
}

type EventFrames = EventStream<futures::stream::BoxStream<'static, StreamedEvent>>;

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
        let after = parse_after(after.0.as_deref(), &["query", "after"])?;
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

    /// Follow a business's events live
    ///
    /// Server-Sent Events: one frame per event (`id`: the event id, `event`: its type,
    /// `data`: the same JSON a webhook receives), and a comment every 15 seconds. Resumes
    /// after `Last-Event-ID` (sent by browsers when they reconnect) or `after`: the events
    /// missed come first, in order, then live ones, with no gap or repeat; without either,
    /// from now on. API keys of the business, the platform key, or a staff session of the
    /// business (cookie or bearer).
    #[oai(
        path = "/businesses/:business_id/events/stream",
        method = "get",
        tag = "ApiTags::Businesses"
    )]
    async fn stream(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        after: Query<Option<String>>,
        types: Query<Option<String>>,
        #[oai(name = "Last-Event-ID")] last_event_id: Header<Option<String>>,
    ) -> Result<EventFrames, ApiError> {
        auth.principal().can_read(business_id.0)?;
        self.state.require_business_exists(business_id.0).await?;
        // A reconnecting browser keeps the URL it started with: its header is newer.
        let after = match last_event_id.0.as_deref() {
            Some(id) => parse_after(Some(id), &["header", "Last-Event-ID"])?,
            None => parse_after(after.0.as_deref(), &["query", "after"])?,
        };
        let types = parse_types(types.0.as_deref())?;
        let events = self
            .state
            .streams
            .follow(business_id.0, after, types)
            .await?;
        Ok(EventStream::new(events.map(StreamedEvent).boxed())
            .keep_alive(self.state.settings.stream_heartbeat)
            .to_event(|StreamedEvent(e)| {
                sse::Event::message(e.data.as_str())
                    .id(e.id.to_string())
                    .event_type(e.event_type.as_str())
            }))
    }
}

/// `after`, as an event id (422 at the parameter otherwise).
fn parse_after(after: Option<&str>, loc: &[&str]) -> Result<Option<EventId>, ApiError> {
    after
        .map(|a| {
            a.parse::<EventId>().map_err(|_| {
                ApiError::invalid_at(
                    loc,
                    "not an event id (evt_ and 32 hex digits)",
                    "value_error",
                )
            })
        })
        .transpose()
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
