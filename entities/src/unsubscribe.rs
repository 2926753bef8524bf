//! One-click unsubscribe (RFC 8058): the token a campaign or automated email carries in its
//! `List-Unsubscribe` URL, and what following it does.
//!
//! The token is the business, client and address sealed with a key of its own
//! (XChaCha20-Poly1305, from `OMEGA_SECRET_KEY`): unguessable, unforgeable, and it does not
//! show the address to whoever sees the URL (logs, link scanners). It needs no table, so an
//! email sent years ago still unsubscribes.
use base64::Engine;
use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, EntityTrait};

use crate::secrets::Sealer;
use crate::types::Channel;
use crate::{Result, business, client};

/// The reason an unsubscribe is recorded with, in consent and in the client's details.
pub const REASON: &str = "unsubscribed (one-click link)";

/// Who an unsubscribe link is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    pub business_id: i64,
    pub client_id: i64,
    /// The address the email went to.
    pub address: String,
}

/// Issues and opens unsubscribe tokens.
#[derive(Clone, Debug)]
pub struct Tokens {
    sealer: Sealer,
}

/// Tokens are URL path segments.
const ENCODING: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

impl Tokens {
    /// `secret` is the service's secret key.
    pub fn new(secret: &[u8]) -> Self {
        Tokens {
            sealer: Sealer::for_purpose(secret, "unsubscribe"),
        }
    }

    pub fn issue(&self, s: &Subscriber) -> String {
        let plain = format!("{}.{}.{}", s.business_id, s.client_id, s.address);
        ENCODING.encode(self.sealer.seal_bytes(plain.as_bytes()))
    }

    /// The subscriber a token names; `None` for anything this service did not issue.
    pub fn open(&self, token: &str) -> Option<Subscriber> {
        let raw = ENCODING.decode(token).ok()?;
        let plain = String::from_utf8(self.sealer.open_bytes(&raw).ok()?).ok()?;
        let mut parts = plain.splitn(3, '.');
        Some(Subscriber {
            business_id: parts.next()?.parse().ok()?,
            client_id: parts.next()?.parse().ok()?,
            address: parts.next()?.to_owned(),
        })
    }
}

/// What the confirmation page shows: the business's name, and whether the address is
/// already opted out of its email. `None` when the business is gone.
pub async fn describe(db: &DatabaseConnection, who: &Subscriber) -> Result<Option<(String, bool)>> {
    let Some(business) = business::Entity::find_by_id(who.business_id)
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let kept = [(
        "email",
        crate::consent::normalized(Channel::Email, &who.address),
    )];
    let opted_out = crate::consent::of_kept(db, who.business_id, &kept)
        .await?
        .iter()
        .any(|c| c.opted_out);
    Ok(Some((business.name, opted_out)))
}

/// Opts the address out of the business's email, in one transaction, the way a bounce does:
/// the address's consent (so every client row with it is refused) and the client's, when
/// the client still has that address. Idempotent: the first opt-out's time is kept.
/// `false` when the business is gone (the link names nothing left to unsubscribe from).
pub async fn unsubscribe(
    db: &DatabaseConnection,
    who: &Subscriber,
    at: DateTime<Utc>,
) -> Result<bool> {
    let txn = crate::db::begin_write(db).await?;
    if business::Entity::find_by_id(who.business_id)
        .one(&txn)
        .await?
        .is_none()
    {
        return Ok(false);
    }
    crate::consent::record(
        &txn,
        who.business_id,
        who.client_id,
        Channel::Email,
        &who.address,
        false,
        at,
        REASON,
    )
    .await?;
    let address = crate::consent::normalized(Channel::Email, &who.address);
    let holds_address = client::Entity::find_by_id((who.business_id, who.client_id))
        .one(&txn)
        .await?
        .and_then(|c| c.email)
        .is_some_and(|e| crate::consent::normalized(Channel::Email, &e) == address);
    if holds_address {
        crate::clients::set_consent(
            &txn,
            who.business_id,
            who.client_id,
            Channel::Email,
            None,
            false,
            at,
            REASON,
        )
        .await?;
    }
    txn.commit().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_subscriber_and_nothing_else_opens() {
        let tokens = Tokens::new(&[3u8; 32]);
        let who = Subscriber {
            business_id: 7,
            client_id: 42,
            address: "Grace.Hopper+spa@example.com".into(),
        };
        let token = tokens.issue(&who);
        assert!(!token.contains("example"), "the address is not readable");
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "a path segment as it is"
        );
        assert_eq!(tokens.open(&token), Some(who.clone()));
        assert_ne!(tokens.issue(&who), token, "a fresh nonce each time");
        // Another key, a changed character, a cut token, garbage: nothing.
        assert_eq!(Tokens::new(&[4u8; 32]).open(&token), None);
        let mut changed = token.clone().into_bytes();
        changed[30] = if changed[30] == b'A' { b'B' } else { b'A' };
        assert_eq!(tokens.open(&String::from_utf8(changed).unwrap()), None);
        assert_eq!(tokens.open(&token[..token.len() - 2]), None);
        assert_eq!(tokens.open("not-a-token"), None);
        assert_eq!(tokens.open(""), None);
        // A credential sealed with the same secret is not an unsubscribe token.
        let credential = Sealer::new(&[3u8; 32]).seal_bytes(b"7.42.a@example.com");
        assert_eq!(tokens.open(&ENCODING.encode(credential)), None);
    }
}
