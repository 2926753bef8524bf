//! Email both ways: sending through Mailgun, Postmark and Amazon SES (local mocks of their
//! APIs), HTML-only content, attachments by URL, inbound email from each provider's format,
//! threading, and staff replies from the inbox.
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use common::{Deployment, PLATFORM_KEY, Sandbox, TestApp, wait_for};
use hmac::Mac;
use poem::web::{Data, Multipart};
use poem::{EndpointExt, Request, Response, Route, handler, http::StatusCode};
use serde_json::{Value, json};

/// What a mock provider received: path, headers (lower-case names), and the fields it
/// read (JSON as is; multipart as an object of lists).
#[derive(Clone, Debug)]
struct Call {
    path: String,
    headers: HashMap<String, String>,
    body: Value,
}

#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<Call>>>);

impl Calls {
    fn all(&self) -> Vec<Call> {
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

async fn provider_mocks() -> (String, Calls) {
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
async fn app_with_providers(base: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut sandbox = Sandbox::new(Deployment::Embedded).await;
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

async fn send(app: &TestApp, body: Value) -> Value {
    let resp = app
        .post("/businesses/1/email/send", Some(PLATFORM_KEY), &body)
        .await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    resp.json().await.unwrap()
}

/// The request's messages once `done` holds.
async fn settled(
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

fn by_to<'a>(messages: &'a [Value], to: &str) -> &'a Value {
    messages.iter().find(|m| m["to"] == to).unwrap()
}

fn three(provider: &str) -> Value {
    json!({"category": "transactional", "provider": provider, "location_id": 10, "from_email": "desk@spa.example", "from_name": "Serenity Spa", "messages": [
        {"client_id": 5, "to_email": "grace@example.com", "subject": "Your visit", "content": {"text": "See you at 10", "html": "<p>See you at <b>10</b></p>"},
         "cc_email": ["cc@example.com"], "attachments": [{"content": "aGVsbG8=", "content_type": "text/plain", "filename": "a.txt"}]},
        {"client_id": 5, "to_email": "rejected@example.com", "subject": "x", "content": {"text": "x"}},
        {"client_id": 5, "to_email": "flaky@example.com", "subject": "y", "content": {"text": "y"}}
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailgun_postmark_and_ses_send_classify_errors_and_carry_omegas_id() {
    let (base, calls) = provider_mocks().await;
    let app = app_with_providers(&base, &[]).await;
    for (provider, rejected_code) in [
        ("mailgun", "400"),
        ("postmark", "300"),
        ("ses", "MessageRejected"),
    ] {
        let request = send(&app, three(provider)).await;
        let m = settled(&app, &request, 3, |m| {
            m.iter()
                .all(|m| m["provider_message_id"].is_string() || m["status"] == "failed")
        })
        .await;
        let (ok, rejected, flaky) = (
            by_to(&m, "grace@example.com"),
            by_to(&m, "rejected@example.com"),
            by_to(&m, "flaky@example.com"),
        );
        assert_eq!(ok["provider"], provider, "{ok}");
        assert_eq!(ok["status"], "queued", "{ok}");
        assert_eq!(rejected["status"], "failed", "{rejected}");
        assert_eq!(rejected["error_code"], rejected_code, "{rejected}");
        assert!(flaky["provider_message_id"].is_string(), "retried: {flaky}");
        let omega_id = ok["id"].as_i64().unwrap().to_string();
        let calls: Vec<Call> = calls
            .all()
            .into_iter()
            .filter(|c| c.body.to_string().contains("grace@example.com"))
            .collect();
        let call = calls.last().unwrap();
        match provider {
            "mailgun" => {
                assert_eq!(call.path, "/v3/mg.spa.example/messages");
                let basic = base64::engine::general_purpose::STANDARD.encode("api:key-mailgun");
                assert_eq!(call.headers["authorization"], format!("Basic {basic}"));
                let f = &call.body;
                assert_eq!(f["from"][0], "Serenity Spa <desk@spa.example>");
                assert_eq!(f["cc"][0], "cc@example.com");
                assert_eq!(f["text"][0], "See you at 10");
                assert_eq!(f["v:omega_message_id"][0], omega_id.as_str());
                assert!(
                    f["h:Message-ID"][0]
                        .as_str()
                        .unwrap()
                        .starts_with(&format!("<omega.{omega_id}."))
                );
                assert_eq!(
                    f["h:Reply-To"][0], "downtown@example.com",
                    "the location's address"
                );
                assert_eq!(
                    f["attachment"][0],
                    json!({"filename": "a.txt", "type": "text/plain", "content": "hello"})
                );
            }
            "postmark" => {
                assert_eq!(call.path, "/email");
                assert_eq!(
                    call.headers["x-postmark-server-token"],
                    "postmark-server-token"
                );
                let b = &call.body;
                assert_eq!(b["Metadata"]["omega_message_id"], omega_id.as_str());
                assert_eq!(b["HtmlBody"], "<p>See you at <b>10</b></p>");
                assert_eq!(b["Cc"], "cc@example.com");
                assert_eq!(
                    b["Attachments"][0],
                    json!({"Name": "a.txt", "Content": "aGVsbG8=", "ContentType": "text/plain"})
                );
                assert!(
                    b["Headers"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|h| h["Name"] == "Message-ID")
                );
            }
            _ => {
                assert_eq!(call.path, "/v2/email/outbound-emails");
                let auth = &call.headers["authorization"];
                assert!(
                    auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
                    "{auth}"
                );
                assert!(auth.contains("/us-east-1/ses/aws4_request"), "{auth}");
                assert!(call.headers.contains_key("x-amz-date"));
                let b = &call.body;
                assert_eq!(
                    b["EmailTags"],
                    json!([{"Name": "omega_message_id", "Value": omega_id}])
                );
                assert_eq!(b["Destination"]["CcAddresses"], json!(["cc@example.com"]));
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(b["Content"]["Raw"]["Data"].as_str().unwrap())
                    .unwrap();
                let raw = String::from_utf8_lossy(&raw);
                assert!(raw.contains("Subject: Your visit"), "{raw}");
                assert!(
                    raw.contains(&format!("Message-ID: <omega.{omega_id}.")),
                    "{raw}"
                );
                assert!(raw.contains("filename=\"a.txt\""), "{raw}");
            }
        }
    }

    // Their events find the message by the id omega gave them.
    let mg_request = send(&app, json!({"category": "transactional", "provider": "mailgun", "from_email": "desk@spa.example",
        "messages": [{"client_id": 5, "to_email": "grace@example.com", "subject": "Events", "content": {"text": "mailgun"}}]})).await;
    let mg = settled(&app, &mg_request, 1, |m| {
        m[0]["provider_message_id"].is_string()
    })
    .await;
    let pm_request = send(&app, json!({"category": "transactional", "provider": "postmark", "from_email": "desk@spa.example",
        "messages": [{"client_id": 5, "to_email": "grace@example.com", "subject": "Events", "content": {"text": "postmark"}}]})).await;
    let pm = settled(&app, &pm_request, 1, |m| {
        m[0]["provider_message_id"].is_string()
    })
    .await;
    let now = chrono::Utc::now().timestamp().to_string();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"mailgun-signing-key").unwrap();
    mac.update(format!("{now}evtok1").as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    let event = json!({"signature": {"timestamp": now, "token": "evtok1", "signature": signature},
        "event-data": {"event": "delivered", "id": "ev1", "timestamp": now.parse::<f64>().unwrap(),
            "user-variables": {"omega_message_id": mg[0]["id"].as_i64().unwrap().to_string()}}});
    let resp = app
        .http
        .post(app.url("/email/webhooks/mailgun"))
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let event = json!({"RecordType": "Delivery", "MessageID": pm[0]["provider_message_id"], "Recipient": "grace@example.com",
        "DeliveredAt": "2026-12-07T10:00:00Z", "Metadata": {"omega_message_id": pm[0]["id"].as_i64().unwrap().to_string()}});
    let resp = app
        .http
        .post(app.url("/email/webhooks/postmark"))
        .basic_auth("postmark", Some("hook-secret"))
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    for request in [&mg_request, &pm_request] {
        settled(&app, request, 1, |m| m[0]["status"] == "delivered").await;
    }
}

/// Files for attachments by URL: a small PDF, a 404, and one over the 10 MB limit.
#[handler]
fn file_server(req: &Request) -> Response {
    match req.uri().path() {
        "/files/menu.pdf" => Response::builder()
            .content_type("application/pdf")
            .body("%PDF-1.4 menu"),
        "/files/big.bin" => Response::builder()
            .content_type("application/octet-stream")
            .body(vec![0u8; 11 << 20]),
        _ => Response::builder().status(StatusCode::NOT_FOUND).finish(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_only_email_gets_text_and_url_attachments_are_fetched_or_fail_the_message() {
    let (base, calls) = provider_mocks().await;
    let files_base = common::serve_mock(Route::new().at("/files/*", poem::get(file_server))).await;
    let app = app_with_providers(&base, &[("OMEGA_ALLOW_PRIVATE_URLS", "true")]).await;
    let body = json!({"category": "transactional", "provider": "postmark", "from_email": "desk@spa.example", "messages": [
        {"client_id": 5, "to_email": "grace@example.com", "subject": "Menu",
         "content": {"html": "<h1>Winter menu</h1><p>Try our <b>eucalyptus</b> steam.</p>"},
         "attachments": [{"url": format!("{files_base}/files/menu.pdf")}]},
        {"client_id": 5, "to_email": "grace@example.com", "subject": "Missing", "content": {"text": "x"},
         "attachments": [{"url": format!("{files_base}/files/gone.pdf"), "filename": "gone.pdf"}]},
        {"client_id": 5, "to_email": "grace@example.com", "subject": "Big", "content": {"text": "y"},
         "attachments": [{"url": format!("{files_base}/files/big.bin")}]}
    ]});
    let request = send(&app, body).await;
    let m = settled(&app, &request, 3, |m| {
        m.iter()
            .all(|m| m["provider_message_id"].is_string() || m["status"] == "failed")
    })
    .await;
    let menu = m.iter().find(|m| m["subject"] == "Menu").unwrap();
    assert_eq!(menu["status"], "queued", "{menu}");
    let text = menu["body"].as_str().unwrap();
    assert!(
        text.contains("Winter menu") && text.contains("Try our eucalyptus steam."),
        "{text}"
    );
    assert!(!text.contains('<'), "{text}");
    for (subject, why) in [("Missing", "404"), ("Big", "over 10 MB")] {
        let failed = m.iter().find(|m| m["subject"] == subject).unwrap();
        assert_eq!(failed["status"], "failed", "{failed}");
        assert_eq!(failed["error_code"], "attachment_unavailable", "{failed}");
        assert!(
            failed["error_message"].as_str().unwrap().contains(why),
            "{failed}"
        );
    }
    let sent = calls.all();
    assert_eq!(sent.len(), 1, "the failed ones were not sent");
    let b = &sent[0].body;
    assert_eq!(b["TextBody"], text, "the derived text is the text part");
    assert_eq!(
        b["Attachments"],
        json!([{"Name": "menu.pdf", "Content": base64::engine::general_purpose::STANDARD.encode("%PDF-1.4 menu"), "ContentType": "application/pdf"}])
    );
    // Search finds HTML-only mail by its words.
    let found: Value = app
        .get(
            "/businesses/1/messages/search?q=eucalyptus",
            Some(PLATFORM_KEY),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["total"], 1, "{found}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_at_private_addresses_are_refused() {
    let (base, calls) = provider_mocks().await;
    let files_base = common::serve_mock(Route::new().at("/files/*", poem::get(file_server))).await;
    let app = app_with_providers(&base, &[]).await;
    let request = send(&app, json!({"category": "transactional", "provider": "mailgun", "from_email": "desk@spa.example", "messages": [
        {"client_id": 5, "to_email": "grace@example.com", "subject": "Menu", "content": {"text": "x"},
         "attachments": [{"url": format!("{files_base}/files/menu.pdf")}]}]})).await;
    let m = settled(&app, &request, 1, |m| m[0]["status"] == "failed").await;
    assert_eq!(m[0]["error_code"], "attachment_unavailable");
    assert!(calls.all().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_business_with_its_own_email_account_sends_through_it_by_default() {
    let (base, calls) = provider_mocks().await;
    let app = app_with_providers(&base, &[]).await;
    let mut onboarding = common::onboard_body(3, "Harbor Clinic");
    onboarding["providers"] = json!({"email": {"provider": "postmark", "from_email": "front@spa.example", "api_key": "harbor-own-token"}});
    let resp = app
        .post("/business/onboard", Some(PLATFORM_KEY), &onboarding)
        .await;
    assert_eq!(resp.status(), 202);
    wait_for("onboarding", Duration::from_secs(20), || async {
        let v: Value = app
            .get("/business/3/onboarding-status", Some(PLATFORM_KEY))
            .await
            .json()
            .await
            .unwrap();
        (v["status"] == "completed").then_some(())
    })
    .await;
    // Incomplete own accounts are refused at onboarding, naming the field.
    for (email, field) in [
        (
            json!({"provider": "mailgun", "from_email": "a@spa.example", "api_key": "k"}),
            "domain",
        ),
        (
            json!({"provider": "ses", "from_email": "a@spa.example", "api_key": "AKID", "region": "us-east-1"}),
            "secret_key",
        ),
        (
            json!({"provider": "ses", "from_email": "a@spa.example", "api_key": "AKID", "secret_key": "s", "region": "evil.example.com/"}),
            "region",
        ),
    ] {
        let mut bad = common::onboard_body(4, "Bad");
        bad["providers"] = json!({"email": email});
        let resp = app
            .post("/business/onboard", Some(PLATFORM_KEY), &bad)
            .await;
        assert_eq!(resp.status(), 422);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(
            v["detail"][0]["loc"].as_array().unwrap().last().unwrap(),
            field,
            "{v}"
        );
    }
    let request = app
        .post("/businesses/3/email/send", Some(PLATFORM_KEY), &json!({"category": "transactional", "messages": [
            {"client_id": 5, "to_email": "grace@example.com", "subject": "Hello", "content": {"text": "From the clinic"}}]}))
        .await;
    assert_eq!(request.status(), 200);
    let request: Value = request.json().await.unwrap();
    let id = request["request_id"].as_str().unwrap().to_owned();
    wait_for("the send", Duration::from_secs(20), || async {
        let v = app.request_messages(3, &id, 1).await;
        v["messages"][0]["provider_message_id"]
            .is_string()
            .then_some(())
    })
    .await;
    let sent = calls.all();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].headers["x-postmark-server-token"],
        "harbor-own-token"
    );
    assert_eq!(sent[0].body["From"], "front@spa.example");
}
