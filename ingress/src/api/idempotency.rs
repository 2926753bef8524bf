//! `Idempotency-Key`: a repeat with the same key and body within 24 h returns the first
//! response and enqueues nothing; the same key with another body is a 409.
use std::future::Future;

use entities::idempotency::{self, Reservation};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

const MAX_KEY_LEN: usize = 255;

/// Runs `accept` once per key within `scope` (who asks, for whom, on which route). Returns its response and whether it was a replay.
pub async fn once<T, Fut>(
    state: &AppState,
    scope: &str,
    key: Option<String>,
    route: &str,
    body_hash: &str,
    accept: impl FnOnce() -> Fut,
) -> Result<(T, bool), ApiError>
where
    T: Serialize + DeserializeOwned,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let Some(key) = key else {
        return accept().await.map(|t| (t, false));
    };
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(ApiError::invalid_at(
            &["header", "Idempotency-Key"],
            format!("ensure this value has 1 to {MAX_KEY_LEN} characters"),
            "value_error",
        ));
    }
    let request_hash = format!("{:x}", Sha256::digest(format!("{route}\n{body_hash}")));
    match idempotency::reserve(&state.db, scope, &key, &request_hash).await? {
        Reservation::Reserved => match accept().await {
            Ok(response) => {
                let body = serde_json::to_string(&response)
                    .map_err(|e| ApiError::internal("encoding a response", e))?;
                if let Err(e) = idempotency::complete(&state.db, scope, &key, 200, &body).await {
                    tracing::error!(error = %e, "could not store an idempotent response; a repeat will answer 409");
                }
                Ok((response, false))
            }
            Err(e) => {
                if let Err(release) = idempotency::release(&state.db, scope, &key).await {
                    tracing::warn!(error = %release, "could not release an idempotency key");
                }
                Err(e)
            }
        },
        Reservation::Replay { body, .. } => {
            let response = serde_json::from_str(&body)
                .map_err(|e| ApiError::internal("decoding a stored response", e))?;
            Ok((response, true))
        }
        Reservation::Mismatch => Err(ApiError::conflict(
            "This Idempotency-Key was used with a different request",
        )),
        Reservation::InProgress => Err(ApiError::conflict(
            "A request with this Idempotency-Key is still being processed",
        )),
    }
}
