//! Sending email through Mailgun, Postmark and Amazon SES (local mocks of their APIs), a
//! business's own account, HTML-only content and attachments by URL.
mod common;
mod email_support;

use std::time::Duration;

use base64::Engine;
use common::{Deployment, PLATFORM_KEY, wait_for};
use email_support::{Call, app_with_providers, by_to, provider_mocks, send, settled};
use hmac::Mac;
use poem::{Request, Response, Route, handler, http::StatusCode};
use serde_json::{Value, json};

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
    let app = app_with_providers(Deployment::Embedded, &base, &[]).await;
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
    let app = app_with_providers(
        Deployment::Embedded,
        &base,
        &[("OMEGA_ALLOW_PRIVATE_URLS", "true")],
    )
    .await;
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
    let app = app_with_providers(Deployment::Embedded, &base, &[]).await;
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
    let app = app_with_providers(Deployment::Embedded, &base, &[]).await;
    let mut onboarding = common::onboard_body(3, "Harbor Clinic");
    onboarding["providers"] = json!({"email": {"provider": "postmark", "from_email": "front@spa.example", "api_key": "harbor-own-token"}});
    app.onboard_with(&onboarding).await;
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
