//! Conversations of the inbox: create-or-retrieve, the conversation list and its filter
//! counts, and a conversation's timeline. The staff's commands on them are in `inbox`.
use std::sync::Arc;

use chrono::{DateTime, Utc};
use entities::conversations::{self, list};
use entities::types::{AssignmentFilterType, Channel, ClientConversationStatus, MessageFilterType};
use entities::{inbox, messages, status_history};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;

use super::ApiTags;
use super::messages::MessageInclude;
use super::paging::{PageInfo, PageNumber, PageSize, page_info, paging};
use super::schemas::MessageItem;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;
use crate::validate::{Checker, ValidJson, Validate};

#[derive(Debug, Object, Deserialize)]
pub struct ConversationCreateRequest {
    pub client_id: i64,
    #[serde(default)]
    #[oai(nullable)]
    pub location_id: Option<i64>,
}

impl Validate for ConversationCreateRequest {
    fn validate(&mut self, c: &mut Checker) {
        c.positive("client_id", self.client_id);
        if let Some(l) = self.location_id {
            c.positive("location_id", l);
        }
    }
}

/// A conversation's detail, with its assignment and status history.
#[derive(Debug, Object)]
pub struct ConversationResponse {
    pub id: i64,
    pub client_id: i64,
    #[oai(nullable)]
    pub location_id: Option<i64>,
    pub status: ClientConversationStatus,
    #[oai(nullable)]
    pub assigned_staff_id: Option<i64>,
    pub unread_count: i32,
    pub last_activity_at: DateTime<Utc>,
    #[oai(nullable)]
    pub snoozed_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Assignments and status changes, oldest first: who, when, from what to what.
    pub events: Vec<ConversationEventItem>,
}

/// One assignment or status change of a conversation.
#[derive(Debug, Object)]
pub struct ConversationEventItem {
    /// `assigned` or `status`.
    pub kind: String,
    /// The staff member who made the change, when known.
    #[oai(nullable)]
    pub staff_id: Option<i64>,
    /// The previous staff id or status (none when unassigned).
    #[oai(nullable)]
    pub from: Option<String>,
    #[oai(nullable)]
    pub to: Option<String>,
    pub at: DateTime<Utc>,
}

impl ConversationResponse {
    pub(crate) fn new(
        c: entities::conversation::Model,
        events: Vec<entities::conversation_event::Model>,
    ) -> Result<Self, ApiError> {
        Ok(ConversationResponse {
            id: c.id,
            client_id: c.client_id,
            location_id: (c.location_key != 0).then_some(c.location_key),
            status: c
                .status
                .parse()
                .map_err(|e| ApiError::internal("stored conversation unreadable", e))?,
            assigned_staff_id: c.assigned_staff_id,
            unread_count: c.unread_count,
            last_activity_at: c.last_activity_at,
            snoozed_until: c.snoozed_until,
            created_at: c.created_at,
            events: events
                .into_iter()
                .map(|e| ConversationEventItem {
                    kind: e.kind,
                    staff_id: e.actor_staff_id,
                    from: e.from_value,
                    to: e.to_value,
                    at: e.created_at,
                })
                .collect(),
        })
    }
}

#[derive(ApiResponse)]
pub enum ConversationOpened {
    /// Created.
    #[oai(status = 201)]
    Created(Json<ConversationResponse>),
    /// It existed.
    #[oai(status = 200)]
    Existing(Json<ConversationResponse>),
}

#[derive(Debug, Object)]
pub struct PaginatedMessages {
    pub items: Vec<MessageItem>,
    #[oai(flatten)]
    pub page: PageInfo,
    /// The conversation's detail (status, assignment and their history), on a
    /// conversation's timeline; absent on search results.
    #[oai(skip_serializing_if_is_none)]
    pub conversation: Option<ConversationResponse>,
}

#[derive(Debug, Object)]
pub struct ConversationClient {
    pub id: i64,
    #[oai(nullable)]
    pub first_name: Option<String>,
    #[oai(nullable)]
    pub last_name: Option<String>,
    #[oai(nullable)]
    pub phone: Option<String>,
    #[oai(nullable)]
    pub email: Option<String>,
    pub client_type: String,
}

/// The latest message of a conversation, for the list.
#[derive(Debug, Object)]
pub struct LastMessage {
    /// The first 160 characters.
    pub preview: String,
    pub channel: String,
    pub direction: String,
    pub status: String,
    pub at: DateTime<Utc>,
}

/// One conversation of the inbox list.
#[derive(Debug, Object)]
pub struct ClientListResponse {
    pub id: i64,
    #[oai(nullable)]
    pub client: Option<ConversationClient>,
    #[oai(nullable)]
    pub location_id: Option<i64>,
    pub status: String,
    #[oai(nullable)]
    pub assigned_staff_id: Option<i64>,
    #[oai(nullable)]
    pub last_message: Option<LastMessage>,
    pub unread_count: i32,
    pub last_activity_at: DateTime<Utc>,
}

#[derive(Debug, Object)]
pub struct PaginatedClientList {
    pub items: Vec<ClientListResponse>,
    #[oai(flatten)]
    pub page: PageInfo,
}

#[derive(Debug, Object)]
pub struct FilterCount {
    pub value: String,
    pub count: u64,
}

#[derive(Debug, Object)]
pub struct LocationCount {
    pub location_id: i64,
    pub count: u64,
}

/// Each filter of the conversation list with its values and their current counts.
#[derive(Debug, Object)]
pub struct ConversationFilters {
    pub status: Vec<FilterCount>,
    /// all, mine (with `staff_id` or a session), unassigned, assigned.
    pub assignment: Vec<FilterCount>,
    pub locations: Vec<LocationCount>,
    pub channels: Vec<FilterCount>,
    /// Conversations with unread messages.
    pub unread: u64,
}

pub struct ConversationsApi {
    pub state: Arc<AppState>,
}

#[OpenApi]
impl ConversationsApi {
    /// Create or retrieve a conversation
    ///
    /// The one conversation of a client at a location: 201 when created, 200 when it existed;
    /// concurrent calls never make two.
    #[oai(
        path = "/businesses/:business_id/conversations",
        method = "post",
        tag = "ApiTags::Businesses"
    )]
    async fn open(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        body: ValidJson<ConversationCreateRequest>,
    ) -> Result<ConversationOpened, ApiError> {
        auth.principal().can_work_inbox(business_id.0)?;
        self.state.require_business_exists(business_id.0).await?;
        let req = body.value;
        let (c, created) = conversations::open_conversation(
            &self.state.db,
            business_id.0,
            req.client_id,
            req.location_id,
        )
        .await?;
        let events = inbox::conversation_events(&self.state.db, c.id).await?;
        let response = ConversationResponse::new(c, events)?;
        Ok(if created {
            ConversationOpened::Created(Json(response))
        } else {
            ConversationOpened::Existing(Json(response))
        })
    }

    /// Client conversations
    ///
    /// Newest activity first; filters combine. `assignment=mine` uses `staff_id` or the
    /// session's staff member; `q` matches the client's name, phone or email.
    #[oai(
        path = "/businesses/:business_id/conversations",
        method = "get",
        tag = "ApiTags::Businesses"
    )]
    #[allow(clippy::too_many_arguments)] // poem-openapi takes one argument per query parameter
    async fn list(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        status: Query<Option<ClientConversationStatus>>,
        assignment: Query<Option<AssignmentFilterType>>,
        staff_id: Query<Option<i64>>,
        location_id: Query<Option<i64>>,
        channel: Query<Option<Channel>>,
        unread_only: Query<Option<bool>>,
        q: Query<Option<String>>,
        page: Query<PageNumber>,
        page_size: Query<PageSize>,
    ) -> Result<Json<PaginatedClientList>, ApiError> {
        auth.principal().can_read(business_id.0)?;
        self.state.require_business_exists(business_id.0).await?;
        let me = staff_id.0.or(match auth.principal() {
            crate::auth::Principal::Staff { staff_id, .. } => Some(*staff_id),
            _ => None,
        });
        let mut filter = list::ConversationFilter {
            status: status.0,
            location_id: location_id.0,
            channel: channel.0,
            unread_only: unread_only.0.unwrap_or(false),
            q: q.0,
            ..Default::default()
        };
        match assignment.0.unwrap_or(AssignmentFilterType::All) {
            AssignmentFilterType::All => {}
            AssignmentFilterType::Unassigned => filter.assigned_to = Some(None),
            AssignmentFilterType::Assigned => filter.assigned_any = true,
            AssignmentFilterType::Mine => match me {
                Some(s) => filter.assigned_to = Some(Some(s)),
                None => {
                    return Err(ApiError::invalid_at(
                        &["query", "staff_id"],
                        "assignment=mine needs staff_id or a staff session",
                        "missing",
                    ));
                }
            },
        }
        let paging = paging(page.0, page_size.0);
        let found = list::conversation_page(&self.state.db, business_id.0, &filter, paging).await?;
        let items = found
            .items
            .into_iter()
            .map(|(c, cl, m)| ClientListResponse {
                id: c.id,
                client: cl.map(|cl| ConversationClient {
                    id: cl.id,
                    first_name: cl.first_name,
                    last_name: cl.last_name,
                    phone: cl.phone,
                    email: cl.email,
                    client_type: cl.client_type,
                }),
                location_id: (c.location_key != 0).then_some(c.location_key),
                status: c.status,
                assigned_staff_id: c.assigned_staff_id,
                last_message: m.map(|m| LastMessage {
                    // A reply's own words, without the history its mail program quoted.
                    preview: preview(&m),
                    channel: m.channel,
                    direction: m.direction,
                    status: m.status,
                    at: m.sent_at.unwrap_or(m.created_at),
                }),
                unread_count: c.unread_count,
                last_activity_at: c.last_activity_at,
            })
            .collect();
        Ok(Json(PaginatedClientList {
            items,
            page: page_info(paging, found.total),
        }))
    }

    /// Available conversation filters
    ///
    /// Every filter's values with true counts for the business (each count equals the
    /// list's total for that filter alone).
    #[oai(
        path = "/businesses/:business_id/conversations/filters",
        method = "get",
        tag = "ApiTags::Businesses"
    )]
    async fn filters(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        staff_id: Query<Option<i64>>,
    ) -> Result<Json<ConversationFilters>, ApiError> {
        auth.principal().can_read(business_id.0)?;
        self.state.require_business_exists(business_id.0).await?;
        let me = staff_id.0.or(match auth.principal() {
            crate::auth::Principal::Staff { staff_id, .. } => Some(*staff_id),
            _ => None,
        });
        let c = list::filter_counts(&self.state.db, business_id.0, me).await?;
        let status = ClientConversationStatus::ALL
            .iter()
            .map(|s| FilterCount {
                value: s.as_str().into(),
                count: c
                    .by_status
                    .iter()
                    .find(|(k, _)| k == s.as_str())
                    .map_or(0, |(_, n)| *n),
            })
            .collect();
        let mut assignment = vec![
            FilterCount {
                value: "all".into(),
                count: c.total,
            },
            FilterCount {
                value: "unassigned".into(),
                count: c.unassigned,
            },
            FilterCount {
                value: "assigned".into(),
                count: c.total - c.unassigned,
            },
        ];
        if let Some(mine) = c.mine {
            assignment.insert(
                1,
                FilterCount {
                    value: "mine".into(),
                    count: mine,
                },
            );
        }
        Ok(Json(ConversationFilters {
            status,
            assignment,
            locations: c
                .by_location
                .into_iter()
                .map(|(location_id, count)| LocationCount { location_id, count })
                .collect(),
            channels: c
                .by_channel
                .into_iter()
                .map(|(value, count)| FilterCount { value, count })
                .collect(),
            unread: c.unread,
        }))
    }

    /// A conversation's messages
    ///
    /// Newest first; notes are in the timeline with `channel: "note"`. `include=events` adds
    /// each message's status history.
    #[oai(
        path = "/businesses/:business_id/conversations/:conversation_id/messages",
        method = "get",
        tag = "ApiTags::Businesses"
    )]
    #[allow(clippy::too_many_arguments)] // poem-openapi takes one argument per query parameter
    async fn messages(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        conversation_id: Path<i64>,
        filter: Query<Option<MessageFilterType>>,
        include: Query<Option<MessageInclude>>,
        page: Query<PageNumber>,
        page_size: Query<PageSize>,
    ) -> Result<Json<PaginatedMessages>, ApiError> {
        auth.principal().can_read(business_id.0)?;
        self.state.require_business_exists(business_id.0).await?;
        let db = &self.state.db;
        let filter = filter.0.unwrap_or(MessageFilterType::All);
        let paging = paging(page.0, page_size.0);
        let (conversation, found) =
            messages::conversation_messages(db, business_id.0, conversation_id.0, filter, paging)
                .await?
                .ok_or_else(|| {
                    ApiError::not_found(format!("Conversation {} not found", conversation_id.0))
                })?;
        let mut items = Vec::with_capacity(found.items.len());
        for row in found.items {
            let events = match include.0 {
                Some(MessageInclude::Events) => {
                    Some(status_history::message_events(db, row.id).await?)
                }
                None => None,
            };
            items.push(
                MessageItem::from_model(row, events)
                    .map_err(|e| ApiError::internal("stored message unreadable", e))?,
            );
        }
        let events = inbox::conversation_events(db, conversation.id).await?;
        Ok(Json(PaginatedMessages {
            items,
            page: page_info(paging, found.total),
            conversation: Some(ConversationResponse::new(conversation, events)?),
        }))
    }
}

/// The first 160 characters of a message; of a client's email, of its new text only.
fn preview(m: &list::LastMessage) -> String {
    let body = if m.channel == entities::types::Channel::Email.as_str()
        && m.direction == entities::types::Direction::Inbound.as_str()
    {
        entities::email_text::without_quoted(&m.body)
    } else {
        &m.body
    };
    body.chars().take(160).collect()
}
