//! The sandbox: a provider that follows Twilio's test-number conventions, for the embedded
//! default and tests. Nothing leaves the machine.
use entities::types::MessageStatus;

use super::{Accepted, SendError};

/// The sandbox's verdict on an SMS, by Twilio's test numbers.
pub fn sandbox_sms(to: &str) -> Result<Accepted, SendError> {
    let refuse = |code: &str, message: &str| {
        Err(SendError::Permanent {
            code: code.into(),
            message: message.into(),
        })
    };
    match to {
        "+15005550001" => refuse("21211", "The 'To' number is not a valid phone number."),
        "+15005550002" => refuse("21612", "The 'To' phone number is not currently reachable."),
        "+15005550004" => refuse("21610", "Attempt to send to unsubscribed recipient."),
        "+15005550009" => refuse("21614", "'To' number is not a valid mobile number."),
        _ => Ok(Accepted {
            provider_message_id: format!("SB{}", uuid::Uuid::new_v4().simple()),
            status: MessageStatus::Sent,
        }),
    }
}

/// The sandbox accepts every email; an address at `bounce.example` bounces afterwards.
pub fn sandbox_email(to: &str) -> (Accepted, bool) {
    let bounces = to
        .rsplit_once('@')
        .is_some_and(|(_, domain)| domain.eq_ignore_ascii_case("bounce.example"));
    (
        Accepted {
            provider_message_id: format!("SB{}", uuid::Uuid::new_v4().simple()),
            status: MessageStatus::Sent,
        },
        bounces,
    )
}
