//! Sealing small secrets (provider credentials) with the service's secret key:
//! XChaCha20-Poly1305 with a random nonce, keyed by SHA-256 of `OMEGA_SECRET_KEY`.
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

const NONCE: usize = 24;

#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<key>)")
    }
}

impl Sealer {
    /// `secret` is the configured key (32 bytes or more).
    pub fn new(secret: &[u8]) -> Self {
        let key = Sha256::digest(secret);
        Sealer {
            cipher: XChaCha20Poly1305::new(&key),
        }
    }

    /// A key of its own for one purpose (another kind of token than credentials), derived
    /// from the same configured secret.
    pub fn for_purpose(secret: &[u8], purpose: &str) -> Self {
        let mut keyed = secret.to_vec();
        keyed.extend(b"\0omega:");
        keyed.extend(purpose.as_bytes());
        Sealer::new(&keyed)
    }

    pub fn seal(&self, plain: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.seal_bytes(plain))
    }

    /// The nonce followed by the ciphertext and its tag.
    pub fn seal_bytes(&self, plain: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(&nonce, plain)
            .expect("encryption of a small buffer cannot fail");
        let mut out = nonce.to_vec();
        out.extend(sealed);
        out
    }

    pub fn open(&self, sealed: &str) -> Result<Vec<u8>> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| Error::Corrupt("sealed secret is not base64".into()))?;
        self.open_bytes(&raw)
    }

    pub fn open_bytes(&self, raw: &[u8]) -> Result<Vec<u8>> {
        if raw.len() <= NONCE {
            return Err(Error::Corrupt("sealed secret is too short".into()));
        }
        let (nonce, body) = raw.split_at(NONCE);
        let nonce: [u8; NONCE] = nonce.try_into().expect("split at the nonce length");
        self.cipher
            .decrypt(&XNonce::from(nonce), body)
            .map_err(|_| Error::Corrupt("sealed secret does not open with this key".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_and_refuses_other_keys() {
        let a = Sealer::new(&[7u8; 32]);
        let sealed = a.seal(b"auth-token-123");
        assert!(!sealed.contains("auth-token"));
        assert_ne!(sealed, a.seal(b"auth-token-123"), "a fresh nonce each time");
        assert_eq!(a.open(&sealed).unwrap(), b"auth-token-123");
        assert!(Sealer::new(&[8u8; 32]).open(&sealed).is_err());
        let mut tampered = base64::engine::general_purpose::STANDARD
            .decode(&sealed)
            .unwrap();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(
            a.open(&base64::engine::general_purpose::STANDARD.encode(tampered))
                .is_err()
        );
        assert!(a.open("not base64!").is_err());
    }
}
