//! The one path of every route that queues work: check the caller's access, honour the
//! Idempotency-Key, push the jobs, answer. A route only says what it queues and what it
//! answers.
use std::future::Future;
use std::pin::Pin;

use jobs::Job;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::idempotency;
use super::schemas::{QueuedResponse, SuccessResponse};
use crate::RequestId;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;

/// Whose work a request queues, which decides who may submit it.
#[derive(Clone, Copy, Debug)]
pub enum Owner {
    /// One business's: the platform key or that business's key, and the business exists.
    Business(i64),
    /// The platform's (onboarding): the platform key only.
    Platform,
    /// One business's inbox (a staff reply): whoever may work it, staff sessions too.
    Inbox(i64),
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Business(id) | Owner::Inbox(id) => write!(f, "business:{id}"),
            Owner::Platform => f.write_str("platform"),
        }
    }
}

/// One request to queue work: whose it is and how to recognise a repeat of it.
pub struct Submission<'a> {
    pub owner: Owner,
    pub idempotency_key: Option<String>,
    /// Names the route in the Idempotency-Key's scope.
    pub route: &'static str,
    pub body_hash: String,
    pub trace: &'a RequestId,
}

/// What undoes a route's preparation when its jobs could not be queued.
pub type Undo = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The work of one request: its jobs and the answer the client gets once they are queued.
pub struct Work<R> {
    pub jobs: Vec<Job>,
    pub response: R,
    /// Run when the push fails, after the preparation wrote something (onboarding's run row).
    pub undo: Option<Undo>,
}

impl<R> Work<R> {
    pub fn new(jobs: Vec<Job>, response: R) -> Self {
        Work {
            jobs,
            response,
            undo: None,
        }
    }
}

/// Checks access, then queues the work `prepare` makes for a new request id, once per
/// Idempotency-Key. Returns the answer and whether it is a replay of an earlier one.
pub async fn enqueue<R, Fut>(
    state: &AppState,
    auth: &Auth,
    sub: Submission<'_>,
    prepare: impl FnOnce(String) -> Fut,
) -> Result<(R, bool), ApiError>
where
    R: Serialize + DeserializeOwned,
    Fut: Future<Output = Result<Work<R>, ApiError>>,
{
    match sub.owner {
        Owner::Business(business_id) => {
            auth.principal().can_write(business_id)?;
            state.require_business_exists(business_id).await?;
        }
        Owner::Platform => auth.principal().can_administer()?,
        Owner::Inbox(business_id) => {
            auth.principal().can_work_inbox(business_id)?;
            state.require_business_exists(business_id).await?;
        }
    }
    let trace = sub.trace;
    // A key names one request of one caller, for one business, on one route: the same key
    // elsewhere is another request.
    let scope = format!("{}|{}|{}", auth.principal().scope(), sub.owner, sub.route);
    idempotency::once(
        state,
        &scope,
        sub.idempotency_key,
        sub.route,
        &sub.body_hash,
        || async {
            let request_id = uuid::Uuid::new_v4().to_string();
            let work = prepare(request_id.clone()).await?;
            if let Err(e) = state
                .producer
                .enqueue(&work.jobs, &request_id, Some(&trace.0))
                .await
            {
                if let Some(undo) = work.undo {
                    undo.await;
                }
                return Err(e.into());
            }
            Ok(work.response)
        },
    )
    .await
}

/// The contract's answer to queued messages: "N messages queued" and the request id.
pub fn queued(request_id: String, accepted: usize) -> SuccessResponse {
    SuccessResponse {
        success: true,
        message: format!(
            "{accepted} message{} queued",
            if accepted == 1 { "" } else { "s" }
        ),
        request_id,
        accepted: accepted as u32,
    }
}

/// Queues a request's messages; the answer is the contract's `SuccessResponse` ("N messages
/// queued" and the request id), 200 or replayed.
pub async fn enqueue_messages(
    state: &AppState,
    auth: &Auth,
    sub: Submission<'_>,
    accepted: usize,
    make_jobs: impl FnOnce(&str) -> Vec<Job>,
) -> Result<QueuedResponse, ApiError> {
    let (response, replayed) = enqueue(state, auth, sub, |request_id| async move {
        let jobs = make_jobs(&request_id);
        Ok(Work::new(jobs, queued(request_id, accepted)))
    })
    .await?;
    Ok(QueuedResponse::new(response, replayed))
}
