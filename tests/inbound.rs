//! Inbound: Twilio's webhooks (incoming SMS, SMS status, voice status), the email providers'
//! webhooks and `/messages/process`. Signatures are computed here from the providers'
//! published algorithms, independently of omega's code.
mod common;

use std::time::Duration;

use common::{Deployment, PLATFORM_KEY, Sandbox, TestApp, wait_for};
use common::{TWILIO_ACCOUNT as ACCOUNT, TWILIO_TOKEN as TOKEN};
use serde_json::{Value, json};

const PUBLIC: &str = "http://127.0.0.1:8080";
const DOWNTOWN: &str = "+14155550100";
const GRACE: &str = "+14155550123";

async fn twilio_app(d: Deployment) -> TestApp {
    let mut sandbox = Sandbox::new(d).await;
    sandbox.set("OMEGA_TWILIO_ACCOUNT_SID", ACCOUNT);
    sandbox.set("OMEGA_TWILIO_AUTH_TOKEN", TOKEN);
    // Status callbacks may overtake their message: give them time to be retried.
    sandbox.set("OMEGA_JOB_MAX_ATTEMPTS", "30");
    let app = TestApp::spawn_in(sandbox, omega::Role::Serve).await;
    app.onboard(1).await;
    app
}

use common::twilio_sign as sign;

async fn post_form(
    app: &TestApp,
    path: &str,
    params: &[(&str, &str)],
    signature: Option<String>,
) -> reqwest::Response {
    let mut req = app
        .http
        .post(app.url(path))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(params).unwrap());
    if let Some(sig) = signature {
        req = req.header("X-Twilio-Signature", sig);
    }
    req.send().await.unwrap()
}

/// Posts the parameters signed as Twilio would sign them for `path`.
async fn twilio(app: &TestApp, path: &str, params: &[(&str, &str)]) -> reqwest::Response {
    let sig = sign(TOKEN, &format!("{PUBLIC}{path}"), params);
    post_form(app, path, params, Some(sig)).await
}

/// Announces a 10 MB body, sends its first 6 MB (more than any webhook accepts), and returns the status the server
/// answers with (a server that refuses early closes before the rest could be written, which
/// an HTTP client library reports as a broken pipe instead of the response).
async fn oversized(app: &TestApp, path: &str, content_type: &str) -> u16 {
    common::oversized(app, path, content_type, 10 << 20, 6 << 20).await
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    app.count(sql).await
}

async fn eventually(app: &TestApp, what: &str, sql: &str, expected: i64) {
    wait_for(what, Duration::from_secs(20), || async {
        (count(app, sql).await == expected).then_some(())
    })
    .await
}

fn sms<'a>(sid: &'a str, from: &'a str, body: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("AccountSid", ACCOUNT),
        ("MessageSid", sid),
        ("From", from),
        ("To", DOWNTOWN),
        ("Body", body),
        ("NumMedia", "0"),
    ]
}

async fn incoming_sms_is_verified_and_recorded_once(d: Deployment) {
    let app = twilio_app(d).await;
    let path = "/twilio/sms/incoming";
    let params = sms("SM100", GRACE, "Can I move my appointment?");
    let url = format!("{PUBLIC}{path}");

    // Every way a signature can be wrong: 403, nothing stored.
    let mut changed = params.clone();
    changed[4] = ("Body", "Something else");
    let mut extra = params.clone();
    extra.push(("Extra", "1"));
    for (label, sig, body) in [
        ("missing", None, params.clone()),
        (
            "wrong token",
            Some(sign("not-the-token", &url, &params)),
            params.clone(),
        ),
        (
            "changed parameter",
            Some(sign(TOKEN, &url, &params)),
            changed,
        ),
        (
            "other URL",
            Some(sign(TOKEN, &format!("{PUBLIC}/twilio/sms/status"), &params)),
            params.clone(),
        ),
        ("extra parameter", Some(sign(TOKEN, &url, &params)), extra),
    ] {
        let resp = post_form(&app, path, &body, sig).await;
        assert_eq!(resp.status(), 403, "{label}");
        let v: Value = resp.json().await.unwrap();
        assert!(v["detail"].is_string(), "{label}: {v}");
    }
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM webhook_receipts").await,
        0
    );

    // A resolved conversation is reopened by the reply.
    let conv: Value = app
        .post(
            "/businesses/1/conversations",
            Some(PLATFORM_KEY),
            &json!({"client_id": 5, "location_id": 10}),
        )
        .await
        .json()
        .await
        .unwrap();
    let conv_id = conv["id"].as_i64().unwrap();
    let resp = app
        .post(
            &format!("/businesses/1/conversations/{conv_id}/status"),
            Some(PLATFORM_KEY),
            &json!({"status": "resolved"}),
        )
        .await;
    assert_eq!(resp.status(), 200);

    let mut with_media = params.clone();
    with_media[5] = ("NumMedia", "1");
    with_media.push(("MediaUrl0", "https://api.twilio.com/media/ME1"));
    with_media.push(("MediaContentType0", "image/jpeg"));
    // A valid delivery and Twilio's two retries of it.
    for _ in 0..3 {
        let resp = twilio(&app, path, &with_media).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .split(';')
                .next(),
            Some("text/xml")
        );
        let xml = resp.text().await.unwrap();
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>"
        );
    }
    eventually(
        &app,
        "the reply",
        "SELECT COUNT(*) FROM messages WHERE provider_message_id = 'SM100'",
        1,
    )
    .await;
    let page: Value = app
        .get(
            &format!("/businesses/1/conversations/{conv_id}/messages"),
            Some(PLATFORM_KEY),
        )
        .await
        .json()
        .await
        .unwrap();
    let m = &page["items"][0];
    assert_eq!(m["direction"], "inbound");
    assert_eq!(m["status"], "received");
    assert_eq!(m["channel"], "sms");
    assert_eq!(m["client_id"], 5);
    assert_eq!(m["body"], "Can I move my appointment?");
    assert_eq!(
        m["attachments"][0]["url"],
        "https://api.twilio.com/media/ME1"
    );
    assert_eq!(m["attachments"][0]["content_type"], "image/jpeg");
    assert_eq!(m["is_read"], false);
    let list: Value = app
        .get(
            "/businesses/1/conversations?client_id=5",
            Some(PLATFORM_KEY),
        )
        .await
        .json()
        .await
        .unwrap();
    let item = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == conv_id)
        .unwrap()
        .clone();
    assert_eq!(item["status"], "open", "{item}");
    assert_eq!(item["unread_count"], 1, "{item}");

    // Someone the business does not know becomes a lead.
    let resp = twilio(
        &app,
        path,
        &sms("SM101", "+1 415 555 0199", "Do you have openings?"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    eventually(&app, "the lead", "SELECT COUNT(*) FROM clients WHERE business_id = 1 AND client_type = 'lead' AND phone = '+14155550199' AND id < 0", 1).await;
    eventually(
        &app,
        "the lead's message",
        "SELECT COUNT(*) FROM messages WHERE provider_message_id = 'SM101' AND client_id < 0",
        1,
    )
    .await;
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM webhook_receipts WHERE orphan = false"
        )
        .await,
        2
    );
}
both_deployments!(incoming_sms, incoming_sms_is_verified_and_recorded_once);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_start_keywords_set_sms_consent() {
    let app = twilio_app(Deployment::Embedded).await;
    let resp = twilio(
        &app,
        "/twilio/sms/incoming",
        &sms("SM200", GRACE, "  stop \n"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    eventually(&app, "the opt-out", "SELECT COUNT(*) FROM clients WHERE id = 5 AND sms_opt_in = false AND sms_opt_out_reason = 'replied STOP'", 1).await;
    let details: Value = app
        .get("/businesses/1/clients/5", Some(PLATFORM_KEY))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(details["consent"]["sms"]["opted_in"], false, "{details}");
    assert_eq!(details["consent"]["sms"]["opt_out_reason"], "replied STOP");

    // A send to the client now fails for consent, and is not retried.
    let v: Value = app
        .post(
            "/businesses/1/sms/send",
            Some(PLATFORM_KEY),
            &json!({"category": "conversation", "location_id": 10, "messages": [{"client_id": 5, "to_number": GRACE, "message": "Still there?"}]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let request_id = v["request_id"].as_str().unwrap();
    wait_for("the refused send", Duration::from_secs(20), || async {
        let v = app.request_messages(1, request_id, 1).await;
        (v["messages"][0]["status"] == "failed").then_some(())
    })
    .await;

    let resp = twilio(&app, "/twilio/sms/incoming", &sms("SM201", GRACE, "Start")).await;
    assert_eq!(resp.status(), 200);
    eventually(&app, "the opt-in", "SELECT COUNT(*) FROM clients WHERE id = 5 AND sms_opt_in = true AND sms_opted_out_at IS NULL", 1).await;
    // HELP is kept as a message and changes nothing.
    let resp = twilio(&app, "/twilio/sms/incoming", &sms("SM202", GRACE, "help")).await;
    assert_eq!(resp.status(), 200);
    eventually(
        &app,
        "the HELP message",
        "SELECT COUNT(*) FROM messages WHERE provider_message_id = 'SM202'",
        1,
    )
    .await;
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM clients WHERE id = 5 AND sms_opt_in = true"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_to_unknown_numbers_are_kept_as_orphans() {
    let app = twilio_app(Deployment::Embedded).await;
    let mut params = sms("SM300", GRACE, "hello?");
    params[3] = ("To", "+14155559999");
    for _ in 0..2 {
        let resp = twilio(&app, "/twilio/sms/incoming", &params).await;
        assert_eq!(resp.status(), 200, "answered so Twilio stops retrying");
    }
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM webhook_receipts WHERE orphan = true"
        )
        .await,
        1
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages").await, 0);
    let (orphans, total) = entities::receipts::orphans(&app.db, 1, 20).await.unwrap();
    assert_eq!(total, 1);
    assert_eq!(orphans[0].payload["To"], "+14155559999");
    // Operators see them through the script (and `omega webhooks orphans`).
    let out = std::process::Command::new("scripts/orphan-receipts")
        .envs(&app.sandbox.env)
        .env("OMEGA_BIN", env!("CARGO_BIN_EXE_omega"))
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["delivery"], "sms:SM300");
    assert_eq!(line["payload"]["Body"], "hello?");
}

async fn record_twilio_sms(app: &TestApp, sid: &str) -> String {
    let v: Value = app
        .post(
            "/businesses/1/sms/record",
            Some(PLATFORM_KEY),
            &json!({"category": "conversation", "provider": "twilio", "location_id": 10,
                    "messages": [{"client_id": 5, "to_number": GRACE, "from_number": DOWNTOWN, "message": "Reminder", "status": "queued", "provider_message_id": sid}]}),
        )
        .await
        .json()
        .await
        .unwrap();
    v["request_id"].as_str().unwrap().to_owned()
}

fn callback<'a>(sid: &'a str, status: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("AccountSid", ACCOUNT),
        ("MessageSid", sid),
        ("MessageStatus", status),
        ("From", DOWNTOWN),
        ("To", GRACE),
    ]
}

async fn status_callbacks_in_any_order_end_right(d: Deployment) {
    let app = twilio_app(d).await;
    let request_id = record_twilio_sms(&app, "SM400").await;
    app.request_messages(1, &request_id, 1).await;
    // Reverse order, each delivered twice.
    for status in ["delivered", "sent", "sending", "queued"] {
        for _ in 0..2 {
            let resp = twilio(&app, "/twilio/sms/status", &callback("SM400", status)).await;
            assert_eq!(resp.status(), 204);
        }
    }
    // record (queued) + four distinct reports, each once.
    eventually(&app, "the history", "SELECT COUNT(*) FROM message_events e JOIN messages m ON m.id = e.message_id WHERE m.provider_message_id = 'SM400'", 5).await;
    let v = app.request_messages(1, &request_id, 1).await;
    let m = &v["messages"][0];
    assert_eq!(
        m["status"], "delivered",
        "a late report never moves it back: {m}"
    );
    let sources: Vec<&str> = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(sources.len(), 5, "{m}");
    for s in ["delivered", "sent", "sending", "queued"] {
        assert!(sources.contains(&s), "{s} kept in the history: {sources:?}");
    }

    // A failure with Twilio's error code.
    let request_id = record_twilio_sms(&app, "SM401").await;
    app.request_messages(1, &request_id, 1).await;
    let mut failed = callback("SM401", "undelivered");
    failed.push(("ErrorCode", "30003"));
    failed.push(("ErrorMessage", "Unreachable destination handset"));
    assert_eq!(
        twilio(&app, "/twilio/sms/status", &failed).await.status(),
        204
    );
    eventually(&app, "the failure", "SELECT COUNT(*) FROM messages WHERE provider_message_id = 'SM401' AND status = 'undelivered' AND error_code = '30003'", 1).await;

    // A callback that overtakes the record of its message is applied once it appears.
    assert_eq!(
        twilio(&app, "/twilio/sms/status", &callback("SM402", "delivered"))
            .await
            .status(),
        204
    );
    let request_id = record_twilio_sms(&app, "SM402").await;
    app.request_messages(1, &request_id, 1).await;
    eventually(&app, "the early callback", "SELECT COUNT(*) FROM messages WHERE provider_message_id = 'SM402' AND status = 'delivered'", 1).await;

    // Unknown statuses and missing fields: 422, nothing queued.
    let before = count(&app, "SELECT COUNT(*) FROM message_events").await;
    let resp = twilio(&app, "/twilio/sms/status", &callback("SM400", "exploded")).await;
    assert_eq!(resp.status(), 422);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["detail"][0]["loc"], json!(["body", "MessageStatus"]));
    let resp = twilio(
        &app,
        "/twilio/sms/status",
        &[
            ("AccountSid", ACCOUNT),
            ("MessageStatus", "sent"),
            ("From", DOWNTOWN),
        ],
    )
    .await;
    assert_eq!(resp.status(), 422);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM message_events").await,
        before
    );
}
both_deployments!(status_callbacks, status_callbacks_in_any_order_end_right);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_status_updates_the_call() {
    let app = twilio_app(Deployment::Embedded).await;
    let call = [
        ("AccountSid", ACCOUNT),
        ("CallSid", "CA500"),
        ("From", "client:b1_s789"),
        ("To", GRACE),
    ];
    assert_eq!(
        twilio(&app, "/voice-calls/twiml", &call).await.status(),
        200
    );
    eventually(
        &app,
        "the call",
        "SELECT COUNT(*) FROM messages WHERE provider_message_id = 'CA500'",
        1,
    )
    .await;
    // The dialled leg reports under its own sid, with the recorded call as its parent.
    for (status, duration) in [("ringing", ""), ("in-progress", ""), ("completed", "42")] {
        let mut params = vec![
            ("AccountSid", ACCOUNT),
            ("CallSid", "CA501"),
            ("ParentCallSid", "CA500"),
            ("CallStatus", status),
            ("From", DOWNTOWN),
            ("To", GRACE),
        ];
        if !duration.is_empty() {
            params.push(("CallDuration", duration));
        }
        assert_eq!(
            twilio(&app, "/twilio/voice/status", &params).await.status(),
            204
        );
    }
    eventually(&app, "the call's status", "SELECT COUNT(*) FROM messages WHERE provider_message_id = 'CA500' AND status = 'delivered'", 1).await;
    // Each move of the call is a call.status_updated event in the business's log.
    eventually(&app, "the call's event", "SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE event_type = 'call.status_updated' AND CAST(data AS TEXT) LIKE '%CA500%' AND CAST(data AS TEXT) LIKE '%delivered%' LIMIT 1) e", 1).await;
    eventually(&app, "the duration", "SELECT COUNT(*) FROM messages WHERE provider_message_id = 'CA500' AND metadata LIKE '%\"duration_seconds\":42%'", 1).await;

    // A call omega did not see through TwiML is created from its callback.
    let params = [
        ("AccountSid", ACCOUNT),
        ("CallSid", "CA600"),
        ("CallStatus", "completed"),
        ("CallDuration", "7"),
        ("From", "+14155550177"),
        ("To", DOWNTOWN),
    ];
    assert_eq!(
        twilio(&app, "/twilio/voice/status", &params).await.status(),
        204
    );
    eventually(&app, "the call from its callback", "SELECT COUNT(*) FROM messages WHERE provider_message_id = 'CA600' AND direction = 'inbound' AND status = 'delivered'", 1).await;
    // Bad values: 422.
    let mut bad = params.to_vec();
    bad[2] = ("CallStatus", "teleported");
    assert_eq!(
        twilio(&app, "/twilio/voice/status", &bad).await.status(),
        422
    );
    let mut bad = params.to_vec();
    bad[3] = ("CallDuration", "forty");
    assert_eq!(
        twilio(&app, "/twilio/voice/status", &bad).await.status(),
        422
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_webhooks_refuse_malformed_bodies() {
    let app = twilio_app(Deployment::Embedded).await;
    for path in [
        "/twilio/sms/incoming",
        "/twilio/sms/status",
        "/twilio/voice/status",
    ] {
        // JSON instead of a form.
        let resp = app
            .http
            .post(app.url(path))
            .json(&json!({"MessageSid": "SM1"}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_client_error(), "{path}: {}", resp.status());
        // 10 MB.
        assert_eq!(
            oversized(&app, path, "application/x-www-form-urlencoded").await,
            413,
            "{path}"
        );

        // Not form encoding at all.
        let resp = app
            .http
            .post(app.url(path))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(vec![0xff, 0xfe, b'=', 0x80])
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_client_error(), "{path}: {}", resp.status());
    }
    // Signed, but missing what the endpoint needs.
    let resp = twilio(
        &app,
        "/twilio/sms/incoming",
        &[("AccountSid", ACCOUNT), ("To", DOWNTOWN), ("Body", "x")],
    )
    .await;
    assert_eq!(resp.status(), 422);
    let resp = twilio(
        &app,
        "/twilio/sms/incoming",
        &[
            ("AccountSid", ACCOUNT),
            ("To", DOWNTOWN),
            ("MessageSid", "SM9"),
            ("From", "not a number"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 422);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM webhook_receipts").await,
        0
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages").await, 0);
}

// --- email providers -------------------------------------------------------------------

mod email {
    use super::*;
    use base64::Engine;
    use hmac::Mac;
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::EncodePublicKey;

    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

    fn sendgrid_key() -> p256::ecdsa::SigningKey {
        let seed: [u8; 32] =
            <sha2::Sha256 as sha2::Digest>::digest(b"omega sendgrid test key").into();
        p256::ecdsa::SigningKey::from_slice(&seed).unwrap()
    }

    pub async fn email_app() -> TestApp {
        let mut sandbox = Sandbox::new(Deployment::Embedded).await;
        let public = sendgrid_key().verifying_key().to_public_key_der().unwrap();
        sandbox.set(
            "OMEGA_SENDGRID_WEBHOOK_PUBLIC_KEY",
            &B64.encode(public.as_bytes()),
        );
        sandbox.set("OMEGA_MAILGUN_SIGNING_KEY", "mailgun-signing-key");
        sandbox.set("OMEGA_POSTMARK_WEBHOOK_USER", "postmark");
        sandbox.set("OMEGA_POSTMARK_WEBHOOK_PASSWORD", "hook-secret");
        let app = TestApp::spawn_in(sandbox, omega::Role::Serve).await;
        app.onboard(1).await;
        app
    }

    /// Records an email sent through `provider` with the provider's id; returns omega's id.
    pub async fn sent_email(app: &TestApp, provider: &str, pid: &str) -> i64 {
        let v: Value = app
            .post(
                "/businesses/1/email/record",
                Some(PLATFORM_KEY),
                &json!({"category": "conversation", "provider": provider, "from_email": "spa@example.com",
                        "messages": [{"client_id": 5, "to_email": "grace@example.com", "subject": "Hi", "message": "Hello", "status": "queued", "provider_message_id": pid}]}),
            )
            .await
            .json()
            .await
            .unwrap();
        let v = app
            .request_messages(1, v["request_id"].as_str().unwrap(), 1)
            .await;
        v["messages"][0]["id"].as_i64().unwrap()
    }

    async fn sendgrid_post(
        app: &TestApp,
        body: &[u8],
        sig: Option<String>,
        ts: &str,
    ) -> reqwest::Response {
        let mut req = app
            .http
            .post(app.url("/email/webhooks/sendgrid"))
            .header("Content-Type", "application/json")
            .header("X-Twilio-Email-Event-Webhook-Timestamp", ts)
            .body(body.to_vec());
        if let Some(sig) = sig {
            req = req.header("X-Twilio-Email-Event-Webhook-Signature", sig);
        }
        req.send().await.unwrap()
    }

    /// SendGrid's signature: ECDSA P-256 / SHA-256 over timestamp + body, DER, base64.
    fn sendgrid_sign(key: &p256::ecdsa::SigningKey, ts: &str, body: &[u8]) -> String {
        let mut payload = ts.as_bytes().to_vec();
        payload.extend_from_slice(body);
        let sig: p256::ecdsa::Signature = key.sign(&payload);
        B64.encode(sig.to_der().as_bytes())
    }

    async fn events_of(app: &TestApp, id: i64) -> i64 {
        count(
            app,
            &format!("SELECT COUNT(*) FROM message_events WHERE message_id = {id}"),
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sendgrid_events_are_verified_and_applied_once() {
        let app = email_app().await;
        let id = sent_email(&app, "sendgrid", "sgmsg1").await;
        let body = serde_json::to_vec(&json!([
            {"email": "grace@example.com", "timestamp": 1_763_000_000, "event": "processed", "sg_event_id": "ev1", "sg_message_id": "sgmsg1.filter0001.1.0"},
            {"email": "grace@example.com", "timestamp": 1_763_000_010, "event": "delivered", "sg_event_id": "ev2", "sg_message_id": "sgmsg1.filter0001.1.0", "omega_message_id": id.to_string()},
            {"email": "grace@example.com", "timestamp": 1_763_000_020, "event": "open", "sg_event_id": "ev3", "omega_message_id": id.to_string()},
            {"email": "grace@example.com", "timestamp": 1_763_000_030, "event": "spamreport", "sg_event_id": "ev4", "omega_message_id": id.to_string()},
            {"email": "grace@example.com", "timestamp": 1_763_000_040, "event": "brand_new_event", "sg_event_id": "ev5", "omega_message_id": id.to_string()}
        ]))
        .unwrap();
        let now = chrono::Utc::now().timestamp();
        let (ts, next_second, hour_ago) = (
            now.to_string(),
            (now + 1).to_string(),
            (now - 3600).to_string(),
        );
        let ts = ts.as_str();
        let key = sendgrid_key();
        let good = sendgrid_sign(&key, ts, &body);

        // Refusals first: nothing may come of them.
        let other = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let mut tampered = body.clone();
        tampered[10] ^= 1;
        for (label, b, sig, t) in [
            ("missing signature", body.clone(), None, ts),
            (
                "another key",
                body.clone(),
                Some(sendgrid_sign(&other, ts, &body)),
                ts,
            ),
            ("changed body", tampered, Some(good.clone()), ts),
            (
                "changed timestamp",
                body.clone(),
                Some(good.clone()),
                next_second.as_str(),
            ),
            (
                "signed an hour ago",
                body.clone(),
                Some(sendgrid_sign(&key, &hour_ago, &body)),
                hour_ago.as_str(),
            ),
            (
                "garbage signature",
                body.clone(),
                Some("bm90IGEgc2lnbmF0dXJl".into()),
                ts,
            ),
        ] {
            let resp = sendgrid_post(&app, &b, sig, t).await;
            assert_eq!(resp.status(), 403, "{label}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(events_of(&app, id).await, 1, "only the record's own event");

        for _ in 0..2 {
            let resp = sendgrid_post(&app, &body, Some(good.clone()), ts).await;
            assert_eq!(resp.status(), 200);
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["updated"], 5);
        }
        // record + five events, each once although the batch came twice.
        wait_for("the events", Duration::from_secs(20), || async {
            (events_of(&app, id).await == 6).then_some(())
        })
        .await;
        eventually(
            &app,
            "read",
            &format!("SELECT COUNT(*) FROM messages WHERE id = {id} AND status = 'read'"),
            1,
        )
        .await;
        eventually(&app, "the consent", "SELECT COUNT(*) FROM clients WHERE id = 5 AND email_opt_in = false AND email_opt_out_reason LIKE 'sendgrid spamreport%'", 1).await;
        let sources = count(&app, &format!("SELECT COUNT(*) FROM message_events WHERE message_id = {id} AND source = 'sendgrid:brand_new_event'")).await;
        assert_eq!(sources, 1, "an unknown event is kept");

        // A bounce fails the message and withdraws consent.
        let id2 = sent_email(&app, "sendgrid", "sgmsg2").await;
        let body = serde_json::to_vec(&json!([{"event": "bounce", "type": "bounce", "reason": "550 5.1.1 no such user", "sg_event_id": "ev9", "sg_message_id": "sgmsg2.x", "timestamp": 1_763_000_200}])).unwrap();
        let resp = sendgrid_post(&app, &body, Some(sendgrid_sign(&key, ts, &body)), ts).await;
        assert_eq!(resp.status(), 200);
        eventually(&app, "the bounce", &format!("SELECT COUNT(*) FROM messages WHERE id = {id2} AND status = 'failed' AND error_code = 'bounce' AND error_message = '550 5.1.1 no such user'"), 1).await;

        // Signed but malformed: 422, never 500.
        for bad in [
            &b"[{\"event\": \"open\""[..],
            b"{\"event\": \"open\"}",
            b"[{\"no_event\": 1}]",
        ] {
            let resp = sendgrid_post(&app, bad, Some(sendgrid_sign(&key, ts, bad)), ts).await;
            assert_eq!(resp.status(), 422, "{}", String::from_utf8_lossy(bad));
        }
        let resp = app
            .http
            .post(app.url("/email/webhooks/sendgrid"))
            .header("Content-Type", "text/plain")
            .header("X-Twilio-Email-Event-Webhook-Timestamp", ts)
            .header(
                "X-Twilio-Email-Event-Webhook-Signature",
                sendgrid_sign(&key, ts, b"[]"),
            )
            .body("[]")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 422, "wrong content type");
        assert_eq!(
            oversized(&app, "/email/webhooks/sendgrid", "application/json").await,
            413
        );
        let resp = app
            .http
            .post(app.url("/email/webhooks/yahoo"))
            .json(&json!([]))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 422);
    }

    fn mailgun_body(key: &str, ts: &str, token: &str, event: Value) -> Value {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(format!("{ts}{token}").as_bytes());
        json!({"signature": {"timestamp": ts, "token": token, "signature": hex::encode(mac.finalize().into_bytes())}, "event-data": event})
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mailgun_and_postmark_webhooks() {
        let app = email_app().await;
        let id = sent_email(&app, "mailgun", "<mg1@mail.example.com>").await;
        let now = chrono::Utc::now().timestamp();
        let delivered = json!({"event": "delivered", "id": "mgev1", "timestamp": now as f64, "message": {"headers": {"message-id": "<mg1@mail.example.com>"}}});
        let post = |body: Value| {
            let app = &app;
            async move {
                app.http
                    .post(app.url("/email/webhooks/mailgun"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        };
        let stale = (now - 600).to_string();
        let fresh = now.to_string();
        assert_eq!(
            post(mailgun_body("wrong-key", &fresh, "tok1", delivered.clone())).await,
            403
        );
        assert_eq!(
            post(mailgun_body(
                "mailgun-signing-key",
                &stale,
                "tok2",
                delivered.clone()
            ))
            .await,
            403,
            "stale"
        );
        // Mailgun signs timestamp + token only: a token is accepted once.
        assert_eq!(
            post(mailgun_body(
                "mailgun-signing-key",
                &fresh,
                "tok4",
                delivered.clone()
            ))
            .await,
            200
        );
        assert_eq!(
            post(mailgun_body(
                "mailgun-signing-key",
                &fresh,
                "tok4",
                delivered.clone()
            ))
            .await,
            403,
            "a replayed token"
        );
        eventually(
            &app,
            "delivered",
            &format!("SELECT COUNT(*) FROM messages WHERE id = {id} AND status = 'delivered'"),
            1,
        )
        .await;
        let complained = json!({"event": "complained", "id": "mgev2", "timestamp": now as f64, "user-variables": {"omega_message_id": id.to_string()}});
        assert_eq!(
            post(mailgun_body(
                "mailgun-signing-key",
                &fresh,
                "tok5",
                complained
            ))
            .await,
            200
        );
        eventually(
            &app,
            "the complaint",
            "SELECT COUNT(*) FROM clients WHERE id = 5 AND email_opt_in = false",
            1,
        )
        .await;

        // Postmark: Basic credentials.
        let pm = sent_email(&app, "postmark", "pm-0001").await;
        let record = json!({"RecordType": "Delivery", "MessageID": "pm-0001", "DeliveredAt": "2026-11-24T01:00:00Z", "Recipient": "grace@example.com"});
        let postmark = |user: &str, password: &str, body: &Value| {
            app.http
                .post(app.url("/email/webhooks/postmark"))
                .basic_auth(user, Some(password))
                .json(body)
                .send()
        };
        assert_eq!(
            postmark("postmark", "wrong", &record)
                .await
                .unwrap()
                .status(),
            403
        );
        let resp = app
            .http
            .post(app.url("/email/webhooks/postmark"))
            .json(&record)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "no credentials");
        assert_eq!(
            postmark("postmark", "hook-secret", &json!({"MessageID": "pm-0001"}))
                .await
                .unwrap()
                .status(),
            422
        );
        assert_eq!(
            postmark("postmark", "hook-secret", &record)
                .await
                .unwrap()
                .status(),
            200
        );
        eventually(
            &app,
            "postmark delivery",
            &format!("SELECT COUNT(*) FROM messages WHERE id = {pm} AND status = 'delivered'"),
            1,
        )
        .await;
    }
}

mod ses {
    use super::*;
    use poem::{EndpointExt, Route, handler, web::Data};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:omega-ses";

    struct Signer {
        dir: tempfile::TempDir,
    }

    impl Signer {
        /// A throwaway RSA key and self-signed certificate, made with the openssl CLI.
        fn new() -> Signer {
            let dir = tempfile::tempdir().unwrap();
            let ok = std::process::Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "1",
                    "-subj",
                    "/CN=sns.test",
                ])
                .arg("-keyout")
                .arg(dir.path().join("key.pem"))
                .arg("-out")
                .arg(dir.path().join("cert.pem"))
                .output()
                .expect("openssl is installed");
            assert!(
                ok.status.success(),
                "{}",
                String::from_utf8_lossy(&ok.stderr)
            );
            Signer { dir }
        }

        fn cert(&self) -> String {
            std::fs::read_to_string(self.dir.path().join("cert.pem")).unwrap()
        }

        /// SNS's signature (version 2: SHA256withRSA) over the canonical text.
        fn sign(&self, text: &str) -> String {
            let input = self.dir.path().join("text");
            std::fs::write(&input, text).unwrap();
            let out = std::process::Command::new("openssl")
                .args(["dgst", "-sha256", "-sign"])
                .arg(self.dir.path().join("key.pem"))
                .arg(&input)
                .output()
                .unwrap();
            assert!(out.status.success());
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, out.stdout)
        }
    }

    /// An SNS `Timestamp` `offset_secs` from now.
    fn sns_time(offset_secs: i64) -> String {
        (chrono::Utc::now() + chrono::Duration::seconds(offset_secs))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    /// The text SNS signs, from AWS's documentation: `Name\nvalue\n` for these keys in order.
    fn canonical(msg: &Value) -> String {
        let keys: &[&str] = if msg["Type"] == "Notification" {
            &[
                "Message",
                "MessageId",
                "Subject",
                "Timestamp",
                "TopicArn",
                "Type",
            ]
        } else {
            &[
                "Message",
                "MessageId",
                "SubscribeURL",
                "Timestamp",
                "Token",
                "TopicArn",
                "Type",
            ]
        };
        keys.iter()
            .filter_map(|k| msg[*k].as_str().map(|v| format!("{k}\n{v}\n")))
            .collect()
    }

    #[handler]
    fn cert(pem: Data<&Arc<String>>) -> String {
        pem.0.as_str().to_owned()
    }

    #[handler]
    fn confirm(hits: Data<&Arc<AtomicUsize>>) -> &'static str {
        hits.fetch_add(1, Ordering::SeqCst);
        "<ConfirmSubscriptionResponse/>"
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ses_events_arrive_through_signed_sns_messages() {
        let signer = Signer::new();
        let hits = Arc::new(AtomicUsize::new(0));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let routes = Route::new()
            .at("/cert.pem", poem::get(cert))
            .at("/confirm", poem::get(confirm))
            .data(Arc::new(signer.cert()))
            .data(hits.clone());
        let bind = base
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        tokio::spawn(
            poem::Server::new(poem::listener::TcpListener::bind(bind))
                .run(poem::EndpointExt::boxed(routes)),
        );

        let mut sandbox = Sandbox::new(Deployment::Embedded).await;
        sandbox.set("OMEGA_SES_TOPIC_ARNS", TOPIC);
        sandbox.set("OMEGA_SNS_TRUSTED_CERT_PREFIX", &base);
        let app = TestApp::spawn_in(sandbox, omega::Role::Serve).await;
        app.onboard(1).await;
        let id = super::email::sent_email(&app, "ses", "0100018c-ses-1").await;

        let post = |msg: Value| {
            let app = &app;
            async move {
                app.http
                    .post(app.url("/email/webhooks/ses"))
                    .header("Content-Type", "application/json")
                    .body(msg.to_string())
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        };
        let signed = |mut msg: Value| {
            msg["SignatureVersion"] = json!("2");
            msg["SigningCertURL"] = json!(format!("{base}cert.pem"));
            msg["Signature"] = json!(signer.sign(&canonical(&msg)));
            msg
        };

        let confirmation = signed(json!({
            "Type": "SubscriptionConfirmation", "MessageId": "sub-1", "Token": "tok",
            "TopicArn": TOPIC, "Message": "You have chosen to subscribe",
            "SubscribeURL": format!("{base}confirm"), "Timestamp": sns_time(0)
        }));
        assert_eq!(post(confirmation).await, 200);
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "the subscription was confirmed"
        );

        let notification = |sns_id: &str, event: Value| {
            signed(json!({
                "Type": "Notification", "MessageId": sns_id, "TopicArn": TOPIC,
                "Message": event.to_string(), "Timestamp": sns_time(1)
            }))
        };
        let delivery = notification(
            "n-1",
            json!({"eventType": "Delivery", "mail": {"messageId": "0100018c-ses-1", "timestamp": "2026-11-24T01:00:00Z"}}),
        );

        // Refused: other topic, changed message, certificate from elsewhere, no signature.
        let mut other_topic = delivery.clone();
        other_topic["TopicArn"] = json!("arn:aws:sns:us-east-1:999999999999:evil");
        let other_topic = signed(other_topic);
        let mut changed = delivery.clone();
        changed["Message"] = json!(
            changed["Message"]
                .as_str()
                .unwrap()
                .replace("Delivery", "Open")
        );
        let mut elsewhere = delivery.clone();
        elsewhere["SigningCertURL"] = json!("https://evil.example.com/cert.pem");
        let mut unsigned = delivery.clone();
        unsigned.as_object_mut().unwrap().remove("Signature");
        let mut stale = delivery.clone();
        stale["Timestamp"] = json!(sns_time(-3600));
        let stale = signed(stale);
        for (label, msg) in [
            ("topic", other_topic),
            ("changed", changed),
            ("cert host", elsewhere),
            ("unsigned", unsigned),
            ("an hour old", stale),
        ] {
            assert_eq!(post(msg).await, 403, "{label}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            count(
                &app,
                &format!("SELECT COUNT(*) FROM message_events WHERE message_id = {id}")
            )
            .await,
            1
        );

        assert_eq!(post(delivery.clone()).await, 200);
        assert_eq!(post(delivery).await, 200, "SNS redelivers: recorded once");
        eventually(
            &app,
            "delivered",
            &format!("SELECT COUNT(*) FROM messages WHERE id = {id} AND status = 'delivered'"),
            1,
        )
        .await;
        let bounce = |sns_id: &str, ses_id: &str| {
            notification(
                sns_id,
                json!({"eventType": "Bounce", "mail": {"messageId": ses_id, "tags": {"omega_message_id": [id.to_string()]}},
                "bounce": {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": "grace@example.com", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]}}),
            )
        };
        // Issue 14, item 5: the tag names our message, but the event is about another email
        // (another SES message id): whoever sent that one chose the tag. Not applied.
        assert_eq!(post(bounce("n-forged", "0100018c-someone-else")).await, 200);
        assert_eq!(post(bounce("n-2", "0100018c-ses-1")).await, 200);
        eventually(&app, "the bounce's consent", "SELECT COUNT(*) FROM clients WHERE id = 5 AND email_opt_in = false AND email_opt_out_reason LIKE 'ses bounce%'", 1).await;
        assert_eq!(
            count(
                &app,
                &format!("SELECT COUNT(*) FROM message_events WHERE message_id = {id}")
            )
            .await,
            3
        );
        // Signed, but the Message is not JSON: 422.
        let broken = signed(
            json!({"Type": "Notification", "MessageId": "n-3", "TopicArn": TOPIC, "Message": "{not json", "Timestamp": sns_time(2)}),
        );
        assert_eq!(post(broken).await, 422);
    }
}

async fn any_channel_is_processed(d: Deployment) {
    let app = TestApp::spawn(d).await;
    app.onboard(1).await;
    let key = app.business_key(1).await;
    let post = |body: Value| {
        let app = &app;
        let key = key.clone();
        async move { app.post("/messages/process", Some(&key), &body).await }
    };
    // An email from someone unknown: a lead with that address, and a conversation.
    let resp = post(json!({"business_id": 1, "channel": "email", "direction": "inbound", "location_id": 10,
        "from": " newcomer@example.com ", "to": "downtown@example.com", "subject": "Gift cards?", "body": "Do you sell gift cards?",
        "provider": "external", "provider_message_id": "ext-1", "sender_type": "client"}))
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["accepted"], 1);
    let messages = app
        .request_messages(1, v["request_id"].as_str().unwrap(), 1)
        .await;
    let m = &messages["messages"][0];
    assert_eq!(m["status"], "received");
    assert_eq!(m["direction"], "inbound");
    assert_eq!(m["subject"], "Gift cards?");
    assert!(m["client_id"].as_i64().unwrap() < 0, "a lead: {m}");
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM clients WHERE email = 'newcomer@example.com' AND client_type = 'lead'").await,
        1
    );
    // An outbound SMS to a known client, sent by another system.
    let resp = post(json!({"business_id": 1, "channel": "sms", "direction": "outbound", "client_id": 5, "location_id": 10,
        "from": DOWNTOWN, "to": "+1 (415) 555-0123", "body": "See you at 3", "provider": "twilio", "sender_type": "staff",
        "sent_at": "2026-11-20T15:00:00Z"}))
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let messages = app
        .request_messages(1, v["request_id"].as_str().unwrap(), 1)
        .await;
    let m = &messages["messages"][0];
    assert_eq!(
        (m["client_id"].as_i64(), m["status"].as_str()),
        (Some(5), Some("sent"))
    );
    assert_eq!(m["to"], GRACE);

    // Bad input: 422 with the field, nothing queued.
    for (body, loc) in [
        (
            json!({"business_id": 1, "channel": "note", "direction": "inbound", "from": GRACE, "to": DOWNTOWN, "body": "x", "provider": "twilio", "sender_type": "client"}),
            json!(["body", "channel"]),
        ),
        (
            json!({"business_id": 1, "channel": "sms", "direction": "inbound", "from": "nope", "to": DOWNTOWN, "body": "x", "provider": "twilio", "sender_type": "client"}),
            json!(["body", "from"]),
        ),
        (
            json!({"business_id": 1, "channel": "email", "direction": "sideways", "from": "a@example.com", "to": "b@example.com", "body": "x", "provider": "ses", "sender_type": "client"}),
            json!(["body", "direction"]),
        ),
        (
            json!({"business_id": 1, "channel": "sms", "direction": "inbound", "from": GRACE, "to": DOWNTOWN, "provider": "twilio", "sender_type": "client"}),
            json!(["body", "body"]),
        ),
        (
            json!({"business_id": 1, "channel": "sms", "direction": "inbound", "from": GRACE, "to": DOWNTOWN, "body": "x", "provider": "twilio", "sender_type": "client", "metadata": [1]}),
            json!(["body", "metadata"]),
        ),
    ] {
        let resp = post(body.clone()).await;
        assert_eq!(resp.status(), 422, "{body}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["detail"][0]["loc"], loc, "{v}");
    }
    let resp = post(json!({"business_id": 2, "channel": "sms", "direction": "inbound", "from": GRACE, "to": DOWNTOWN, "body": "x", "provider": "twilio", "sender_type": "client"})).await;
    assert_eq!(
        resp.status(),
        403,
        "a business key is for its own business only"
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages").await, 2);
}
both_deployments!(process, any_channel_is_processed);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_businesss_own_twilio_account_signs_its_webhooks() {
    let app = twilio_app(Deployment::Embedded).await;
    let own_account = "AC00000000000000000000000000000077";
    let own_token = "own-auth-token-0123456789";
    let mut body = common::onboard_body(2, "Own Account Spa");
    body["locations"] = json!([{"id": 20, "name": "Harbor", "phone_number": "+14155550200"}]);
    body["providers"] = json!({"twilio": {"account_sid": own_account, "auth_token": own_token}});
    assert_eq!(
        app.post("/business/onboard", Some(PLATFORM_KEY), &body)
            .await
            .status(),
        202
    );
    eventually(
        &app,
        "business 2",
        "SELECT COUNT(*) FROM locations WHERE business_id = 2",
        1,
    )
    .await;
    let path = "/twilio/sms/incoming";
    let url = format!("{PUBLIC}{path}");
    let params = [
        ("AccountSid", own_account),
        ("MessageSid", "SM700"),
        ("From", GRACE),
        ("To", "+14155550200"),
        ("Body", "hi"),
    ];
    // The global account's token does not sign for the business's own account.
    let resp = post_form(&app, path, &params, Some(sign(TOKEN, &url, &params))).await;
    assert_eq!(resp.status(), 403);
    let resp = post_form(&app, path, &params, Some(sign(own_token, &url, &params))).await;
    assert_eq!(resp.status(), 200);
    eventually(
        &app,
        "the message",
        "SELECT COUNT(*) FROM messages WHERE business_id = 2 AND provider_message_id = 'SM700'",
        1,
    )
    .await;
}
