//! Inbound email: a client's mail, as any provider hands it over, recorded `received` in
//! the right conversation.
//!
//! Which conversation, most certain first ([`thread_destination`], then
//! [`location_by_address`]): the reply address omega gave
//! (`reply+<token>@`, [`crate::threading`]); a `Message-ID` omega sent named in
//! `In-Reply-To`/`References` (or, for providers that replace the Message-ID, SES, the
//! provider's id in it); a recipient that is a location's address, with the client found by
//! the sender's address (an unknown sender becomes a `lead`, as for SMS).
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::calls::find_or_create_by_address;
use crate::record::{RecordBatch, RecordItem, record_one};
use crate::threading::{Threading, ids_in};
use crate::types::{Channel, Direction, MessageStatus, Provider, UserType};
use crate::{Result, client, conversation, location, message};

/// A file that came with the mail, kept with the message (base64, as outbound ones are).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundFile {
    pub filename: String,
    pub content_type: String,
    /// Base64 of the bytes.
    pub content: String,
}

/// One email as received, in the same shape whatever the provider.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReceivedEmail {
    pub provider: Option<Provider>,
    /// The sender's address (lower-case) and display name.
    pub from: String,
    pub from_name: Option<String>,
    /// Every recipient address (To, Cc, the envelope), lower-case.
    pub to: Vec<String>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    /// Its `Message-ID`, `<…>` included.
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub references: Option<String>,
    pub attachments: Vec<InboundFile>,
    pub received_at: DateTime<Utc>,
}

/// Where a received email goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Destination {
    /// An existing conversation (by reply address or thread).
    Conversation { conversation_id: i64 },
    /// A location's address; the client by the sender's address.
    Location { location_id: i64 },
}

/// A received email with its business and destination: the job a worker records.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InboundEmail {
    pub business_id: i64,
    pub destination: Destination,
    pub email: ReceivedEmail,
}

/// The conversation a received email continues, by omega's reply address among its
/// recipients or a Message-ID omega sent in its `In-Reply-To`/`References`: (business,
/// destination). None: route it by its recipients' addresses ([`location_by_address`]).
pub async fn thread_destination(
    db: &impl ConnectionTrait,
    threading: &Threading,
    email: &ReceivedEmail,
) -> Result<Option<(i64, Destination)>> {
    for to in &email.to {
        if let Some((business_id, conversation_id)) = threading.conversation_of(to) {
            let exists = conversation::Entity::find()
                .filter(conversation::Column::BusinessId.eq(business_id))
                .filter(conversation::Column::Id.eq(conversation_id))
                .one(db)
                .await?
                .is_some();
            if exists {
                return Ok(Some((
                    business_id,
                    Destination::Conversation { conversation_id },
                )));
            }
        }
    }
    let headers = [&email.in_reply_to, &email.references];
    // Newest first: the message replied to is the last in References.
    let mut ids: Vec<&str> = headers
        .iter()
        .filter_map(|h| h.as_deref())
        .flat_map(ids_in)
        .collect();
    ids.reverse();
    for id in ids {
        let found = match threading.message_of(id) {
            Some(message_id) => message::Entity::find_by_id(message_id).one(db).await?,
            // A provider's own Message-ID (SES replaces ours): its id is the local part.
            None => match id.split_once('@') {
                Some((local, _)) if !local.is_empty() => {
                    message::Entity::find()
                        .filter(message::Column::Provider.eq(Provider::Ses.as_str()))
                        .filter(message::Column::ProviderMessageId.eq(local))
                        .filter(message::Column::Direction.eq(Direction::Outbound.as_str()))
                        .one(db)
                        .await?
                }
                _ => None,
            },
        };
        if let Some(m) = found {
            let conversation_id = m.conversation_id;
            return Ok(Some((
                m.business_id,
                Destination::Conversation { conversation_id },
            )));
        }
    }
    Ok(None)
}

/// The location whose address this is, any case: (business, location).
pub async fn location_by_address(
    db: &impl ConnectionTrait,
    address: &str,
) -> Result<Option<(i64, i64)>> {
    Ok(location::Entity::find()
        .filter(Expr::expr(Func::lower(Expr::col(location::Column::Email))).eq(address))
        .order_by_asc(location::Column::BusinessId)
        .one(db)
        .await?
        .map(|l| (l.business_id, l.id)))
}

/// Records the email in its conversation, once (a provider's retry, a job re-run and the
/// same Message-ID delivered twice find it recorded); false when it was.
pub async fn receive(db: &sea_orm::DatabaseConnection, inbound: &InboundEmail) -> Result<bool> {
    let email = &inbound.email;
    let business_id = inbound.business_id;
    let txn = crate::db::begin_write(db).await?;
    let (client_id, location_id) = match inbound.destination {
        Destination::Conversation { conversation_id } => {
            let c =
                crate::conversations::conversation_in(&txn, business_id, conversation_id).await?;
            (c.client_id, (c.location_key != 0).then_some(c.location_key))
        }
        Destination::Location { location_id } => {
            // Addresses are compared without case (the platform may have stored
            // "Grace@Example.com"); only a sender known by no client becomes a lead.
            let known = client::Entity::find()
                .filter(client::Column::BusinessId.eq(business_id))
                .filter(Expr::expr(Func::lower(Expr::col(client::Column::Email))).eq(&email.from))
                .order_by_desc(client::Column::Id)
                .one(&txn)
                .await?;
            let client = match known {
                Some(c) => c,
                None => {
                    find_or_create_by_address(
                        &txn,
                        business_id,
                        Channel::Email,
                        &email.from,
                        Some(location_id),
                    )
                    .await?
                }
            };
            (client.id, Some(location_id))
        }
    };
    let batch = RecordBatch {
        business_id,
        request_id: request_id(business_id, email),
        channel: Channel::Email,
        direction: Direction::Inbound,
        category: None,
        notification_type: None,
        staff_id: None,
        provider: email.provider,
        sent_by: None,
        sender_type: UserType::Client,
        sent_at: Some(email.received_at),
        location_id,
        items: vec![],
    };
    let body = match (&email.text, &email.html) {
        (Some(text), _) if !text.trim().is_empty() => text.clone(),
        (_, Some(html)) => crate::email_text::from_html(html),
        _ => String::new(),
    };
    let item = RecordItem {
        message_id: None,
        client_id,
        wl_user_id: None,
        from: Some(email.from.clone()),
        to: email.to.first().cloned().unwrap_or_default(),
        subject: email.subject.clone(),
        body,
        cc: vec![],
        bcc: vec![],
        attachments: serde_json::json!(email.attachments),
        status: MessageStatus::Received,
        // Kept in metadata: provider ids are unique across businesses, and the same mail may
        // reach two of them.
        provider_message_id: None,
        metadata: serde_json::json!({"email": {
            "message_id": email.message_id,
            "in_reply_to": email.in_reply_to,
            "references": email.references,
            "from_name": email.from_name,
            "to": email.to,
            "html": email.html,
        }}),
        scheduled_at: None,
    };
    let recorded = record_one(&txn, &batch, 0, &item, Utc::now()).await?;
    txn.commit().await?;
    Ok(recorded)
}

/// One request slot per business and Message-ID, so the same mail is recorded once; mail
/// without one (rare) is keyed by its content.
fn request_id(business_id: i64, email: &ReceivedEmail) -> String {
    let key = match &email.message_id {
        Some(id) => id.clone(),
        None => format!(
            "{}\n{}\n{:?}\n{:?}\n{}",
            email.from,
            email.received_at.timestamp(),
            email.subject,
            email.text,
            email.to.join(",")
        ),
    };
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("email:{business_id}:{hex}")
}

/// The thread a reply to the conversation's latest email from its client continues: that
/// email's Message-ID, and the References chain ending with it.
pub async fn thread_of(
    db: &impl ConnectionTrait,
    business_id: i64,
    conversation_id: i64,
) -> Result<Option<crate::outbound::EmailThread>> {
    let last = message::Entity::find()
        .filter(message::Column::BusinessId.eq(business_id))
        .filter(message::Column::ConversationId.eq(conversation_id))
        .filter(message::Column::Channel.eq(Channel::Email.as_str()))
        .filter(message::Column::Direction.eq(Direction::Inbound.as_str()))
        .order_by_desc(message::Column::Id)
        .one(db)
        .await?;
    Ok(last.and_then(|m| {
        let email = &m.metadata["email"];
        let id = email["message_id"].as_str()?.to_owned();
        let earlier = email["references"]
            .as_str()
            .or(email["in_reply_to"].as_str())
            .unwrap_or("");
        let references = format!("{earlier} {id}").trim().to_owned();
        Some(crate::outbound::EmailThread {
            in_reply_to: id,
            references,
        })
    }))
}
