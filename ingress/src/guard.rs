//! What every request passes before its handler runs:
//! - the caller is authenticated, and allowed the path's business, before any of the body is
//!   read (a stranger's body is never parsed, whatever its size);
//! - the caller's rate limit for the route's class (429 with `Retry-After`);
//! - deadlines: the body must arrive within the body timeout (408), and the answer must be
//!   ready within the request timeout after that (503 with `Retry-After`), so a hung database
//!   or queue never hangs a client. A handler cut off by the deadline is dropped: its
//!   transaction rolls back and its queue push is never applied (see `jobs::JobQueue::push_by`).
//!
//! Handlers still check what exactly a caller may do; this is the floor under them.
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Body, Endpoint, IntoResponse, Request, Response};
use tokio::sync::oneshot;

use crate::auth::Principal;
use crate::error::{ApiError, from_extractor_error};
use crate::rate_limit::RouteClass;
use crate::state::AppState;

/// The deadlines every request is held to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// From the end of the body (or the headers, without one) to the answer.
    pub request: Duration,
    /// From the headers to the end of the body.
    pub body: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            request: Duration::from_millis(1500),
            body: Duration::from_secs(30),
        }
    }
}

/// How the guard authenticated a request, kept on it so the operation's security scheme does
/// not look the same credential up again.
#[derive(Clone, Debug)]
pub struct Admitted {
    pub principal: Principal,
    pub via: Via,
}

/// Which credential the guard found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    ApiKey,
    Cookie,
    Bearer,
}

/// The principal the guard admitted `req` with, if it came through `via`.
pub fn admitted(req: &Request, via: Via) -> Option<Principal> {
    req.extensions()
        .get::<Admitted>()
        .filter(|a| a.via == via)
        .map(|a| a.principal.clone())
}

/// Who may reach a path at all, decided from the path alone.
#[derive(Debug, PartialEq, Eq)]
enum Gate {
    /// Health, metrics, the API document, and providers' webhooks (signed, checked by their
    /// handlers).
    Public,
    /// Any valid credential.
    Caller,
    /// A credential that may read this business.
    Business(i64),
    /// The platform key.
    Platform,
}

fn gate(path: &str) -> Gate {
    const PUBLIC: [&str; 4] = ["/health", "/health/db", "/metrics", "/openapi.json"];
    const PUBLIC_UNDER: [&str; 5] = [
        "/docs",
        "/twilio/",
        "/email/webhooks/",
        "/email/inbound/",
        "/unsubscribe/",
    ];
    if PUBLIC.contains(&path)
        || path == "/voice-calls/twiml"
        || PUBLIC_UNDER.iter().any(|p| path.starts_with(p))
    {
        return Gate::Public;
    }
    if path.starts_with("/admin/") || path == "/business/onboard" {
        return Gate::Platform;
    }
    let mut segments = path.trim_start_matches('/').split('/');
    match (segments.next(), segments.next()) {
        (Some("businesses" | "business"), Some(id)) => match id.parse() {
            Ok(id) => Gate::Business(id),
            // Not a business id: the route answers 422 (or 404) once the caller is known.
            Err(_) => Gate::Caller,
        },
        _ => Gate::Caller,
    }
}

fn class(method: &Method, path: &str) -> RouteClass {
    if *method == Method::GET || *method == Method::HEAD {
        RouteClass::Read
    } else if path.ends_with("/sms/send")
        || path.ends_with("/email/send")
        || path == "/messages/process"
    {
        RouteClass::Send
    } else {
        RouteClass::Write
    }
}

/// The credential a request carries, looked up in the order the API's security schemes
/// list them: `X-API-KEY`, the `omega_session` cookie, a bearer token.
async fn authenticate(state: &AppState, req: &Request) -> Result<Admitted, ApiError> {
    let credentials = &state.credentials;
    let (found, via) = if let Some(key) = header_text(req, "x-api-key") {
        (credentials.api_key(key).await, Via::ApiKey)
    } else if let Some(token) = session_cookie(req) {
        (credentials.session(token).await, Via::Cookie)
    } else if let Some(token) =
        header_text(req, header::AUTHORIZATION.as_str()).and_then(|v| v.strip_prefix("Bearer "))
    {
        (credentials.session(token.trim()).await, Via::Bearer)
    } else {
        return Err(ApiError::unauthorized());
    };
    found
        .map(|principal| Admitted { principal, via })
        .map_err(from_extractor_error)
}

/// The `omega_session` cookie's value (read from the header: no cookie jar is set up).
fn session_cookie(req: &Request) -> Option<&str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix("omega_session="))
        .map(|v| v.trim_matches('"'))
}

fn header_text<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Lets the request on (with how it was authenticated, where it needed to be) or answers it.
async fn admit(state: &AppState, req: &Request) -> Result<Option<Admitted>, Response> {
    let path = req.uri().path();
    let gate = gate(path);
    // No such route: the router's 404 says so, credentials or not.
    if gate == Gate::Public || !crate::routes::is_known() {
        return Ok(None);
    }
    let admitted = authenticate(state, req)
        .await
        .map_err(IntoResponse::into_response)?;
    let principal = &admitted.principal;
    match gate {
        Gate::Business(id) => principal.can_read(id),
        Gate::Platform => principal.can_administer(),
        _ => Ok(()),
    }
    .map_err(IntoResponse::into_response)?;
    let class = class(req.method(), path);
    let rates = &state.settings.rates;
    let (bucket, rate) = match principal {
        &Principal::Platform { key_id } => (format!("platform:{key_id}"), rates.platform),
        &Principal::Business { business_id, .. } | &Principal::Staff { business_id, .. } => (
            format!("business:{business_id}"),
            match class {
                RouteClass::Send => rates.business_send,
                RouteClass::Write => rates.business_write,
                RouteClass::Read => rates.business_read,
            },
        ),
    };
    let Some(rate) = rate else {
        return Ok(Some(admitted));
    };
    if let Err(wait) = state
        .rate_limiter
        .take(&format!("{bucket}:{}", class.as_str()), rate)
        .await
    {
        metrics::counter!("omega_rate_limited_total", "class" => class.as_str()).increment(1);
        let mut resp = ApiError::too_many_requests(format!(
            "Rate limit for {} requests exceeded; retry after the Retry-After header's seconds",
            class.as_str()
        ))
        .into_response();
        set_retry_after(&mut resp, wait);
        return Err(resp);
    }
    Ok(Some(admitted))
}

/// `Retry-After` in whole seconds, at least 1.
pub fn set_retry_after(resp: &mut Response, wait: Duration) {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
}

/// Whether the request says it carries a body.
fn has_body(req: &Request) -> bool {
    if req.headers().contains_key(header::TRANSFER_ENCODING) {
        return true;
    }
    header_text(req, header::CONTENT_LENGTH.as_str())
        .and_then(|n| n.parse::<u64>().ok())
        .is_some_and(|n| n > 0)
}

/// The body, reporting when it has been read to its end, failed, or been dropped unread.
struct Watched {
    inner: Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>,
    done: Option<oneshot::Sender<()>>,
}

impl Stream for Watched {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.done.take().map(|done| done.send(()));
        }
        polled
    }
}

pub async fn guard<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    let Some(state) = req.data::<Arc<AppState>>().cloned() else {
        return Ok(ApiError::internal("guard", "the app state is missing").into_response());
    };
    let deadlines = state.settings.deadlines;
    match tokio::time::timeout(deadlines.request, admit(&state, &req)).await {
        Ok(Ok(Some(admitted))) => {
            req.extensions_mut().insert(admitted);
        }
        Ok(Ok(None)) => {}
        Ok(Err(refused)) => return Ok(refused),
        Err(_) => return Ok(cut_off(deadlines)),
    }
    let body_read = has_body(&req).then(|| {
        let (done, read) = oneshot::channel();
        let inner = Box::pin(req.take_body().into_bytes_stream());
        req.set_body(Body::from_bytes_stream(Watched {
            inner,
            done: Some(done),
        }));
        read
    });
    let handler = next.call(req);
    tokio::pin!(handler);
    if let Some(read) = body_read {
        tokio::select! {
            answered = &mut handler => return answered.map(IntoResponse::into_response),
            read = tokio::time::timeout(deadlines.body, read) => if read.is_err() {
                metrics::counter!("omega_http_deadline_total", "phase" => "body").increment(1);
                return Ok(ApiError::request_timeout(format!(
                    "The request body did not arrive within {} s",
                    deadlines.body.as_secs()
                ))
                .into_response());
            }
        }
    }
    match tokio::time::timeout(deadlines.request, handler).await {
        Ok(answered) => answered.map(IntoResponse::into_response),
        Err(_) => Ok(cut_off(deadlines)),
    }
}

/// The answer to a request its deadline cut off.
fn cut_off(deadlines: Deadlines) -> Response {
    metrics::counter!("omega_http_deadline_total", "phase" => "answer").increment(1);
    tracing::warn!(
        "request cut off by its deadline ({:?}); a dependency is slow or down",
        deadlines.request
    );
    let mut resp = ApiError::unavailable(
        "The request could not be completed in time (a dependency is slow or down); it was not applied. Retry later",
    )
    .into_response();
    set_retry_after(&mut resp, Duration::from_secs(1));
    resp
}

/// `Retry-After` on every 503 that lacks one: each says the service should be back soon.
pub fn ensure_retry_after(resp: &mut Response) {
    if resp.status() == StatusCode::SERVICE_UNAVAILABLE
        && !resp.headers().contains_key(header::RETRY_AFTER)
    {
        set_retry_after(resp, Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_gated_by_what_they_name() {
        assert_eq!(gate("/health"), Gate::Public);
        assert_eq!(gate("/twilio/sms/incoming"), Gate::Public);
        assert_eq!(gate("/unsubscribe/abc"), Gate::Public);
        assert_eq!(gate("/email/webhooks/sendgrid"), Gate::Public);
        assert_eq!(gate("/email/inbound/postmark"), Gate::Public);
        assert_eq!(gate("/businesses/7/sms/send"), Gate::Business(7));
        assert_eq!(gate("/business/7/onboarding-status"), Gate::Business(7));
        assert_eq!(gate("/businesses/x/sms/send"), Gate::Caller);
        assert_eq!(gate("/business/onboard"), Gate::Platform);
        assert_eq!(gate("/admin/queues"), Gate::Platform);
        assert_eq!(gate("/messages/process"), Gate::Caller);
        assert_eq!(gate("/nowhere"), Gate::Caller);
    }

    #[test]
    fn routes_are_classed_by_cost() {
        assert_eq!(
            class(&Method::POST, "/businesses/1/sms/send"),
            RouteClass::Send
        );
        assert_eq!(class(&Method::POST, "/messages/process"), RouteClass::Send);
        assert_eq!(
            class(&Method::POST, "/businesses/1/sms/record"),
            RouteClass::Write
        );
        assert_eq!(
            class(&Method::GET, "/businesses/1/conversations"),
            RouteClass::Read
        );
    }
}
