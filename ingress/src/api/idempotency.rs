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
/// How long an accepted request waits for its answer to be stored before answering anyway.
const COMPLETE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

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
    match idempotency::reserve(&state.db, scope, &key, &request_hash, chrono::Utc::now()).await? {
        Reservation::Reserved => match accept().await {
            Ok(response) => {
                let body = serde_json::to_string(&response)
                    .map_err(|e| ApiError::internal("encoding a response", e))?;
                // The request is accepted: its answer must not wait long on the database (the
                // deadline would turn it into a 503 for work that was queued), so the record
                // is completed by a task of its own, waited for only briefly.
                let done = tokio::spawn(complete(state.db.clone(), scope.to_owned(), key, body));
                let _ = tokio::time::timeout(COMPLETE_WAIT, done).await;
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

/// Stores an accepted request's answer for its repeats, retrying a failing database for a
/// while; until it lands, a repeat answers 409 "still being processed".
async fn complete(db: sea_orm::DatabaseConnection, scope: String, key: String, body: String) {
    let mut delay = std::time::Duration::from_millis(100);
    for _ in 0..10 {
        match idempotency::complete(&db, &scope, &key, 200, &body).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "could not store an idempotent response yet; retrying")
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_secs(10));
    }
    tracing::error!(
        "could not store an idempotent response; a repeat answers 409 until the reservation is abandoned"
    );
}
