//! Conversations of the inbox: create-or-retrieve, and a conversation's timeline.
use std::sync::Arc;

use chrono::{DateTime, Utc};
use entities::directory;
use entities::inbox;
use entities::types::{AssignmentFilterType, Channel, ClientConversationStatus, MessageFilterType};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;

use super::ApiTags;
use super::messages::MessageInclude;
use super::schemas::MessageItem;
use crate::auth::{Auth, require_business_access};
use crate::error::ApiError;
use crate::state::AppState;
use crate::validate::{Checker, ValidJson, Validate};

#[derive(Debug, Object, Deserialize)]
pub struct ConversationCreateRequest {
    pub client_id: i64,
    #[serde(default)]
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
    pub location_id: Option<i64>,
    pub status: ClientConversationStatus,
    pub assigned_staff_id: Option<i64>,
    pub unread_count: i32,
    pub last_activity_at: DateTime<Utc>,
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
    pub staff_id: Option<i64>,
    /// The previous staff id or status (none when unassigned).
    pub from: Option<String>,
    pub to: Option<String>,
    pub at: DateTime<Utc>,
}

impl ConversationResponse {
    fn new(
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
    pub page: u64,
    pub page_size: u64,
    pub total: u64,
    pub total_pages: u64,
    /// The conversation's detail (status, assignment and their history), on a
    /// conversation's timeline; absent on search results.
    #[oai(skip_serializing_if_is_none)]
    pub conversation: Option<ConversationResponse>,
}

/// An internal note: in the timeline, never sent to the client.
#[derive(Debug, Object, Deserialize)]
pub struct NoteRequest {
    pub staff_id: i64,
    /// 1 to 10,000 characters.
    pub note: String,
}

impl Validate for NoteRequest {
    fn validate(&mut self, c: &mut Checker) {
        c.positive("staff_id", self.staff_id);
        c.length("note", self.note.trim(), 1, 10_000);
    }
}

#[derive(ApiResponse)]
pub enum NoteCreated {
    #[oai(status = 201)]
    Created(Json<MessageItem>),
}

/// `staff_id: null` unassigns.
#[derive(Debug, Object, Deserialize)]
pub struct AssignRequest {
    pub staff_id: Option<i64>,
    #[serde(default)]
    pub assigned_by: Option<i64>,
}

impl Validate for AssignRequest {
    fn validate(&mut self, _c: &mut Checker) {}
}

#[derive(Debug, Object, Deserialize)]
pub struct ConversationStatusRequest {
    pub status: ClientConversationStatus,
    /// For `snoozed`: until when.
    #[serde(default)]
    pub snoozed_until: Option<DateTime<Utc>>,
    #[serde(default)]
    pub staff_id: Option<i64>,
}

impl Validate for ConversationStatusRequest {
    fn validate(&mut self, c: &mut Checker) {
        if self.status == ClientConversationStatus::Snoozed && self.snoozed_until.is_none() {
            c.fail("snoozed_until", "field required when snoozing", "missing");
        }
    }
}

#[derive(Debug, Object)]
pub struct ConversationClient {
    pub id: i64,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
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
    pub client: Option<ConversationClient>,
    pub location_id: Option<i64>,
    pub status: String,
    pub assigned_staff_id: Option<i64>,
    pub last_message: Option<LastMessage>,
    pub unread_count: i32,
    pub last_activity_at: DateTime<Utc>,
}

#[derive(Debug, Object)]
pub struct PaginatedConversations {
    pub items: Vec<ClientListResponse>,
    pub page: u64,
    pub page_size: u64,
    pub total: u64,
    pub total_pages: u64,
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

/// Mark inbound messages read or unread: by staff (their assigned conversations),
/// conversation, client, ids, channel and/or created before a time; at least one selector.
#[derive(Debug, Object, Deserialize)]
pub struct MessageStatusUpdateFilters {
    pub is_read: bool,
    #[serde(default)]
    pub staff_id: Option<i64>,
    #[serde(default)]
    pub conversation_id: Option<i64>,
    #[serde(default)]
    pub client_id: Option<i64>,
    #[serde(default)]
    pub message_ids: Option<Vec<i64>>,
    #[serde(default)]
    pub channel: Option<Channel>,
    #[serde(default)]
    pub before: Option<DateTime<Utc>>,
}

impl Validate for MessageStatusUpdateFilters {
    fn validate(&mut self, c: &mut Checker) {
        let any = self.staff_id.is_some()
            || self.conversation_id.is_some()
            || self.client_id.is_some()
            || self.message_ids.is_some()
            || self.channel.is_some()
            || self.before.is_some();
        if !any {
            c.fail("", "give at least one selector: staff_id, conversation_id, client_id, message_ids, channel or before", "value_error");
        }
        if let Some(ids) = &self.message_ids {
            c.count("message_ids", ids.len(), 1, 10_000);
        }
    }
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
        require_business_access(auth.principal(), business_id.0)?;
        self.state.require_business_exists(business_id.0).await?;
        let req = body.value;
        let (c, created) = inbox::open_conversation(
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
        #[oai(
            default = "crate::api::schemas::first_page",
            validator(minimum(value = "1"))
        )]
        page: Query<u64>,
        #[oai(
            default = "crate::api::schemas::default_page_size",
            validator(minimum(value = "1"), maximum(value = "100"))
        )]
        page_size: Query<u64>,
    ) -> Result<Json<PaginatedConversations>, ApiError> {
        require_business_access(auth.principal(), business_id.0)?;
        self.state.require_business_exists(business_id.0).await?;
        let me = staff_id.0.or(match auth.principal() {
            crate::auth::Principal::Staff { staff_id, .. } => Some(*staff_id),
            _ => None,
        });
        let mut filter = directory::ConversationFilter {
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
        let (rows, total) = directory::conversation_page(
            &self.state.db,
            business_id.0,
            &filter,
            page.0,
            page_size.0,
        )
        .await?;
        let items = rows
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
                    preview: m.body.chars().take(160).collect(),
                    channel: m.channel,
                    direction: m.direction,
                    status: m.status,
                    at: m.sent_at.unwrap_or(m.created_at),
                }),
                unread_count: c.unread_count,
                last_activity_at: c.last_activity_at,
            })
            .collect();
        Ok(Json(PaginatedConversations {
            items,
            page: page.0,
            page_size: page_size.0,
            total,
            total_pages: total.div_ceil(page_size.0),
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
        require_business_access(auth.principal(), business_id.0)?;
        self.state.require_business_exists(business_id.0).await?;
        let me = staff_id.0.or(match auth.principal() {
            crate::auth::Principal::Staff { staff_id, .. } => Some(*staff_id),
            _ => None,
        });
        let c = directory::filter_counts(&self.state.db, business_id.0, me).await?;
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

    /// Mark messages read or unread
    ///
    /// Inbound messages matching the selectors; the conversations' unread counts are recounted
    /// in the same transaction. `updated`: messages changed.
    #[oai(
        path = "/businesses/:business_id/messages/read-status",
        method = "post",
        tag = "ApiTags::Businesses"
    )]
    async fn read_status(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        body: ValidJson<MessageStatusUpdateFilters>,
    ) -> Result<Json<super::status::UpdateSuccessResponse>, ApiError> {
        require_business_access(auth.principal(), business_id.0)?;
        self.state.require_business_exists(business_id.0).await?;
        let b = body.value;
        let sel = inbox::ReadSelection {
            staff_id: b.staff_id,
            conversation_id: b.conversation_id,
            client_id: b.client_id,
            message_ids: b.message_ids,
            channel: b.channel,
            before: b.before,
        };
        let updated = inbox::set_read(&self.state.db, business_id.0, b.is_read, &sel).await?;
        Ok(Json(super::status::UpdateSuccessResponse {
            success: true,
            updated: updated as u32,
        }))
    }

    /// Add internal note
    ///
    /// A timeline entry (`channel: "note"`) by a staff member of the business; never sent to
    /// the client and never counted unread.
    #[oai(
        path = "/businesses/:business_id/conversations/:conversation_id/notes",
        method = "post",
        tag = "ApiTags::Businesses"
    )]
    async fn note(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        conversation_id: Path<i64>,
        body: ValidJson<NoteRequest>,
    ) -> Result<NoteCreated, ApiError> {
        require_business_access(auth.principal(), business_id.0)?;
        self.state.require_business_exists(business_id.0).await?;
        let req = body.value;
        let row = inbox::add_note(
            &self.state.db,
            business_id.0,
            conversation_id.0,
            req.staff_id,
            req.note.trim(),
        )
        .await
        .map_err(|e| invalid_at_body(e, "staff_id"))?;
        let item = MessageItem::from_model(row, None)
            .map_err(|e| ApiError::internal("stored note unreadable", e))?;
        Ok(NoteCreated::Created(Json(item)))
    }

    /// Assign a conversation
    ///
    /// To a staff member of the business (else 422), or nobody (`staff_id: null`); recorded as
    /// a conversation event.
    #[oai(
        path = "/businesses/:business_id/conversations/:conversation_id/assign",
        method = "post",
        tag = "ApiTags::Businesses"
    )]
    async fn assign(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        conversation_id: Path<i64>,
        body: ValidJson<AssignRequest>,
    ) -> Result<Json<super::status::UpdateSuccessResponse>, ApiError> {
        require_business_access(auth.principal(), business_id.0)?;
        self.state.require_business_exists(business_id.0).await?;
        let req = body.value;
        inbox::assign(
            &self.state.db,
            business_id.0,
            conversation_id.0,
            req.staff_id,
            req.assigned_by,
        )
        .await
        .map_err(|e| invalid_at_body(e, "staff_id"))?;
        Ok(Json(super::status::UpdateSuccessResponse {
            success: true,
            updated: 1,
        }))
    }

    /// Set a conversation's status
    ///
    /// open, pending, resolved or snoozed (with `snoozed_until`); recorded as a conversation
    /// event. An inbound message reopens a resolved or snoozed conversation.
    #[oai(
        path = "/businesses/:business_id/conversations/:conversation_id/status",
        method = "post",
        tag = "ApiTags::Businesses"
    )]
    async fn status(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        conversation_id: Path<i64>,
        body: ValidJson<ConversationStatusRequest>,
    ) -> Result<Json<super::status::UpdateSuccessResponse>, ApiError> {
        require_business_access(auth.principal(), business_id.0)?;
        self.state.require_business_exists(business_id.0).await?;
        let req = body.value;
        let actor = req.staff_id.or(match auth.principal() {
            crate::auth::Principal::Staff { staff_id, .. } => Some(*staff_id),
            _ => None,
        });
        inbox::set_status(
            &self.state.db,
            business_id.0,
            conversation_id.0,
            req.status,
            req.snoozed_until,
            actor,
        )
        .await?;
        Ok(Json(super::status::UpdateSuccessResponse {
            success: true,
            updated: 1,
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
        #[oai(
            default = "crate::api::schemas::first_page",
            validator(minimum(value = "1"))
        )]
        page: Query<u64>,
        #[oai(
            default = "crate::api::schemas::default_page_size",
            validator(minimum(value = "1"), maximum(value = "100"))
        )]
        page_size: Query<u64>,
    ) -> Result<Json<PaginatedMessages>, ApiError> {
        require_business_access(auth.principal(), business_id.0)?;
        self.state.require_business_exists(business_id.0).await?;
        let db = &self.state.db;
        let filter = filter.0.unwrap_or(MessageFilterType::All);
        let (conversation, rows, total) = inbox::conversation_messages(
            db,
            business_id.0,
            conversation_id.0,
            filter,
            page.0,
            page_size.0,
        )
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("Conversation {} not found", conversation_id.0))
        })?;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            let events = match include.0 {
                Some(MessageInclude::Events) => Some(inbox::message_events(db, row.id).await?),
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
            page: page.0,
            page_size: page_size.0,
            total,
            total_pages: total.div_ceil(page_size.0),
            conversation: Some(ConversationResponse::new(conversation, events)?),
        }))
    }
}

/// A request naming a staff member of another business is a validation error at that field.
fn invalid_at_body(e: entities::Error, field: &str) -> ApiError {
    match e {
        entities::Error::Invalid(msg) => ApiError::invalid_at(&["body", field], msg, "value_error"),
        other => other.into(),
    }
}
