//! The HTTP ingress: validates, authenticates, queues typed jobs and answers at once.
pub mod api;
pub mod auth;
pub mod email_events;
pub mod error;
pub mod guard;
pub mod inbound_email;
pub mod rate_limit;
pub mod routes;
pub mod server;
pub mod sns;
pub mod state;
pub mod streams;
pub mod twilio;
pub mod validate;

use std::sync::Arc;

use poem::http::HeaderValue;
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Route};
use tracing::Instrument;

pub use state::{AppState, EmailWebhookSettings, Settings};

use error::ApiError;

/// The request's id: the client's `X-Request-ID` when it sent a usable one, else a new UUID.
/// It is echoed on the response, carried into queued jobs and attached to every log line.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

const REQUEST_ID: &str = "x-request-id";

async fn with_request_id<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("http", request_id = %id, method = %req.method(), path = %req.uri().path());
    let path = req.uri().path().to_owned();
    let method = req.method().to_string();
    let started = std::time::Instant::now();
    routes::REQUEST_PATH
        .scope(routes::CurrentPath::new(path), async move {
            let mut resp = match next.call(req).await {
                Ok(r) => r.into_response(),
                Err(e) => error::render_error(e).await,
            };
            let route = routes::current_template();
            let status = resp.status().as_u16();
            metrics::counter!("omega_http_requests_total", "route" => route, "method" => method.clone(), "status" => status.to_string())
                .increment(1);
            metrics::histogram!("omega_http_request_duration_seconds", "route" => route, "method" => method)
                .record(started.elapsed().as_secs_f64());
            guard::ensure_retry_after(&mut resp);
            tracing::debug!(status, "answered");
            if let Ok(v) = HeaderValue::from_str(&id) {
                resp.headers_mut().insert(REQUEST_ID, v);
            }
            Ok(resp)
        })
        .instrument(span)
        .await
}

/// Renders the process's metrics in the Prometheus text format.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// The whole HTTP application: the API, its OpenAPI document and docs page, and `/metrics`.
pub fn app(
    state: Arc<AppState>,
    public_url: &str,
    metrics: MetricsRender,
) -> impl Endpoint<Output = Response> + use<> {
    let api = api::service(state.clone(), public_url);
    let docs = api.swagger_ui();
    let spec = api.spec_endpoint();
    routes::register(&api.spec());
    Route::new()
        .nest("/", api)
        .nest("/docs", docs)
        .at("/openapi.json", spec)
        .at("/metrics", metrics_endpoint(metrics))
        .around(guard::guard)
        .data(state)
        .with(poem::middleware::CatchPanic::new().with_handler(|_| {
            tracing::error!("a request handler panicked");
            ApiError::internal("handler panicked", "panic").into_response()
        }))
        .around(error::catch_all)
        .around(with_request_id)
}

/// `GET /metrics`: no key needed, as for `/health`.
pub fn metrics_endpoint(render: MetricsRender) -> impl Endpoint<Output = Response> {
    poem::endpoint::make_sync(move |_| {
        Response::builder()
            .content_type("text/plain; version=0.0.4")
            .body(render())
    })
    .map_to_response()
}
