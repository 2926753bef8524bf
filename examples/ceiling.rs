//! The benchmarks' ceiling (run by `scripts/bench`): a minimal poem server on the same
//! machine, in the same run, that reads a request as omega would and answers at once, so each
//! omega rate can be given as a ratio to what this machine serves at all.
//!
//!   POST /json   parses the body as JSON and answers `{"ok":true}`
//!   POST /form   reads a multipart/form-data or URL-encoded body field by field (the inbound
//!                email formats) and answers `{"ok":true}`
//!
//!   cargo run --release --example ceiling -- 127.0.0.1:18999
use poem::http::StatusCode;
use poem::listener::TcpListener;
use poem::web::Json;
use poem::{Body, IntoResponse, Request, Response, Route, Server, handler, post};
use serde_json::{Value, json};

#[handler]
async fn parse_json(body: Body) -> Response {
    let Ok(bytes) = body.into_bytes_limit(32 << 20).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into();
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(_) => Json(json!({"ok": true})).into_response(),
        Err(_) => StatusCode::UNPROCESSABLE_ENTITY.into(),
    }
}

#[handler]
async fn parse_form(req: &Request, body: Body) -> Response {
    let Ok(bytes) = body.into_bytes_limit(32 << 20).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into();
    };
    let Some(boundary) = req
        .content_type()
        .and_then(|ct| multer::parse_boundary(ct).ok())
    else {
        return match serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes) {
            Ok(_) => Json(json!({"ok": true})).into_response(),
            Err(_) => StatusCode::UNPROCESSABLE_ENTITY.into(),
        };
    };
    let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(bytes) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut fields = 0usize;
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                if field.bytes().await.is_err() {
                    return StatusCode::UNPROCESSABLE_ENTITY.into();
                }
                fields += 1;
            }
            Ok(None) => break,
            Err(_) => return StatusCode::UNPROCESSABLE_ENTITY.into(),
        }
    }
    Json(json!({"ok": true, "fields": fields})).into_response()
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18999".into());
    let app = Route::new()
        .at("/json", post(parse_json))
        .at("/form", post(parse_form));
    Server::new(TcpListener::bind(listen)).run(app).await
}
