//! A client's data on request (GDPR/PIPEDA access and erasure): export it all, or erase it
//! leaving anonymous counts. Both are API-key only and written to the audit log.
use std::sync::Arc;

use chrono::{DateTime, Utc};
use entities::audit::Actor;
use entities::privacy::ClientRecords;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi, param::Path};

use super::ApiTags;
use super::conversations::ConversationResponse;
use super::directory::{AddressConsent, BusinessClientDetails};
use super::schemas::MessageItem;
use crate::RequestId;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;

/// Everything omega holds about one client of a business.
#[derive(Debug, Object)]
pub struct ClientExport {
    pub business_id: i64,
    pub client_id: i64,
    pub exported_at: DateTime<Utc>,
    /// The client's profile and consent (absent when only messages name the client).
    #[oai(skip_serializing_if_is_none)]
    pub client: Option<BusinessClientDetails>,
    /// Consent kept for each phone number and email address the client used.
    pub address_consent: Vec<AddressConsent>,
    /// Oldest first, each with its assignment and status history.
    pub conversations: Vec<ConversationResponse>,
    /// Every message, call and note, oldest first, each with its status history.
    pub messages: Vec<MessageItem>,
}

impl ClientExport {
    fn new(
        business_id: i64,
        client_id: i64,
        found: ClientRecords,
        now: DateTime<Utc>,
    ) -> Result<Self, ApiError> {
        Ok(ClientExport {
            business_id,
            client_id,
            exported_at: now,
            client: found.client.map(TryInto::try_into).transpose()?,
            address_consent: found
                .address_consents
                .into_iter()
                .map(AddressConsent::from)
                .collect(),
            conversations: found
                .conversations
                .into_iter()
                .map(|(c, events)| ConversationResponse::new(c, events))
                .collect::<Result<_, _>>()?,
            messages: found
                .messages
                .into_iter()
                .map(|(m, events)| MessageItem::from_model(m, Some(events)))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// Messages erased on one channel and direction.
#[derive(Debug, Object)]
pub struct ErasedMessages {
    pub channel: String,
    pub direction: String,
    pub count: u64,
}

/// What an erasure removed and kept: counts only, as the audit log keeps them.
#[derive(Debug, Object)]
pub struct ClientErasure {
    pub business_id: i64,
    pub client_id: i64,
    pub erased_at: DateTime<Utc>,
    pub messages: Vec<ErasedMessages>,
    pub message_events: u64,
    pub conversations: u64,
    pub conversation_events: u64,
    /// Provider deliveries (inbound texts, calls) that carried the client's addresses.
    pub webhook_receipts: u64,
    /// Opt-ins of the client's addresses, removed.
    pub address_consents_removed: u64,
    /// Opt-outs of the client's addresses, kept so that a STOP still holds if the address
    /// comes back.
    pub address_opt_outs_kept: u64,
    /// Failed jobs about this client alone, removed from the dead-letter store.
    pub dead_jobs_removed: u64,
    /// Failed jobs that carry this client among others, kept until their retention ends.
    pub dead_jobs_kept: u64,
}

impl ClientErasure {
    fn new(
        business_id: i64,
        client_id: i64,
        e: jobs::erasure::Erasure,
        now: DateTime<Utc>,
    ) -> Self {
        ClientErasure {
            business_id,
            client_id,
            erased_at: now,
            messages: e
                .records
                .messages
                .into_iter()
                .map(|(key, count)| {
                    let (channel, direction) = key.split_once('/').unwrap_or((&key, ""));
                    ErasedMessages {
                        channel: channel.to_owned(),
                        direction: direction.to_owned(),
                        count,
                    }
                })
                .collect(),
            message_events: e.records.message_events,
            conversations: e.records.conversations,
            conversation_events: e.records.conversation_events,
            webhook_receipts: e.records.webhook_receipts,
            address_consents_removed: e.records.address_consents_removed,
            address_opt_outs_kept: e.records.address_opt_outs_kept,
            dead_jobs_removed: e.dead_jobs_removed,
            dead_jobs_kept: e.dead_jobs_kept,
        }
    }
}

pub struct PrivacyApi {
    pub state: Arc<AppState>,
}

impl PrivacyApi {
    /// The caller may handle the business's client data, it exists, and who they are.
    async fn admit(
        &self,
        auth: &Auth,
        business_id: i64,
        trace: &RequestId,
    ) -> Result<Actor, ApiError> {
        auth.principal().can_handle_client_data(business_id)?;
        self.state.require_business_exists(business_id).await?;
        Ok(Actor {
            name: auth.principal().audit_name(),
            request_id: Some(trace.0.clone()),
        })
    }
}

fn no_client(client_id: i64) -> ApiError {
    ApiError::not_found(format!("Client {client_id} not found"))
}

#[OpenApi]
impl PrivacyApi {
    /// Export a client's data
    ///
    /// Every message, call, note, status and conversation event and consent record omega
    /// holds about the client, as one JSON document (a data subject's access request).
    /// API keys only; recorded in the audit log.
    #[oai(
        path = "/businesses/:business_id/clients/:client_id/export",
        method = "get",
        tag = "ApiTags::BusinessClients"
    )]
    async fn export(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        client_id: Path<i64>,
        trace: Data<&RequestId>,
    ) -> Result<Json<ClientExport>, ApiError> {
        let actor = self.admit(&auth, business_id.0, &trace).await?;
        let now = Utc::now();
        let found =
            entities::privacy::export(&self.state.db, business_id.0, client_id.0, &actor, now)
                .await?
                .ok_or_else(|| no_client(client_id.0))?;
        Ok(Json(ClientExport::new(
            business_id.0,
            client_id.0,
            found,
            now,
        )?))
    }

    /// Erase a client
    ///
    /// Removes the client's profile, messages, calls and notes (bodies, addresses,
    /// attachments), their status and conversation history, conversations, the provider
    /// deliveries that carried their addresses, and failed jobs about them alone; answers
    /// what was removed as counts. An address's opt-out is kept, so a STOP still holds.
    /// API keys only; recorded in the audit log. A second erasure answers 404.
    #[oai(
        path = "/businesses/:business_id/clients/:client_id",
        method = "delete",
        tag = "ApiTags::BusinessClients"
    )]
    async fn erase(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        client_id: Path<i64>,
        trace: Data<&RequestId>,
    ) -> Result<Json<ClientErasure>, ApiError> {
        let actor = self.admit(&auth, business_id.0, &trace).await?;
        let now = Utc::now();
        let erased = jobs::erasure::erase_client(
            &self.state.db,
            self.state.producer.queue().as_ref(),
            business_id.0,
            client_id.0,
            &actor,
            now,
        )
        .await?
        .ok_or_else(|| no_client(client_id.0))?;
        Ok(Json(ClientErasure::new(
            business_id.0,
            client_id.0,
            erased,
            now,
        )))
    }
}
