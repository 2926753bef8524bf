//! Sending through providers: the sandbox's whole life cycle, consent, and the Twilio and
//! SendGrid clients against local mock servers (failures the real APIs produce: 5xx then
//! success, permanent error codes), with no double send on a re-run.
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Deployment, PLATFORM_KEY, Sandbox, TestApp, wait_for};
use poem::{EndpointExt, Request, Response, Route, handler, http::StatusCode, web::Data};
use serde_json::{Value, json};

async fn messages(app: &TestApp, v: &Value, n: usize) -> Vec<Value> {
    app.request_messages(1, v["request_id"].as_str().unwrap(), n)
        .await["messages"]
        .as_array()
        .unwrap()
        .clone()
}

async fn settled(
    app: &TestApp,
    request: &Value,
    n: usize,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    wait_for(
        "the messages to settle",
        Duration::from_secs(20),
        || async {
            let m = messages(app, request, n).await;
            done(&m).then_some(m)
        },
    )
    .await
}

fn statuses(m: &Value) -> Vec<String> {
    m["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap().to_owned())
        .collect()
}

async fn sandbox_sms_life_cycle(d: Deployment) {
    let app = TestApp::spawn(d).await;
    app.onboard(1).await;
    let body = json!({"category": "reminder", "location_id": 10, "messages": [
        {"client_id": 5, "to_number": "+14155550123", "message": "See you at 3"},
        {"client_id": 5, "to_number": "+15005550001", "message": "invalid number"},
        {"client_id": 5, "to_number": "+15005550004", "message": "opted out at the carrier"}
    ]});
    let ok: Value = app
        .post("/businesses/1/sms/send", Some(PLATFORM_KEY), &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ok["accepted"], 3);
    let m = settled(&app, &ok, 3, |m| {
        m[0]["status"] == "delivered" && m[1]["status"] == "failed" && m[2]["status"] == "failed"
    })
    .await;
    assert_eq!(m[0]["provider"], "sandbox");
    assert_eq!(
        m[0]["from"], "+14155550100",
        "the location's number is the From"
    );
    assert!(
        m[0]["provider_message_id"]
            .as_str()
            .unwrap()
            .starts_with("SB")
    );
    assert_eq!(statuses(&m[0]), ["queued", "sent", "delivered"]);
    assert_eq!(
        (m[1]["error_code"].as_str(), m[2]["error_code"].as_str()),
        (Some("21211"), Some("21610"))
    );
    assert_eq!(statuses(&m[1]), ["queued", "failed"]);
    // Permanent failures are not retried: every send job settled once, none dead. A job is
    // marked done just after its message settles: wait for the third, with a deadline.
    let send = wait_for(
        "the send jobs to be done",
        Duration::from_secs(10),
        || async {
            let stats = app.queue.stats().await.unwrap();
            let send = stats
                .iter()
                .find(|s| s.job_type == "send_sms")
                .unwrap()
                .clone();
            (send.done + send.dead + send.retrying >= 3).then_some(send)
        },
    )
    .await;
    assert_eq!((send.done, send.dead, send.retrying), (3, 0, 0));
}
both_deployments!(sandbox_sms, sandbox_sms_life_cycle);

/// Many sends at once share transactions in the workers (group commit): each message is
/// still recorded once, with its own complete history, and each conversation ends on its
/// newest message, whatever batches they fell into.
async fn concurrent_sends_share_transactions_correctly(d: Deployment) {
    use entities::{conversation, message, message_event};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

    let app = TestApp::spawn(d).await;
    app.onboard(1).await;
    let (requests, per_request, clients) = (4, 150, 25);
    let posts = (0..requests).map(|r| {
        let messages: Vec<Value> = (0..per_request)
            .map(|i| {
                // Unknown clients 100..125 are created from their number; every tenth
                // message goes to a number the sandbox refuses.
                let to = if i % 10 == 0 {
                    "+15005550001".to_owned()
                } else {
                    format!("+1415555{:04}", i % clients)
                };
                json!({"client_id": 100 + i % clients, "to_number": to, "message": format!("r{r} m{i}")})
            })
            .collect();
        let body = json!({"category": "reminder", "location_id": 10, "messages": messages});
        let app = &app;
        async move {
            let ok: Value = app
                .post("/businesses/1/sms/send", Some(PLATFORM_KEY), &body)
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(ok["accepted"], per_request);
        }
    });
    futures::future::join_all(posts).await;
    let total = requests * per_request;
    let rows = wait_for(
        "every message to settle",
        Duration::from_secs(60),
        || async {
            let rows = message::Entity::find()
                .filter(message::Column::BusinessId.eq(1))
                .all(&app.db)
                .await
                .unwrap();
            let settled = rows
                .iter()
                .filter(|m| m.status == "delivered" || m.status == "failed")
                .count();
            (rows.len() == total as usize && settled == rows.len()).then_some(rows)
        },
    )
    .await;
    let slots: std::collections::HashSet<_> = rows
        .iter()
        .map(|m| (m.request_id.clone(), m.request_index))
        .collect();
    assert_eq!(slots.len(), rows.len(), "a message was recorded twice");
    let events = message_event::Entity::find().all(&app.db).await.unwrap();
    for m in &rows {
        let mut history: Vec<_> = events.iter().filter(|e| e.message_id == m.id).collect();
        history.sort_by_key(|e| e.id);
        let history: Vec<&str> = history.iter().map(|e| e.status.as_str()).collect();
        let expected: &[&str] = if m.to_addr.as_deref() == Some("+15005550001") {
            assert_eq!(m.error_code.as_deref(), Some("21211"));
            &["queued", "failed"]
        } else {
            assert!(m.provider_message_id.is_some() && m.delivered_at.is_some());
            &["queued", "sent", "delivered"]
        };
        assert_eq!(history, expected, "history of message {}", m.id);
    }
    let conversations = conversation::Entity::find()
        .filter(conversation::Column::BusinessId.eq(1))
        .all(&app.db)
        .await
        .unwrap();
    assert_eq!(
        conversations.len(),
        clients as usize,
        "one conversation per client"
    );
    for c in &conversations {
        let newest = rows
            .iter()
            .filter(|m| m.conversation_id == c.id)
            .max_by_key(|m| (m.created_at, m.id))
            .unwrap();
        assert_eq!(c.last_message_id, Some(newest.id), "conversation {}", c.id);
        assert_eq!(c.channels & 1, 1, "the conversation knows it has SMS");
    }
    let stats = app.queue.stats().await.unwrap();
    for s in &stats {
        assert_eq!((s.dead, s.retrying), (0, 0), "{s:?}");
    }
}
both_deployments!(
    concurrent_sends,
    concurrent_sends_share_transactions_correctly
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_and_sandbox_email() {
    let app = TestApp::spawn(Deployment::Embedded).await;
    app.onboard(1).await;
    // Client 6 did not opt in to email.
    let body = json!({"category": "transactional", "from_email": "desk@spa.example", "messages": [
        {"client_id": 6, "to_email": "alan@example.com", "subject": "Hi", "content": {"text": "x"}},
        {"client_id": 5, "to_email": "grace@bounce.example", "subject": "Hi", "content": {"html": "<p>x</p>"}},
        {"client_id": 5, "to_email": "grace@example.com", "subject": "Hi", "content": {"text": "x", "html": "<p>x</p>"}}
    ]});
    let ok: Value = app
        .post("/businesses/1/email/send", Some(PLATFORM_KEY), &body)
        .await
        .json()
        .await
        .unwrap();
    let m = settled(&app, &ok, 3, |m| {
        m[0]["status"] == "failed" && m[1]["status"] == "failed" && m[2]["status"] == "delivered"
    })
    .await;
    assert_eq!(m[0]["error_code"], "opted_out");
    assert!(
        m[0]["error_message"]
            .as_str()
            .unwrap()
            .contains("opted out of email")
    );
    assert_eq!(m[0]["provider_message_id"], Value::Null, "never sent");
    assert_eq!(m[1]["error_code"], "bounce");
    assert_eq!(statuses(&m[1]), ["queued", "sent", "failed"]);
    assert_eq!(m[2]["subject"], "Hi");
}

/// What a mock provider saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, String, String)>>>);

#[handler]
async fn twilio_mock(req: &Request, body: String, seen: Data<&Seen>) -> Response {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let form: Vec<(String, String)> = serde_urlencoded::from_str(&body).unwrap();
    let to = form
        .iter()
        .find(|(k, _)| k == "To")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let earlier = seen
        .0
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, _, b)| b.contains(&format!("To={}", urlencode(&to))))
        .count();
    seen.0
        .0
        .lock()
        .unwrap()
        .push((req.uri().path().to_owned(), auth, body));
    let json = |status: StatusCode, v: Value| {
        Response::builder()
            .status(status)
            .content_type("application/json")
            .body(v.to_string())
    };
    match to.as_str() {
        "+15005550002" => json(
            StatusCode::BAD_REQUEST,
            json!({"code": 21612, "message": "The 'To' phone number is not currently reachable.", "status": 400}),
        ),
        "+14155550124" if earlier == 0 => json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"code": 20500, "message": "Internal error"}),
        ),
        _ => json(
            StatusCode::CREATED,
            json!({"sid": format!("SM{:032}", earlier + 1), "status": "queued"}),
        ),
    }
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("x", s)]).unwrap()[2..].to_owned()
}

async fn mock(route: Route, seen: Seen) -> String {
    common::serve_mock(route.data(seen)).await
}

/// An omega (onboarded business 1) whose Twilio account is a local mock serving `endpoint`.
async fn app_with_twilio_mock(
    d: Deployment,
    endpoint: impl poem::Endpoint + 'static,
    seen: Seen,
    public_url: Option<&str>,
) -> TestApp {
    let base = mock(
        Route::new().at("/2010-04-01/Accounts/:sid/Messages.json", endpoint),
        seen,
    )
    .await;
    let mut sandbox = Sandbox::new(d).await;
    sandbox.set(
        "OMEGA_TWILIO_ACCOUNT_SID",
        "AC00000000000000000000000000000001",
    );
    sandbox.set("OMEGA_TWILIO_AUTH_TOKEN", "auth-token-0123456789");
    sandbox.set("OMEGA_TWILIO_API_BASE", &base);
    if let Some(url) = public_url {
        sandbox.set("OMEGA_PUBLIC_URL", url);
    }
    let app = TestApp::spawn_in(sandbox, omega::Role::Serve).await;
    app.onboard(1).await;
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_client_sends_retries_and_fails_permanently() {
    let seen = Seen::default();
    let app = app_with_twilio_mock(
        Deployment::Scaled,
        poem::post(twilio_mock),
        seen.clone(),
        Some("https://omega.example.com"),
    )
    .await;
    let body = json!({"category": "conversation", "location_id": 10, "messages": [
        {"client_id": 5, "to_number": "+14155550123", "message": "Hello & welcome", "media_urls": ["https://cdn.example/a.png"]},
        {"client_id": 6, "to_number": "+14155550124", "message": "retried"},
        {"client_id": 5, "to_number": "+15005550002", "message": "unreachable"}
    ]});
    let ok: Value = app
        .post("/businesses/1/sms/send", Some(PLATFORM_KEY), &body)
        .await
        .json()
        .await
        .unwrap();
    let m = settled(&app, &ok, 3, |m| {
        m[0]["status"] == "queued"
            && m[0]["provider_message_id"].is_string()
            && m[1]["provider_message_id"].is_string()
            && m[2]["status"] == "failed"
    })
    .await;
    assert_eq!(m[0]["provider"], "twilio");
    assert_eq!(m[2]["error_code"], "21612");
    assert_eq!(statuses(&m[1]), ["queued", "queued"]);
    let requests = seen.0.lock().unwrap().clone();
    assert_eq!(requests.len(), 4, "one each, plus one retry after the 503");
    let (path, auth, form) = requests
        .iter()
        .find(|(_, _, b)| b.contains("Hello"))
        .unwrap()
        .clone();
    assert_eq!(
        path,
        "/2010-04-01/Accounts/AC00000000000000000000000000000001/Messages.json"
    );
    let expected_auth = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            "AC00000000000000000000000000000001:auth-token-0123456789"
        )
    );
    assert_eq!(auth, expected_auth);
    let form: Vec<(String, String)> = serde_urlencoded::from_str(&form).unwrap();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("To"), Some("+14155550123"));
    assert_eq!(get("From"), Some("+14155550100"));
    assert_eq!(get("Body"), Some("Hello & welcome"));
    assert_eq!(get("MediaUrl"), Some("https://cdn.example/a.png"));
    assert_eq!(
        get("StatusCallback"),
        Some("https://omega.example.com/twilio/sms/status")
    );

    // A re-run of a sent message's job sends nothing: push the first job again.
    let rid = ok["request_id"].as_str().unwrap();
    let item = entities::record::RecordItem {
        message_id: None,
        client_id: 5,
        wl_user_id: None,
        from: None,
        to: "+14155550123".into(),
        subject: None,
        body: "Hello & welcome".into(),
        cc: vec![],
        bcc: vec![],
        attachments: json!([]),
        status: entities::types::MessageStatus::Queued,
        provider_message_id: None,
        metadata: json!({}),
        scheduled_at: None,
    };
    let batch = entities::record::RecordBatch {
        business_id: 1,
        request_id: rid.into(),
        channel: entities::types::Channel::Sms,
        direction: entities::types::Direction::Outbound,
        category: None,
        notification_type: None,
        staff_id: None,
        provider: None,
        sent_by: None,
        sender_type: entities::types::UserType::Staff,
        sent_at: None,
        location_id: Some(10),
        items: vec![item],
    };
    let job = jobs::Job::SendSms(entities::outbound::SendJob {
        batch,
        index: 0,
        media_urls: vec![],
        html: None,
        from_name: None,
        reply_to: None,
        thread: None,
    });
    jobs::Producer::new(app.queue.clone())
        .enqueue(&[job], rid, None)
        .await
        .unwrap();
    wait_for("the re-run to settle", Duration::from_secs(20), || async {
        let s = app.queue.stats().await.unwrap();
        let s = s.iter().find(|s| s.job_type == "send_sms").unwrap().clone();
        (s.done == 4 && s.pending + s.running + s.retrying == 0).then_some(())
    })
    .await;
    assert_eq!(seen.0.lock().unwrap().len(), 4, "no second send");
    assert_eq!(app.count("SELECT COUNT(*) FROM messages").await, 3);
}

#[handler]
async fn sendgrid_mock(req: &Request, body: String, seen: Data<&Seen>) -> Response {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let n = {
        let mut s = seen.0.0.lock().unwrap();
        s.push((req.uri().path().to_owned(), auth, body.clone()));
        s.len()
    };
    let v: Value = serde_json::from_str(&body).unwrap();
    if v["personalizations"][0]["to"][0]["email"] == "rejected@example.com" {
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .content_type("application/json")
            .body(json!({"errors": [{"message": "Does not contain a valid address.", "field": "personalizations.0.to"}]}).to_string());
    }
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .header("X-Message-Id", format!("sg-{n}"))
        .body("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sendgrid_client_sends_mail_send_requests() {
    let seen = Seen::default();
    let base = mock(
        Route::new().at("/v3/mail/send", poem::post(sendgrid_mock)),
        seen.clone(),
    )
    .await;
    let mut sandbox = Sandbox::new(Deployment::Embedded).await;
    sandbox.set("OMEGA_SENDGRID_API_KEY", "SG.test-key");
    sandbox.set("OMEGA_SENDGRID_API_BASE", &base);
    let app = TestApp::spawn_in(sandbox, omega::Role::Serve).await;
    app.onboard(1).await;
    let body = json!({"category": "transactional", "from_email": "desk@spa.example", "from_name": "Serenity", "reply_to": "help@spa.example", "messages": [
        {"client_id": 5, "to_email": "grace@example.com", "subject": "Your visit", "content": {"text": "Thanks", "html": "<b>Thanks</b>"},
         "cc_email": ["cc@example.com"], "attachments": [{"content": "aGVsbG8=", "content_type": "text/plain", "filename": "a.txt"}]},
        {"client_id": 5, "to_email": "rejected@example.com", "subject": "x", "content": {"text": "x"}}
    ]});
    let ok: Value = app
        .post("/businesses/1/email/send", Some(PLATFORM_KEY), &body)
        .await
        .json()
        .await
        .unwrap();
    let m = settled(&app, &ok, 2, |m| {
        m[0]["provider_message_id"].is_string() && m[1]["status"] == "failed"
    })
    .await;
    assert_eq!(m[0]["provider"], "sendgrid");
    assert_eq!(m[0]["status"], "queued");
    assert_eq!(m[1]["error_code"], "400");
    assert!(
        m[1]["error_message"]
            .as_str()
            .unwrap()
            .contains("valid address")
    );
    let requests = seen.0.lock().unwrap().clone();
    let (path, auth, sent) = requests
        .iter()
        .find(|(_, _, b)| b.contains("grace@"))
        .unwrap()
        .clone();
    assert_eq!(path, "/v3/mail/send");
    assert_eq!(auth, "Bearer SG.test-key");
    let sent: Value = serde_json::from_str(&sent).unwrap();
    let p = &sent["personalizations"][0];
    assert_eq!(p["to"][0]["email"], "grace@example.com");
    assert_eq!(p["cc"][0]["email"], "cc@example.com");
    assert_eq!(
        p["custom_args"]["omega_message_id"],
        m[0]["id"].as_i64().unwrap().to_string()
    );
    assert_eq!(
        sent["from"],
        json!({"email": "desk@spa.example", "name": "Serenity"})
    );
    assert_eq!(sent["reply_to"]["email"], "help@spa.example");
    assert_eq!(sent["subject"], "Your visit");
    assert_eq!(
        sent["content"],
        json!([{"type": "text/plain", "value": "Thanks"}, {"type": "text/html", "value": "<b>Thanks</b>"}])
    );
    assert_eq!(
        sent["attachments"],
        json!([{"content": "aGVsbG8=", "filename": "a.txt", "type": "text/plain"}])
    );
    assert_eq!(requests.len(), 2, "the 400 was not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_requests_are_validated() {
    let app = TestApp::spawn(Deployment::Embedded).await;
    app.onboard(1).await;
    let sms = |m: Value| json!({"category": "reminder", "location_id": 10, "messages": [m]});
    for (path, body, loc) in [
        (
            "/businesses/1/sms/send",
            json!({"category": "reminder", "messages": [{"client_id": 5, "to_number": "+14155550123", "message": "x"}]}),
            json!(["body", "location_id"]),
        ),
        (
            "/businesses/1/sms/send",
            sms(json!({"client_id": 5, "to_number": "0123", "message": "x"})),
            json!(["body", "messages", 0, "to_number"]),
        ),
        (
            "/businesses/1/sms/send",
            sms(json!({"client_id": 5, "to_number": "+14155550123", "message": ""})),
            json!(["body", "messages", 0, "message"]),
        ),
        (
            "/businesses/1/sms/send",
            sms(
                json!({"client_id": 5, "to_number": "+14155550123", "message": "x", "media_urls": ["ftp://x"]}),
            ),
            json!(["body", "messages", 0, "media_urls", 0]),
        ),
        (
            "/businesses/1/sms/send",
            json!({"category": "reminder", "location_id": 10, "provider": "sendgrid", "messages": [{"client_id": 5, "to_number": "+14155550123", "message": "x"}]}),
            json!(["body", "provider"]),
        ),
        (
            "/businesses/1/email/send",
            json!({"category": "reminder", "messages": [{"client_id": 5, "to_email": "a@example.com", "subject": "s", "content": {}}]}),
            json!(["body", "messages", 0, "content"]),
        ),
        (
            "/businesses/1/email/send",
            json!({"category": "reminder", "messages": [{"client_id": 5, "to_email": "a@example.com", "content": {"text": "x"}}]}),
            json!(["body", "messages", 0, "subject"]),
        ),
        (
            "/businesses/1/email/send",
            json!({"category": "reminder", "provider": "twilio", "messages": [{"client_id": 5, "to_email": "a@example.com", "subject": "s", "content": {"text": "x"}}]}),
            json!(["body", "provider"]),
        ),
    ] {
        let resp = app.post(path, Some(PLATFORM_KEY), &body).await;
        assert_eq!(resp.status(), 422, "{path} {body}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["detail"][0]["loc"], loc, "{path} {body}: {v}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM messages").await, 0);
}

static PROVIDER_UP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[handler]
async fn flaky_twilio(body: String, seen: Data<&Seen>) -> Response {
    seen.0
        .0
        .lock()
        .unwrap()
        .push((String::new(), String::new(), body.clone()));
    let json = |status: StatusCode, v: Value| {
        Response::builder()
            .status(status)
            .content_type("application/json")
            .body(v.to_string())
    };
    if body.contains("To=%2B15005550002") {
        return json(
            StatusCode::BAD_REQUEST,
            json!({"code": 21612, "message": "not reachable"}),
        );
    }
    if PROVIDER_UP.load(std::sync::atomic::Ordering::SeqCst) {
        json(
            StatusCode::CREATED,
            json!({"sid": "SM00000000000000000000000000000042", "status": "queued"}),
        )
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"code": 20500, "message": "down"}),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_messages_are_retried_for_real() {
    let seen = Seen::default();
    let app = app_with_twilio_mock(
        Deployment::Embedded,
        poem::post(flaky_twilio),
        seen.clone(),
        None,
    )
    .await;
    // The provider is down: the first message fails after its attempts; the second is permanent.
    let body = json!({"category": "reminder", "location_id": 10, "messages": [
        {"client_id": 5, "to_number": "+14155550123", "message": "outage"},
        {"client_id": 5, "to_number": "+15005550002", "message": "unreachable"}
    ]});
    let ok: Value = app
        .post("/businesses/1/sms/send", Some(PLATFORM_KEY), &body)
        .await
        .json()
        .await
        .unwrap();
    let m = settled(&app, &ok, 2, |m| {
        m[0]["status"] == "failed" && m[1]["status"] == "failed"
    })
    .await;
    assert_eq!(m[0]["error_code"], "retries_exhausted");
    assert_eq!(m[1]["error_code"], "21612");
    // A failed message recorded from elsewhere is not omega's to resend.
    let recorded = json!({"category": "reminder", "messages": [{"client_id": 5, "to_number": "+14155550123", "message": "elsewhere", "status": "failed"}]});
    let rec: Value = app
        .post("/businesses/1/sms/record", Some(PLATFORM_KEY), &recorded)
        .await
        .json()
        .await
        .unwrap();
    app.request_messages(1, rec["request_id"].as_str().unwrap(), 1)
        .await;

    let dry: Value = app
        .post(
            "/businesses/1/messages/retry-failed",
            Some(PLATFORM_KEY),
            &json!({"dry_run": true}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        dry,
        json!({"queued": 1, "skipped_permanent": 1, "message_ids": [m[0]["id"]]})
    );
    let calls_before = seen.0.lock().unwrap().len();
    PROVIDER_UP.store(true, std::sync::atomic::Ordering::SeqCst);
    let done: Value = app
        .post(
            "/businesses/1/messages/retry-failed",
            Some(PLATFORM_KEY),
            &json!({"channel": "sms"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["queued"], 1);
    let m = settled(&app, &ok, 2, |m| m[0]["provider_message_id"].is_string()).await;
    assert_eq!(m[0]["status"], "queued");
    assert_eq!(m[0]["error_code"], Value::Null);
    assert_eq!(
        statuses(&m[0]),
        ["queued", "failed", "queued", "queued"],
        "sent, failed, requeued, accepted"
    );
    assert_eq!(
        seen.0.lock().unwrap().len(),
        calls_before + 1,
        "one real resend"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM messages").await,
        3,
        "no second row"
    );
    // Nothing left to retry; bad input; the platform endpoint needs a platform key.
    let again: Value = app
        .post(
            "/messages/retry-failed",
            Some(PLATFORM_KEY),
            &json!({"business_id": 1}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["queued"], 0);
    assert_eq!(
        app.post(
            "/businesses/1/messages/retry-failed",
            Some(PLATFORM_KEY),
            &json!({"limit": 0})
        )
        .await
        .status(),
        422
    );
    assert_eq!(
        app.post(
            "/businesses/1/messages/retry-failed",
            Some(PLATFORM_KEY),
            &json!({"channel": "voice"})
        )
        .await
        .status(),
        422
    );
    let key1 = app.business_key(1).await;
    assert_eq!(
        app.post("/messages/retry-failed", Some(&key1), &json!({}))
            .await
            .status(),
        403
    );
    // The on-call script and the CLI find nothing more to do.
    let out = std::process::Command::new("scripts/retry-failed-messages")
        .args(["--business", "1", "--yes"])
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
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("would queue 0 failed message(s) again; skipped 1 permanent failure(s)"),
        "{text}"
    );
    assert!(text.contains("queued 0 failed message(s) again"), "{text}");
}

/// A minimal SMTP server that keeps every message it is given and refuses one recipient.
async fn smtp_sink(refuse: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let kept = Arc::new(Mutex::new(Vec::new()));
    let store = kept.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 sink ESMTP\r\n").await;
                let mut in_data = false;
                let mut data = String::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    if in_data {
                        if line == "." {
                            in_data = false;
                            store.lock().unwrap().push(std::mem::take(&mut data));
                            let _ = write.write_all(b"250 2.0.0 queued\r\n").await;
                        } else {
                            data.push_str(&line);
                            data.push('\n');
                        }
                        continue;
                    }
                    let upper = line.to_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") {
                        b"250-sink\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("RCPT") && line.contains(refuse) {
                        b"550 5.1.1 no such user here\r\n"
                    } else if upper.starts_with("DATA") {
                        in_data = true;
                        b"354 go ahead\r\n"
                    } else if upper.starts_with("QUIT") {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"250 OK\r\n"
                    };
                    let _ = write.write_all(reply).await;
                }
            });
        }
    });
    (format!("smtp://127.0.0.1:{port}"), kept)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_relays_mail_and_refusals_fail_the_message() {
    let (url, kept) = smtp_sink("nobody@example.com").await;
    let mut sandbox = Sandbox::new(Deployment::Embedded).await;
    sandbox.set("OMEGA_SMTP_URL", &url);
    let app = TestApp::spawn_in(sandbox, omega::Role::Serve).await;
    app.onboard(1).await;
    // Campaign mail: it carries the one-click unsubscribe headers (RFC 8058).
    let body = json!({"category": "campaign", "from_email": "desk@spa.example", "from_name": "Serenity", "messages": [
        {"client_id": 5, "to_email": "grace@example.com", "subject": "Your visit", "content": {"text": "Thanks", "html": "<b>Thanks</b>"},
         "attachments": [{"content": "aGVsbG8=", "content_type": "text/plain", "filename": "a.txt"}]},
        {"client_id": 5, "to_email": "nobody@example.com", "subject": "x", "content": {"text": "x"}}
    ]});
    let ok: Value = app
        .post("/businesses/1/email/send", Some(PLATFORM_KEY), &body)
        .await
        .json()
        .await
        .unwrap();
    let m = settled(&app, &ok, 2, |m| {
        m[0]["status"] == "sent" && m[1]["status"] == "failed"
    })
    .await;
    assert_eq!(m[0]["provider"], "smtp");
    let id = m[0]["id"].as_i64().unwrap();
    // The Message-ID omega set (on the sender's domain) names the message.
    let pid = m[0]["provider_message_id"].as_str().unwrap();
    assert!(
        pid.starts_with(&format!("<omega.{id}.")) && pid.ends_with(">"),
        "{pid}"
    );
    assert_eq!(m[1]["error_code"], "550");
    let mail = kept.lock().unwrap().clone();
    assert_eq!(mail.len(), 1, "the refused recipient got nothing");
    let mail = &mail[0];
    for needle in [
        "Subject: Your visit",
        "To: grace@example.com",
        "From: Serenity <desk@spa.example>",
        "Thanks",
        "<b>Thanks</b>",
        "a.txt",
        "List-Unsubscribe: <http://127.0.0.1:8080/unsubscribe/",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
    ] {
        assert!(mail.contains(needle), "{needle} missing from\n{mail}");
    }
}

static FIRST_429: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
static AFTER_429: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

#[handler]
async fn rate_limited_twilio() -> Response {
    // The first request is told to come back in 2 s; the next one is accepted.
    if FIRST_429.set(std::time::Instant::now()).is_ok() {
        return Response::builder()
            .status(StatusCode::TOO_MANY_REQUESTS)
            .header("Retry-After", "2")
            .content_type("application/json")
            .body(json!({"code": 20429, "message": "Too Many Requests"}).to_string());
    }
    let _ = AFTER_429.set(std::time::Instant::now());
    Response::builder()
        .status(StatusCode::CREATED)
        .content_type("application/json")
        .body(json!({"sid": "SM00000000000000000000000000000429", "status": "queued"}).to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let app = app_with_twilio_mock(
        Deployment::Scaled,
        poem::post(rate_limited_twilio),
        Seen::default(),
        None,
    )
    .await;
    let body = json!({"category": "reminder", "location_id": 10, "messages": [{"client_id": 5, "to_number": "+14155550123", "message": "x"}]});
    let ok: Value = app
        .post("/businesses/1/sms/send", Some(PLATFORM_KEY), &body)
        .await
        .json()
        .await
        .unwrap();
    settled(&app, &ok, 1, |m| m[0]["provider_message_id"].is_string()).await;
    // The test schedule would have retried within 200 ms; the provider asked for 2 s.
    let waited = *AFTER_429.get().unwrap() - *FIRST_429.get().unwrap();
    assert!(waited >= Duration::from_secs(2), "retried after {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_business_with_its_own_twilio_account_sends_through_it_by_default() {
    let seen = Seen::default();
    let base = mock(
        Route::new().at(
            "/2010-04-01/Accounts/:sid/Messages.json",
            poem::post(twilio_mock),
        ),
        seen.clone(),
    )
    .await;
    let mut sandbox = Sandbox::new(Deployment::Embedded).await;
    // The deployment's default is the sandbox; business 2 brings its own account.
    sandbox.set("OMEGA_DEFAULT_SMS_PROVIDER", "sandbox");
    sandbox.set("OMEGA_TWILIO_API_BASE", &base);
    let app = TestApp::spawn_in(sandbox, omega::Role::Serve).await;
    app.onboard(1).await;
    let mut body = common::onboard_body(2, "Own Account Spa");
    // A number belongs to one business: business 2's locations have their own.
    body["locations"][0]["phone_number"] = json!("+14155550200");
    body["locations"][1]["phone_number"] = json!("+14155550201");
    body["providers"] = json!({"twilio": {"account_sid": "AC00000000000000000000000000000099", "auth_token": "own-token-0123456789"}});
    app.onboard_with(&body).await;
    let send = |business: i64| {
        let app = &app;
        async move {
            let body = json!({"category": "conversation", "location_id": 10, "messages": [
                {"client_id": 5, "to_number": "+14155550123", "message": format!("from {business}")}]});
            let ok: Value = app
                .post(
                    &format!("/businesses/{business}/sms/send"),
                    Some(PLATFORM_KEY),
                    &body,
                )
                .await
                .json()
                .await
                .unwrap();
            let request_id = ok["request_id"].as_str().unwrap();
            wait_for("the send", Duration::from_secs(20), || async {
                let v = app.request_messages(business, request_id, 1).await;
                let m = &v["messages"][0];
                m["provider_message_id"]
                    .is_string()
                    .then(|| m["provider"].as_str().unwrap().to_owned())
            })
            .await
        }
    };
    assert_eq!(send(2).await, "twilio", "the business's own account");
    assert_eq!(send(1).await, "sandbox", "the deployment's default");
    let requests = seen.0.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].0,
        "/2010-04-01/Accounts/AC00000000000000000000000000000099/Messages.json"
    );
}
