//! What the email tests share: local mocks of Mailgun's, Postmark's and SES's sending APIs
//! that record every call, and an omega whose global accounts are those mocks.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{self, Deployment, PLATFORM_KEY, Sandbox, TestApp, wait_for};
use poem::web::{Data, Multipart};
use poem::{EndpointExt, Request, Response, Route, handler, http::StatusCode};
use serde_json::{Value, json};

/// What a mock provider received: path, headers (lower-case names), and the fields it
/// read (JSON as is; multipart as an object of lists).
#[derive(Clone, Debug)]
pub struct Call {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Value,
}

#[derive(Clone, Default)]
pub struct Calls(Arc<Mutex<Vec<Call>>>);

impl Calls {
    pub fn all(&self) -> Vec<Call> {
        self.0.lock().unwrap().clone()
    }

    /// Records the call; how many calls to `to` there were before it.
    fn push(&self, req: &Request, body: Value, to: &str) -> usize {
        let headers = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let mut calls = self.0.lock().unwrap();
        let before = calls
            .iter()
            .filter(|c| c.body.to_string().contains(to))
            .count();
        calls.push(Call {
            path: req.uri().path().to_owned(),
            headers,
            body,
        });
        before
    }
}

fn json_response(status: StatusCode, body: Value) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body.to_string())
}

/// Mailgun's Messages API: a multipart form; `rejected@` is refused (400), `flaky@` gets a
/// 503 the first time.
#[handler]
async fn mailgun(req: &Request, mut form: Multipart, calls: Data<&Calls>) -> Response {
    let mut fields: serde_json::Map<String, Value> = Default::default();
    while let Ok(Some(field)) = form.next_field().await {
        let name = field.name().unwrap_or("").to_owned();
        let value = match field.file_name().map(str::to_owned) {
            Some(file) => {
                let kind = field.content_type().unwrap_or("").to_owned();
                let bytes = field.bytes().await.unwrap();
                json!({"filename": file, "type": kind, "content": String::from_utf8_lossy(&bytes)})
            }
            None => json!(field.text().await.unwrap()),
        };
        fields
            .entry(name)
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .unwrap()
            .push(value);
    }
    let to = fields["to"][0].as_str().unwrap_or("").to_owned();
    let before = calls.push(req, Value::Object(fields), &to);
    match to.as_str() {
        "rejected@example.com" => json_response(
            StatusCode::BAD_REQUEST,
            json!({"message": "'to' parameter is not a valid address. please check documentation"}),
        ),
        "flaky@example.com" if before == 0 => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"message": "try later"}),
        ),
        _ => json_response(
            StatusCode::OK,
            json!({"id": format!("<mg{}@mg.spa.example>", before), "message": "Queued. Thank you."}),
        ),
    }
}

/// Postmark's `/email`: `rejected@` is error 300 (422), `flaky@` a 500 the first time.
#[handler]
async fn postmark(req: &Request, body: String, calls: Data<&Calls>) -> Response {
    let v: Value = serde_json::from_str(&body).unwrap();
    let to = v["To"].as_str().unwrap_or("").to_owned();
    let before = calls.push(req, v, &to);
    match to.as_str() {
        "rejected@example.com" => json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"ErrorCode": 300, "Message": "Invalid 'To' address: 'rejected@example.com'."}),
        ),
        "flaky@example.com" if before == 0 => {
            json_response(StatusCode::INTERNAL_SERVER_ERROR, json!({}))
        }
        _ => json_response(
            StatusCode::OK,
            json!({"To": to, "SubmittedAt": "2026-12-07T10:00:00Z", "MessageID": format!("pm-{before}-{to}"), "ErrorCode": 0, "Message": "OK"}),
        ),
    }
}

/// SES v2 SendEmail: `rejected@` is MessageRejected (400), `flaky@` throttled (429) once.
#[handler]
async fn ses(req: &Request, body: String, calls: Data<&Calls>) -> Response {
    let v: Value = serde_json::from_str(&body).unwrap();
    let to = v["Destination"]["ToAddresses"][0]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let before = calls.push(req, v, &to);
    let error = |status, kind: &str, message: &str| {
        Response::builder()
            .status(status)
            .header(
                "x-amzn-ErrorType",
                format!("{kind}:http://internal.amazon.com/"),
            )
            .content_type("application/json")
            .body(json!({"message": message}).to_string())
    };
    match to.as_str() {
        "rejected@example.com" => error(
            StatusCode::BAD_REQUEST,
            "MessageRejected",
            "Email address is not verified.",
        ),
        "flaky@example.com" if before == 0 => error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequestsException",
            "Too Many Requests",
        ),
        _ => json_response(
            StatusCode::OK,
            json!({"MessageId": format!("0100018c-ses-{before}")}),
        ),
    }
}

pub async fn provider_mocks() -> (String, Calls) {
    let calls = Calls::default();
    let base = common::serve_mock(
        Route::new()
            .at("/v3/:domain/messages", poem::post(mailgun))
            .at("/email", poem::post(postmark))
            .at("/v2/email/outbound-emails", poem::post(ses))
            .data(calls.clone()),
    )
    .await;
    (base, calls)
}

/// An omega whose global Mailgun, Postmark and SES accounts are the local mocks.
pub async fn app_with_providers(d: Deployment, base: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut sandbox = Sandbox::new(d).await;
    for (name, value) in [
        ("OMEGA_MAILGUN_API_KEY", "key-mailgun"),
        ("OMEGA_MAILGUN_DOMAIN", "mg.spa.example"),
        ("OMEGA_MAILGUN_API_BASE", base),
        ("OMEGA_POSTMARK_SERVER_TOKEN", "postmark-server-token"),
        ("OMEGA_POSTMARK_API_BASE", base),
        ("OMEGA_SES_REGION", "us-east-1"),
        ("OMEGA_SES_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        (
            "OMEGA_SES_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        ),
        ("OMEGA_SES_ENDPOINT", base),
        ("OMEGA_MAILGUN_SIGNING_KEY", "mailgun-signing-key"),
        ("OMEGA_POSTMARK_WEBHOOK_USER", "postmark"),
        ("OMEGA_POSTMARK_WEBHOOK_PASSWORD", "hook-secret"),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    {
        sandbox.set(name, value);
    }
    let app = TestApp::spawn_in(sandbox, omega::Role::Serve).await;
    app.onboard(1).await;
    app
}

pub async fn send(app: &TestApp, body: Value) -> Value {
    let resp = app
        .post("/businesses/1/email/send", Some(PLATFORM_KEY), &body)
        .await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    resp.json().await.unwrap()
}

/// The request's messages once `done` holds.
pub async fn settled(
    app: &TestApp,
    request: &Value,
    n: usize,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let id = request["request_id"].as_str().unwrap().to_owned();
    wait_for(
        "the messages to settle",
        Duration::from_secs(30),
        || async {
            let v = app.request_messages(1, &id, n).await;
            let m = v["messages"].as_array().cloned().unwrap_or_default();
            let settled = m.len() == n && done(&m);
            if !settled {
                eprintln!("not settled yet: {v}");
            }
            settled.then_some(m)
        },
    )
    .await
}

pub fn by_to<'a>(messages: &'a [Value], to: &str) -> &'a Value {
    messages.iter().find(|m| m["to"] == to).unwrap()
}
