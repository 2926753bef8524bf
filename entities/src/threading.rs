//! How a client's reply to an email finds its conversation without a table: omega's
//! outbound email carries a `Message-ID` and (when omega receives mail for a domain) a
//! `Reply-To` address that name the message or conversation with a MAC under a key of their
//! own (from `OMEGA_SECRET_KEY`). A reply's `In-Reply-To`/`References` or recipient address
//! then names them back, and nobody can make up one that names another conversation.
//!
//! Both are lower-case hex and dots, since mail systems may fold the case of local parts.
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Hex digits of the MAC kept: 80 bits.
const MAC_HEX: usize = 20;
/// The local part of reply addresses starts so: `reply+<business>.<conversation>.<mac>`.
pub const REPLY_PREFIX: &str = "reply+";

#[derive(Clone)]
pub struct Threading {
    key: [u8; 32],
}

impl std::fmt::Debug for Threading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Threading(<key>)")
    }
}

impl Threading {
    /// `secret` is the service's secret key.
    pub fn new(secret: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(secret);
        h.update(b"\0omega:email-threading");
        Threading {
            key: h.finalize().into(),
        }
    }

    fn mac(&self, what: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(what.as_bytes());
        let mut hex = hex_of(&mac.finalize().into_bytes());
        hex.truncate(MAC_HEX);
        hex
    }

    /// The address replies to a conversation's email go to, at omega's inbound domain.
    pub fn reply_address(&self, business_id: i64, conversation_id: i64, domain: &str) -> String {
        let named = format!("{business_id}.{conversation_id}");
        let mac = self.mac(&format!("reply:{named}"));
        format!("{REPLY_PREFIX}{named}.{mac}@{domain}")
    }

    /// The (business, conversation) a reply address names, if omega issued it.
    pub fn conversation_of(&self, address: &str) -> Option<(i64, i64)> {
        let local = address.trim().rsplit_once('@')?.0.to_ascii_lowercase();
        let rest = local.strip_prefix(REPLY_PREFIX)?;
        let mut parts = rest.splitn(3, '.');
        let (b, c, mac) = (parts.next()?, parts.next()?, parts.next()?);
        let named = format!("{b}.{c}");
        if !constant_time_eq(
            self.mac(&format!("reply:{named}")).as_bytes(),
            mac.as_bytes(),
        ) {
            return None;
        }
        Some((b.parse().ok()?, c.parse().ok()?))
    }

    /// The `Message-ID` of omega's message `message_id`, on the sender's domain.
    pub fn message_id(&self, message_id: i64, domain: &str) -> String {
        let mac = self.mac(&format!("message:{message_id}"));
        format!("<omega.{message_id}.{mac}@{domain}>")
    }

    /// omega's message a `Message-ID` names, if omega issued it.
    pub fn message_of(&self, header_id: &str) -> Option<i64> {
        let inner = header_id
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>');
        let local = inner.rsplit_once('@')?.0.to_ascii_lowercase();
        let rest = local.strip_prefix("omega.")?;
        let (id, mac) = rest.split_once('.')?;
        let expected = self.mac(&format!("message:{id}"));
        constant_time_eq(expected.as_bytes(), mac.as_bytes())
            .then(|| id.parse().ok())
            .flatten()
    }
}

/// The message ids a header lists (`In-Reply-To`, `References`): each `<…>`, newest last.
pub fn ids_in(header: &str) -> Vec<&str> {
    header
        .split('<')
        .skip(1)
        .filter_map(|s| s.split_once('>').map(|(id, _)| id.trim()))
        .filter(|id| !id.is_empty())
        .collect()
}

/// The domain of an address (`desk@spa.example` → `spa.example`).
pub fn domain_of(address: &str) -> Option<&str> {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('>'))
        .filter(|d| !d.is_empty())
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_addresses_name_their_conversation_and_cannot_be_made_up() {
        let t = Threading::new(b"0123456789abcdef0123456789abcdef");
        let addr = t.reply_address(7, 1234, "in.omega.example");
        assert!(addr.len() < 64 + 17, "{addr}");
        assert_eq!(t.conversation_of(&addr), Some((7, 1234)));
        assert_eq!(t.conversation_of(&addr.to_uppercase()), Some((7, 1234)));
        let forged = addr.replace("7.1234.", "8.1234.");
        assert_eq!(t.conversation_of(&forged), None);
        let other = Threading::new(b"another key, another deployment!");
        assert_eq!(other.conversation_of(&addr), None);
        assert_eq!(t.conversation_of("desk@spa.example"), None);
    }

    #[test]
    fn message_ids_round_trip() {
        let t = Threading::new(b"0123456789abcdef0123456789abcdef");
        let id = t.message_id(42, "spa.example");
        assert!(id.starts_with("<omega.42.") && id.ends_with("@spa.example>"));
        assert_eq!(t.message_of(&id), Some(42));
        assert_eq!(t.message_of(&id.replace("omega.42.", "omega.43.")), None);
        let refs = format!("<a@x> {id}\r\n <b@y>");
        assert_eq!(ids_in(&refs).len(), 3);
        assert_eq!(t.message_of(&format!("<{}>", ids_in(&refs)[1])), Some(42));
    }
}
