//! Inbound messages: SMS replies from Twilio and messages of any channel handed to
//! `/messages/process`, each recorded once into its client's conversation. An unknown sender
//! becomes a `lead`. SMS opt-out keywords record the client's consent in the same
//! transaction as the message.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::calls::find_or_create_by_address;
use crate::clients::set_consent;
use crate::record::{RecordBatch, RecordItem, record_one};
use crate::settings::MessagingSettings;
use crate::types::{Channel, Direction, MessageStatus, Provider, UserType};

/// One media item of an MMS, kept as an attachment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Media {
    pub url: String,
    pub content_type: Option<String>,
}

/// An SMS a client sent to a location's number.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InboundSms {
    pub business_id: i64,
    pub location_id: i64,
    pub message_sid: String,
    /// The client's number (E.164).
    pub from: String,
    /// The location's number (E.164).
    pub to: String,
    pub body: String,
    pub media: Vec<Media>,
    pub received_at: DateTime<Utc>,
    /// Every parameter Twilio sent, kept with the message.
    pub params: serde_json::Value,
}

/// What an inbound SMS asks of its consent (Twilio's standard keywords).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keyword {
    OptOut,
    OptIn,
    Help,
}

/// The keyword a message body is, if it is one of the business's: the whole message, any
/// case, spaces and punctuation around it ignored (as Twilio matches them).
pub fn keyword(body: &str, settings: &MessagingSettings) -> Option<(Keyword, String)> {
    let word = crate::settings::keyword_form(body);
    let kind = if settings.opt_out_keywords.contains(&word) {
        Keyword::OptOut
    } else if settings.opt_in_keywords.contains(&word) {
        Keyword::OptIn
    } else if settings.help_keywords.contains(&word) {
        Keyword::Help
    } else {
        return None;
    };
    Some((kind, word))
}

#[derive(Debug)]
pub struct Received {
    /// False when the message had been recorded before (a provider retry, a job re-run).
    pub recorded: bool,
    pub keyword: Option<Keyword>,
    /// The answer to a HELP text, recorded and to be queued (`help::answer`).
    pub help_answer: Option<crate::outbound::SendJob>,
}

/// Records an inbound SMS (and the consent its keyword asks for) in one transaction.
pub async fn receive_sms(db: &sea_orm::DatabaseConnection, sms: &InboundSms) -> Result<Received> {
    let txn = crate::db::begin_write(db).await?;
    let client = find_or_create_by_address(
        &txn,
        sms.business_id,
        Channel::Sms,
        &sms.from,
        Some(sms.location_id),
    )
    .await?;
    let batch = RecordBatch {
        business_id: sms.business_id,
        request_id: format!("twilio:{}", sms.message_sid),
        channel: Channel::Sms,
        direction: Direction::Inbound,
        category: None,
        notification_type: None,
        staff_id: None,
        provider: Some(Provider::Twilio),
        sent_by: None,
        sender_type: UserType::Client,
        sent_at: Some(sms.received_at),
        location_id: Some(sms.location_id),
        items: vec![],
    };
    let item = RecordItem {
        message_id: None,
        client_id: client.id,
        wl_user_id: None,
        from: Some(sms.from.clone()),
        to: sms.to.clone(),
        subject: None,
        body: sms.body.clone(),
        cc: vec![],
        bcc: vec![],
        attachments: serde_json::json!(sms.media),
        status: MessageStatus::Received,
        provider_message_id: Some(sms.message_sid.clone()),
        metadata: serde_json::json!({ "twilio": sms.params }),
        scheduled_at: None,
    };
    let recorded = record_one(&txn, &batch, 0, &item, Utc::now()).await?;
    let settings = crate::settings::get(&txn, sms.business_id).await?;
    let keyword = keyword(&sms.body, &settings);
    if recorded && let Some((kind @ (Keyword::OptOut | Keyword::OptIn), word)) = &keyword {
        let opt_in = *kind == Keyword::OptIn;
        let reason = format!("replied {word}");
        set_consent(
            &txn,
            sms.business_id,
            client.id,
            Channel::Sms,
            Some(&sms.from),
            opt_in,
            sms.received_at,
            &reason,
        )
        .await?;
    }
    let help_answer = match &keyword {
        Some((Keyword::Help, _)) => {
            let asked = crate::help::Asked {
                business_id: sms.business_id,
                location_id: sms.location_id,
                client_id: client.id,
                message_sid: &sms.message_sid,
                from: &sms.from,
                to: &sms.to,
            };
            crate::help::answer(&txn, &asked, &settings, Utc::now()).await?
        }
        _ => None,
    };
    txn.commit().await?;
    Ok(Received {
        recorded,
        keyword: keyword.map(|(k, _)| k),
        help_answer,
    })
}

/// A message of any channel and direction to record (`POST /messages/process`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcessedMessage {
    pub request_id: String,
    pub business_id: i64,
    pub channel: Channel,
    pub direction: Direction,
    /// The client, when the caller knows it; else found (or created as a lead) by address.
    pub client_id: Option<i64>,
    pub location_id: Option<i64>,
    pub from: String,
    pub to: String,
    pub subject: Option<String>,
    pub body: String,
    pub provider: Provider,
    pub provider_message_id: Option<String>,
    pub sender_type: UserType,
    pub status: MessageStatus,
    pub sent_at: Option<DateTime<Utc>>,
    pub metadata: serde_json::Value,
}

/// Records the message into its client's conversation; false when recorded before.
pub async fn process_message(
    db: &sea_orm::DatabaseConnection,
    m: &ProcessedMessage,
) -> Result<bool> {
    let txn = crate::db::begin_write(db).await?;
    let client_id = match m.client_id {
        Some(id) => id,
        None => {
            let address = match m.direction {
                Direction::Inbound => &m.from,
                Direction::Outbound => &m.to,
            };
            find_or_create_by_address(&txn, m.business_id, m.channel, address, m.location_id)
                .await?
                .id
        }
    };
    let batch = RecordBatch {
        business_id: m.business_id,
        request_id: m.request_id.clone(),
        channel: m.channel,
        direction: m.direction,
        category: None,
        notification_type: None,
        staff_id: None,
        provider: Some(m.provider),
        sent_by: None,
        sender_type: m.sender_type,
        sent_at: m.sent_at,
        location_id: m.location_id,
        items: vec![],
    };
    let item = RecordItem {
        message_id: None,
        client_id,
        wl_user_id: None,
        from: Some(m.from.clone()),
        to: m.to.clone(),
        subject: m.subject.clone(),
        body: m.body.clone(),
        cc: vec![],
        bcc: vec![],
        attachments: serde_json::json!([]),
        status: m.status,
        provider_message_id: m.provider_message_id.clone(),
        metadata: m.metadata.clone(),
        scheduled_at: None,
    };
    let recorded = record_one(&txn, &batch, 0, &item, Utc::now()).await?;
    txn.commit().await?;
    Ok(recorded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyword(body: &str) -> Option<(Keyword, String)> {
        super::keyword(body, &MessagingSettings::default())
    }

    #[test]
    fn keywords_are_whole_messages_in_any_case() {
        assert_eq!(keyword("  stop "), Some((Keyword::OptOut, "STOP".into())));
        assert_eq!(keyword("Stop."), Some((Keyword::OptOut, "STOP".into())));
        assert_eq!(
            keyword("!revoke!"),
            Some((Keyword::OptOut, "REVOKE".into()))
        );
        assert_eq!(
            keyword("Unsubscribe"),
            Some((Keyword::OptOut, "UNSUBSCRIBE".into()))
        );
        assert_eq!(keyword("quit\n"), Some((Keyword::OptOut, "QUIT".into())));
        assert_eq!(keyword("unstop"), Some((Keyword::OptIn, "UNSTOP".into())));
        assert_eq!(keyword("yes"), Some((Keyword::OptIn, "YES".into())));
        assert_eq!(keyword("HELP"), Some((Keyword::Help, "HELP".into())));
        assert_eq!(keyword("please stop texting me"), None);
        assert_eq!(keyword("stopp"), None);
        assert_eq!(keyword(""), None);
    }

    #[test]
    fn a_business_has_its_own_keywords() {
        let mut own = MessagingSettings::default();
        own.opt_out_keywords = vec!["ARRET".into()];
        own.opt_in_keywords = vec!["REPRENDRE".into()];
        assert_eq!(
            super::keyword("arrêt", &own),
            None,
            "matched as written, not folded"
        );
        assert_eq!(
            super::keyword("Arret", &own),
            Some((Keyword::OptOut, "ARRET".into()))
        );
        assert_eq!(super::keyword("stop", &own), None);
        assert_eq!(
            super::keyword("reprendre", &own),
            Some((Keyword::OptIn, "REPRENDRE".into()))
        );
    }
}
