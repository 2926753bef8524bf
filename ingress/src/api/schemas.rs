//! Response schemas shared by several operations.
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use serde::{Deserialize, Serialize};

/// A request's jobs were queued.
#[derive(Clone, Debug, Object, Serialize, Deserialize)]
pub struct SuccessResponse {
    pub success: bool,
    pub message: String,
    /// Identifies the request's messages: `GET …/messages/requests/{request_id}`.
    pub request_id: String,
    pub accepted: u32,
}

#[derive(ApiResponse)]
pub enum QueuedResponse {
    /// Accepted and queued. `Idempotency-Replayed: true` when this is the stored answer to an
    /// earlier request with the same Idempotency-Key.
    #[oai(status = 200)]
    Ok(
        Json<SuccessResponse>,
        #[oai(header = "Idempotency-Replayed")] Option<String>,
    ),
}

impl QueuedResponse {
    pub fn new(response: SuccessResponse, replayed: bool) -> Self {
        QueuedResponse::Ok(Json(response), replayed.then(|| "true".to_owned()))
    }
}

pub use entities::message_item::{MessageEvent, MessageItem};
