//! Messages by the request that created them.
use std::sync::Arc;

use entities::{messages, status_history};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Attachment, AttachmentType, Json};
use poem_openapi::{Enum, Object, OpenApi};

use super::ApiTags;
use super::schemas::MessageItem;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum MessageInclude {
    /// Each message's status history.
    Events,
}

/// The messages one send or record request created, in request order. Empty until the
/// workers have recorded them (normally within milliseconds of the 200).
#[derive(Debug, Object)]
pub struct MessageResponse {
    pub request_id: String,
    pub total: u32,
    pub messages: Vec<MessageItem>,
}

pub struct MessagesApi {
    pub state: Arc<AppState>,
}

impl MessagesApi {
    async fn by_request(
        &self,
        business_id: Option<i64>,
        request_id: &str,
        include: Option<MessageInclude>,
    ) -> Result<Json<MessageResponse>, ApiError> {
        if uuid::Uuid::parse_str(request_id).is_err() {
            return Err(ApiError::invalid_at(
                &["path", "request_id"],
                "value is not a valid uuid",
                "type_error.uuid",
            ));
        }
        let db = &self.state.db;
        let rows = messages::messages_by_request(db, business_id, request_id).await?;
        let mut messages = Vec::with_capacity(rows.len());
        for row in rows {
            let events = match include {
                Some(MessageInclude::Events) => {
                    Some(status_history::message_events(db, row.id).await?)
                }
                None => None,
            };
            messages.push(
                MessageItem::from_model(row, events)
                    .map_err(|e| ApiError::internal("stored message unreadable", e))?,
            );
        }
        Ok(Json(MessageResponse {
            request_id: request_id.to_owned(),
            total: messages.len() as u32,
            messages,
        }))
    }
}

#[OpenApi]
impl MessagesApi {
    /// Download a message's attachment
    ///
    /// The file of attachment `index` (its place in the message's `attachments`) when omega
    /// keeps its content: given inline when sent or recorded, or received with an inbound
    /// email. Served as `application/octet-stream` with `Content-Disposition: attachment`
    /// and its file name, so that a browser saves it rather than shows it. 404 for another
    /// business's message and for attachments given by URL (they are at their URL).
    #[oai(
        path = "/businesses/:business_id/messages/:message_id/attachments/:index",
        method = "get",
        tag = "ApiTags::Messages"
    )]
    async fn attachment(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        message_id: Path<i64>,
        index: Path<u32>,
    ) -> Result<Attachment<Vec<u8>>, ApiError> {
        auth.principal().can_read(business_id.0)?;
        let found = entities::message_item::attachment(
            &self.state.db,
            business_id.0,
            message_id.0,
            index.0 as usize,
        )
        .await?;
        let Some((filename, _, bytes)) = found else {
            return Err(ApiError::not_found("No such attachment"));
        };
        Ok(Attachment::new(bytes)
            .attachment_type(AttachmentType::Attachment)
            .filename(filename))
    }

    /// Messages by request ID
    ///
    /// The messages a send or record request of this business created, with their current
    /// status (`include=events` adds each one's status history).
    #[oai(
        path = "/businesses/:business_id/messages/requests/:request_id",
        method = "get",
        tag = "ApiTags::Messages"
    )]
    async fn business_request_messages(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        request_id: Path<String>,
        include: Query<Option<MessageInclude>>,
    ) -> Result<Json<MessageResponse>, ApiError> {
        auth.principal().can_read(business_id.0)?;
        self.state.require_business_exists(business_id.0).await?;
        self.by_request(Some(business_id.0), &request_id.0, include.0)
            .await
    }

    /// Messages by request ID (platform)
    ///
    /// The same across all businesses; platform key only.
    #[oai(
        path = "/messages/requests/:request_id",
        method = "get",
        tag = "ApiTags::Messages"
    )]
    async fn request_messages(
        &self,
        auth: Auth,
        request_id: Path<String>,
        include: Query<Option<MessageInclude>>,
    ) -> Result<Json<MessageResponse>, ApiError> {
        auth.principal().can_administer()?;
        self.by_request(None, &request_id.0, include.0).await
    }
}
