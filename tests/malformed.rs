//! Bad input on every endpoint gets a clear 4xx in the contract's shape (422 with
//! `HTTPValidationError` for validation), never a 500, and records nothing.
mod common;

use common::{Deployment, PLATFORM_KEY, TestApp};
use serde_json::{Value, json};

struct Case {
    method: &'static str,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    /// The `loc` of the first validation error, when the status is 422.
    loc: Option<Value>,
}

fn case(method: &'static str, path: &str, body: &str, status: u16, loc: Option<Value>) -> Case {
    Case {
        method,
        path: path.into(),
        content_type: Some("application/json"),
        body: body.as_bytes().to_vec(),
        status,
        loc,
    }
}

fn sms_item() -> Value {
    json!({"client_id": 5, "to_number": "+14155550123", "message": "hi", "status": "sent"})
}

/// `base` with the value at `pointer` set (added when missing).
fn with(mut base: Value, pointer: &str, value: Value) -> String {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    match base.pointer_mut(parent).unwrap() {
        Value::Object(map) => {
            map.insert(key.to_owned(), value);
        }
        Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
        other => panic!("cannot set {pointer} in {other}"),
    }
    base.to_string()
}

fn cases() -> Vec<Case> {
    let sms = json!({"category": "conversation", "messages": [sms_item()]});
    let email = json!({"category": "campaign", "from_email": "a@example.com",
        "messages": [{"client_id": 5, "to_email": "grace@example.com", "subject": "s", "message": "m", "status": "sent"}]});
    let onboard = common::onboard_body(1, "Spa");
    let sms_path = "/businesses/1/sms/record";
    let email_path = "/businesses/1/email/record";
    let mut v = vec![
        // Not JSON, truncated JSON, empty, the wrong JSON type.
        case(
            "POST",
            sms_path,
            "{\"category\":",
            422,
            Some(json!(["body"])),
        ),
        case("POST", sms_path, "not json", 422, Some(json!(["body"]))),
        case("POST", sms_path, "", 422, Some(json!(["body"]))),
        case("POST", sms_path, "[]", 422, Some(json!(["body"]))),
        case("POST", sms_path, "null", 422, Some(json!(["body"]))),
        // Missing fields, wrong types, bad enum values.
        case(
            "POST",
            sms_path,
            r#"{"messages":[]}"#,
            422,
            Some(json!(["body", "category"])),
        ),
        case(
            "POST",
            sms_path,
            &with(sms.clone(), "/category", json!("nope")),
            422,
            Some(json!(["body", "category"])),
        ),
        case(
            "POST",
            sms_path,
            &with(sms.clone(), "/messages/0/client_id", json!("five")),
            422,
            Some(json!(["body", "messages", 0, "client_id"])),
        ),
        case(
            "POST",
            sms_path,
            &with(sms.clone(), "/messages/0/client_id", json!(1.5)),
            422,
            Some(json!(["body", "messages", 0, "client_id"])),
        ),
        case(
            "POST",
            sms_path,
            &with(sms.clone(), "/messages/0/status", json!("lost")),
            422,
            Some(json!(["body", "messages", 0, "status"])),
        ),
        case(
            "POST",
            sms_path,
            &with(sms.clone(), "/messages/0/to_number", json!("555-0123")),
            422,
            Some(json!(["body", "messages", 0, "to_number"])),
        ),
        case(
            "POST",
            sms_path,
            &with(sms.clone(), "/messages/0/message", json!("")),
            422,
            Some(json!(["body", "messages", 0, "message"])),
        ),
        case(
            "POST",
            sms_path,
            &with(sms.clone(), "/messages/0/message", json!("x".repeat(1601))),
            422,
            Some(json!(["body", "messages", 0, "message"])),
        ),
        case(
            "POST",
            sms_path,
            &with(sms.clone(), "/messages/0/provider_metadata", json!([1])),
            422,
            Some(json!(["body", "messages", 0, "provider_metadata"])),
        ),
        case(
            "POST",
            sms_path,
            &with(sms.clone(), "/messages", json!([])),
            422,
            Some(json!(["body", "messages"])),
        ),
        case(
            "POST",
            sms_path,
            &with(sms.clone(), "/messages", json!(vec![sms_item(); 1001])),
            422,
            Some(json!(["body", "messages"])),
        ),
        case(
            "POST",
            sms_path,
            &with(sms.clone(), "/category", json!(7)),
            422,
            Some(json!(["body", "category"])),
        ),
        case(
            "POST",
            sms_path,
            &with(sms.clone(), "/messages/0/client_id", json!(-3)),
            422,
            Some(json!(["body", "messages", 0, "client_id"])),
        ),
        case(
            "POST",
            sms_path,
            &with(sms.clone(), "/sent_at", json!("yesterday")),
            422,
            Some(json!(["body", "sent_at"])),
        ),
        // A bad path parameter.
        case(
            "POST",
            "/businesses/abc/sms/record",
            &sms.to_string(),
            422,
            Some(json!(["path", "business_id"])),
        ),
        case(
            "POST",
            "/businesses/99999999999999999999/sms/record",
            &sms.to_string(),
            422,
            Some(json!(["path", "business_id"])),
        ),
        // Email: the published example's "string" addresses, and others.
        case(
            "POST",
            email_path,
            &with(email.clone(), "/messages/0/to_email", json!("nobody")),
            422,
            Some(json!(["body", "messages", 0, "to_email"])),
        ),
        case(
            "POST",
            email_path,
            &with(email.clone(), "/messages/0/cc_email", json!(["string"])),
            422,
            Some(json!(["body", "messages", 0, "cc_email", 0])),
        ),
        case(
            "POST",
            email_path,
            &with(email.clone(), "/messages/0/cc_email", json!("a@b.com")),
            422,
            Some(json!(["body", "messages", 0, "cc_email"])),
        ),
        case(
            "POST",
            email_path,
            &with(email.clone(), "/from_email", json!("x@")),
            422,
            Some(json!(["body", "from_email"])),
        ),
        case(
            "POST",
            email_path,
            &with(
                email.clone(),
                "/messages/0/attachments",
                json!([{"content": "%%%"}]),
            ),
            422,
            Some(json!(["body", "messages", 0, "attachments", 0, "content"])),
        ),
        case(
            "POST",
            email_path,
            &with(
                email.clone(),
                "/messages/0/attachments",
                json!([{"filename": "a"}]),
            ),
            422,
            Some(json!(["body", "messages", 0, "attachments", 0])),
        ),
        case(
            "POST",
            email_path,
            &with(email.clone(), "/messages/0/subject", json!("s".repeat(999))),
            422,
            Some(json!(["body", "messages", 0, "subject"])),
        ),
        case(
            "POST",
            email_path,
            &with(email.clone(), "/messages/0", json!({})),
            422,
            Some(json!(["body", "messages", 0, "client_id"])),
        ),
        // Onboarding.
        case(
            "POST",
            "/business/onboard",
            &with(onboard.clone(), "/timezone", json!("Mars/Olympus Mons")),
            422,
            Some(json!(["body", "timezone"])),
        ),
        case(
            "POST",
            "/business/onboard",
            &with(onboard.clone(), "/clients/0/client_type", json!("vip")),
            422,
            Some(json!(["body", "clients", 0, "client_type"])),
        ),
        case(
            "POST",
            "/business/onboard",
            &with(onboard.clone(), "/providers", json!({"twilio": {}})),
            422,
            Some(json!(["body", "providers", "twilio", "account_sid"])),
        ),
        case(
            "POST",
            "/business/onboard",
            &with(onboard.clone(), "/name", json!("")),
            422,
            Some(json!(["body", "name"])),
        ),
        case(
            "POST",
            "/business/onboard",
            r#"{"business_id":1}"#,
            422,
            Some(json!(["body", "name"])),
        ),
        case(
            "POST",
            "/business/onboard",
            &with(
                onboard.clone(),
                "/providers",
                json!({"twilio": {"account_sid": "AC1", "auth_token": "0123456789abcdef0123"}}),
            ),
            422,
            Some(json!(["body", "providers", "twilio", "account_sid"])),
        ),
        case(
            "POST",
            "/business/onboard",
            &with(
                onboard.clone(),
                "/providers",
                json!({"email": {"provider": "sendgrid", "from_email": "a@example.com"}}),
            ),
            422,
            Some(json!(["body", "providers", "email", "api_key"])),
        ),
        case(
            "POST",
            "/business/onboard",
            &with(
                onboard.clone(),
                "/providers",
                json!({"email": {"provider": "twilio", "from_email": "a@example.com", "api_key": "k"}}),
            ),
            422,
            Some(json!(["body", "providers", "email", "provider"])),
        ),
        // Reads with bad path or query parameters.
        case(
            "GET",
            "/business/x/onboarding-status",
            "",
            422,
            Some(json!(["path", "business_id"])),
        ),
        case(
            "GET",
            "/businesses/1/messages/requests/not-a-uuid",
            "",
            422,
            Some(json!(["path", "request_id"])),
        ),
        case(
            "GET",
            "/businesses/1/messages/requests/6a0b8d2e-0d6f-4a55-9f3c-1d2f1f1f1f1f?include=everything",
            "",
            422,
            Some(json!(["query", "include"])),
        ),
        case(
            "GET",
            "/businesses/one/messages/requests/6a0b8d2e-0d6f-4a55-9f3c-1d2f1f1f1f1f",
            "",
            422,
            Some(json!(["path", "business_id"])),
        ),
        case(
            "GET",
            "/messages/requests/%00",
            "",
            422,
            Some(json!(["path", "request_id"])),
        ),
        // Webhooks and the event stream.
        case(
            "POST",
            "/businesses/1/webhooks",
            "{\"url\":",
            422,
            Some(json!(["body"])),
        ),
        case(
            "POST",
            "/businesses/1/webhooks",
            r#"{"url": 7}"#,
            422,
            Some(json!(["body", "url"])),
        ),
        case(
            "POST",
            "/admin/webhooks",
            r#"{"url": "https://hooks.example.com/x", "event_types": "message.received"}"#,
            422,
            Some(json!(["body", "event_types"])),
        ),
        case(
            "GET",
            "/businesses/1/webhooks/x/attempts",
            "",
            422,
            Some(json!(["path", "webhook_id"])),
        ),
        case("GET", "/businesses/1/webhooks/77/attempts", "", 404, None),
        case(
            "GET",
            "/businesses/1/events/stream?after=evt_1",
            "",
            422,
            Some(json!(["query", "after"])),
        ),
        // Staff replies, attachments, inbound email.
        case(
            "POST",
            "/businesses/1/conversations/1/reply",
            "{\"channel\":",
            422,
            Some(json!(["body"])),
        ),
        case(
            "POST",
            "/businesses/1/conversations/1/reply",
            r#"{"channel": "sms", "message": "", "staff_id": 789}"#,
            422,
            Some(json!(["body", "message"])),
        ),
        case(
            "POST",
            "/businesses/1/conversations/1/reply",
            r#"{"channel": "email", "message": "x"}"#,
            422,
            Some(json!(["body", "staff_id"])),
        ),
        case(
            "POST",
            "/businesses/1/conversations/1/reply",
            r#"{"channel": "email", "message": "x", "staff_id": 789, "send_at": "2099-01-01T00:00:00Z"}"#,
            422,
            Some(json!(["body", "send_at"])),
        ),
        case(
            "GET",
            "/businesses/1/messages/x/attachments/0",
            "",
            422,
            Some(json!(["path", "message_id"])),
        ),
        case(
            "GET",
            "/businesses/1/messages/1/attachments/-1",
            "",
            422,
            Some(json!(["path", "index"])),
        ),
        case(
            "GET",
            "/businesses/1/messages/1/attachments/0",
            "",
            404,
            None,
        ),
        case(
            "POST",
            "/email/inbound/fax",
            "{}",
            422,
            Some(json!(["path", "provider"])),
        ),
        case(
            "POST",
            "/business/onboard",
            &with(
                onboard.clone(),
                "/providers",
                json!({"email": {"provider": "mailgun", "from_email": "a@example.com", "api_key": "k"}}),
            ),
            422,
            Some(json!(["body", "providers", "email", "domain"])),
        ),
        // Unknown routes and methods.
        case("GET", "/businesses/1/nothing-here", "", 404, None),
        case("PUT", "/health", "", 405, None),
    ];
    // The wrong content type, and none at all.
    v.push(Case {
        content_type: Some("text/plain"),
        ..case(
            "POST",
            sms_path,
            &sms.to_string(),
            422,
            Some(json!(["body"])),
        )
    });
    v.push(Case {
        content_type: None,
        ..case(
            "POST",
            sms_path,
            &sms.to_string(),
            422,
            Some(json!(["body"])),
        )
    });
    v.push(Case {
        content_type: Some("application/x-www-form-urlencoded"),
        ..case(
            "POST",
            "/business/onboard",
            "business_id=1",
            422,
            Some(json!(["body"])),
        )
    });
    // Too large: 17 MiB of valid JSON for a 16 MiB limit.
    let big = format!(
        r#"{{"category":"conversation","messages":[],"pad":"{}"}}"#,
        "x".repeat(17 << 20)
    );
    v.push(case("POST", sms_path, &big, 413, None));
    v
}

async fn bad_input_is_refused_cleanly(d: Deployment) {
    let app = TestApp::spawn(d).await;
    app.onboard(1).await;
    let messages_before = app.count("SELECT COUNT(*) FROM messages").await;
    for c in cases() {
        let method = reqwest::Method::from_bytes(c.method.as_bytes()).unwrap();
        let mut req = app
            .http
            .request(method, app.url(&c.path))
            .header("X-API-KEY", PLATFORM_KEY)
            .body(c.body.clone());
        if let Some(ct) = c.content_type {
            req = req.header("Content-Type", ct);
        }
        if c.status == 413 {
            // The server stops reading and closes: the client must not reuse the connection.
            req = req.header("Connection", "close");
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let label = format!(
            "{} {} ({})",
            c.method,
            c.path,
            String::from_utf8_lossy(&c.body[..c.body.len().min(200)])
        );
        assert_eq!(status, c.status, "{label}: {text}");
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{label}: not JSON: {text}"));
        if status == 422 {
            let first = &v["detail"][0];
            assert!(
                first["msg"].is_string() && first["type"].is_string(),
                "{label}: {v}"
            );
            assert_eq!(first["loc"], c.loc.clone().unwrap(), "{label}: {v}");
        } else {
            assert!(v["detail"].is_string(), "{label}: {v}");
        }
    }
    // Nothing was queued or recorded by any of them.
    let stats = app.queue.stats().await.unwrap();
    assert!(
        stats
            .iter()
            .filter(|s| s.job_type != "onboard")
            .all(|s| s.pending + s.running + s.done + s.dead == 0),
        "{stats:?}"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM messages").await,
        messages_before
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM onboarding_runs").await, 1);
    // And the service is still healthy.
    assert_eq!(app.get("/health", None).await.status(), 200);
}
both_deployments!(bad_input, bad_input_is_refused_cleanly);
