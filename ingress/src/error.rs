//! The one mapping from failures to HTTP responses. Validation failures answer 422 in
//! FastAPI's `HTTPValidationError` shape; everything else `{"detail": "<sentence>"}`.
//! Internal errors are logged with their context and answered as a bare 500.
use poem::http::StatusCode;
use poem::{Endpoint, IntoResponse, Request, Response};
use poem_openapi::error::{
    AuthorizationError, ContentTypeError, ParseParamError, ParsePathError, ParseRequestPayloadError,
};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use serde::{Deserialize, Serialize};

/// One validation problem: where (`loc`), what (`msg`), and its kind (`type`).
#[derive(Clone, Debug, Object, Serialize, Deserialize, PartialEq)]
#[oai(rename = "ValidationError")]
pub struct FieldError {
    /// Path to the offending value: `body`, `path`, `query` or `header`, then keys and indexes.
    pub loc: Vec<serde_json::Value>,
    pub msg: String,
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Clone, Debug, Object, Serialize, Deserialize)]
#[oai(rename = "HTTPValidationError")]
pub struct HttpValidationError {
    pub detail: Vec<FieldError>,
}

#[derive(Clone, Debug, Object, Serialize, Deserialize)]
#[oai(rename = "ErrorDetail")]
pub struct ErrorDetail {
    pub detail: String,
}

/// Raised by the body extractor when a request body fails validation.
#[derive(Debug, thiserror::Error)]
#[error("request validation failed")]
pub struct ValidationFailed(pub Vec<FieldError>);

impl poem::error::ResponseError for ValidationFailed {
    fn status(&self) -> StatusCode {
        StatusCode::UNPROCESSABLE_ENTITY
    }
}

/// Raised by the body extractor for a body over its limit.
#[derive(Debug, thiserror::Error)]
#[error("request body is larger than {0} bytes")]
pub struct BodyTooLarge(pub usize);

impl poem::error::ResponseError for BodyTooLarge {
    fn status(&self) -> StatusCode {
        StatusCode::PAYLOAD_TOO_LARGE
    }
}

/// Raised by authentication when credentials are present and valid but not enough.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Forbidden(pub String);

impl poem::error::ResponseError for Forbidden {
    fn status(&self) -> StatusCode {
        StatusCode::FORBIDDEN
    }
}

/// Raised by authentication when the credential store cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("credential check unavailable")]
pub struct AuthUnavailable;

impl poem::error::ResponseError for AuthUnavailable {
    fn status(&self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "from_extractor_error")]
pub enum ApiError {
    /// No or bad credentials.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorDetail>),
    /// Credentials valid, but not for this resource; or a bad webhook signature.
    #[oai(status = 403)]
    Forbidden(Json<ErrorDetail>),
    #[oai(status = 404)]
    NotFound(Json<ErrorDetail>),
    /// The request body did not arrive in time.
    #[oai(status = 408)]
    RequestTimeout(Json<ErrorDetail>),
    /// Conflict, e.g. an Idempotency-Key reused with another body.
    #[oai(status = 409)]
    Conflict(Json<ErrorDetail>),
    #[oai(status = 413)]
    TooLarge(Json<ErrorDetail>),
    /// The request is malformed.
    #[oai(status = 422)]
    Validation(Json<HttpValidationError>),
    /// The caller's rate limit is exceeded; `Retry-After` says when to come back.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorDetail>),
    /// The queue or the database is unavailable: the request was not accepted; retry later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorDetail>),
    #[oai(status = 500)]
    Internal(Json<ErrorDetail>),
}

fn detail(text: impl Into<String>) -> Json<ErrorDetail> {
    Json(ErrorDetail {
        detail: text.into(),
    })
}

impl ApiError {
    pub fn unauthorized() -> Self {
        ApiError::Unauthorized(detail("Missing or invalid credentials"))
    }
    pub fn forbidden(text: impl Into<String>) -> Self {
        ApiError::Forbidden(detail(text))
    }
    pub fn not_found(text: impl Into<String>) -> Self {
        ApiError::NotFound(detail(text))
    }
    pub fn conflict(text: impl Into<String>) -> Self {
        ApiError::Conflict(detail(text))
    }
    pub fn request_timeout(text: impl Into<String>) -> Self {
        ApiError::RequestTimeout(detail(text))
    }
    pub fn too_many_requests(text: impl Into<String>) -> Self {
        ApiError::TooManyRequests(detail(text))
    }
    pub fn unavailable(text: impl Into<String>) -> Self {
        ApiError::Unavailable(detail(text))
    }
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        ApiError::Validation(Json(HttpValidationError { detail: errors }))
    }
    /// One validation error at `loc`.
    pub fn invalid_at(loc: &[&str], msg: impl Into<String>, kind: &str) -> Self {
        ApiError::invalid(vec![FieldError {
            loc: loc.iter().map(|s| serde_json::Value::from(*s)).collect(),
            msg: msg.into(),
            kind: kind.into(),
        }])
    }
    /// Logs the cause with its context; the client learns nothing of it.
    pub fn internal(context: &str, cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "{context}");
        ApiError::Internal(detail("Internal Server Error"))
    }
}

impl From<entities::Error> for ApiError {
    fn from(e: entities::Error) -> Self {
        match e {
            entities::Error::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            entities::Error::Conflict(what) => ApiError::conflict(what),
            entities::Error::Invalid(what) => ApiError::invalid_at(&["body"], what, "value_error"),
            entities::Error::Db(db) => {
                tracing::error!(error = %db, "database unavailable");
                ApiError::unavailable("The database is unavailable; the request was not accepted")
            }
            other => ApiError::internal("data layer failure", other),
        }
    }
}

impl From<jobs::QueueError> for ApiError {
    fn from(e: jobs::QueueError) -> Self {
        tracing::error!(error = %e, "queue unavailable");
        ApiError::unavailable("The queue is unavailable; the request was not accepted")
    }
}

impl From<jobs::ops::OpsError> for ApiError {
    fn from(e: jobs::ops::OpsError) -> Self {
        match e {
            jobs::ops::OpsError::Data(e) => e.into(),
            jobs::ops::OpsError::Queue(e) => e.into(),
        }
    }
}

/// Where a failed parameter came from, for `loc`: header names carry dashes.
fn param_location(name: &str) -> &'static str {
    if name.contains('-') {
        "header"
    } else {
        "query"
    }
}

/// Converts what poem and poem-openapi raise while extracting a request into the contract's
/// shapes. Used by every operation (bad_request_handler) and by the app-wide error catcher.
pub fn from_extractor_error(err: poem::Error) -> ApiError {
    if let Some(v) = err.downcast_ref::<ValidationFailed>() {
        return ApiError::invalid(v.0.clone());
    }
    if let Some(e) = err.downcast_ref::<ParsePathError>() {
        let name = e
            .name
            .strip_prefix("param")
            .and_then(|n| n.parse().ok())
            .and_then(crate::routes::path_param_name)
            .unwrap_or_else(|| e.name.to_owned());
        return ApiError::invalid_at(&["path", &name], clean_reason(&e.reason), "type_error");
    }
    if let Some(e) = err.downcast_ref::<ParseParamError>() {
        return ApiError::invalid_at(
            &[param_location(e.name), e.name],
            clean_reason(&e.reason),
            "type_error",
        );
    }
    if let Some(e) = err.downcast_ref::<ParseRequestPayloadError>() {
        return ApiError::invalid_at(&["body"], clean_reason(&e.reason), "value_error");
    }
    if let Some(e) = err.downcast_ref::<ContentTypeError>() {
        return ApiError::invalid_at(&["body"], e.to_string(), "content_type");
    }
    if err.is::<AuthorizationError>() {
        return ApiError::unauthorized();
    }
    if let Some(e) = err.downcast_ref::<Forbidden>() {
        return ApiError::forbidden(e.0.clone());
    }
    if err.is::<AuthUnavailable>() {
        return ApiError::unavailable("Credentials cannot be checked right now");
    }
    if let Some(e) = err.downcast_ref::<BodyTooLarge>() {
        return ApiError::TooLarge(detail(e.to_string()));
    }
    match err.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(detail("Request body too large")),
        StatusCode::NOT_FOUND => ApiError::not_found("Not Found"),
        StatusCode::UNAUTHORIZED => ApiError::unauthorized(),
        s if s.is_server_error() => ApiError::internal("request failed", &err),
        s if s.is_client_error() => ApiError::invalid_at(&["body"], err.to_string(), "value_error"),
        _ => ApiError::internal("unexpected error", &err),
    }
}

fn clean_reason(reason: &str) -> String {
    reason.trim().to_owned()
}

/// App-wide: any error that escaped an operation (unknown route, method not allowed, body
/// limit) leaves in the contract's shape.
pub async fn render_error(err: poem::Error) -> Response {
    // An operation's own error answer (already in the contract's shape) passes through.
    if err.is_from_response() {
        return err.into_response();
    }
    match err.status() {
        StatusCode::METHOD_NOT_ALLOWED => (
            StatusCode::METHOD_NOT_ALLOWED,
            poem::web::Json(ErrorDetail {
                detail: "Method Not Allowed".into(),
            }),
        )
            .into_response(),
        _ => from_extractor_error(err).into_response(),
    }
}

/// Middleware form of [`render_error`], so that errors of nested endpoints are rendered too.
pub async fn catch_all<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    match next.call(req).await {
        Ok(resp) => Ok(resp.into_response()),
        Err(err) => Ok(render_error(err).await),
    }
}
