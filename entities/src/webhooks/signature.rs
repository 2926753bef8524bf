//! Standard Webhooks signatures (standardwebhooks.com): `v1,` + base64 of HMAC-SHA256 over
//! `{webhook-id}.{webhook-timestamp}.{body}`, keyed with the secret's decoded bytes. Secrets
//! are `whsec_` + base64 of random bytes, so receivers can use any Standard Webhooks (or
//! Svix) library to verify what omega sends.
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::{Error, Result};

const PREFIX: &str = "whsec_";
/// The spec asks for 24 to 64 bytes.
const SECRET_BYTES: usize = 32;

/// A webhook endpoint's signing secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<hidden>)")
    }
}

impl Secret {
    pub fn generate() -> Secret {
        let mut bytes = vec![0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Secret(bytes)
    }

    /// `whsec_…`, as the endpoint's owner is shown it (once).
    pub fn to_text(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.0))
    }

    pub fn parse(text: &str) -> Result<Secret> {
        let encoded = text.strip_prefix(PREFIX).unwrap_or(text);
        STANDARD
            .decode(encoded)
            .map(Secret)
            .map_err(|_| Error::Corrupt("a webhook secret is not base64".into()))
    }

    /// The `webhook-signature` header of one attempt.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's published test vector (also in every reference library's tests):
    /// reproducing it is what says a receiver's library will accept omega's signatures.
    #[test]
    fn the_published_test_vector_reproduces() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            secret.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn generated_secrets_round_trip_and_differ() {
        let (a, b) = (Secret::generate(), Secret::generate());
        assert_ne!(a, b);
        assert!(a.to_text().starts_with("whsec_"));
        assert_eq!(Secret::parse(&a.to_text()).unwrap(), a);
        assert!(Secret::parse("whsec_not base64!").is_err());
    }
}
