//! The HTTP contract of the foundation: health, the record paths end to end, messages by
//! request, onboarding, authentication, Idempotency-Key, request ids and error shapes.
mod common;

use common::{Deployment, PLATFORM_KEY, TestApp};
use sea_orm::EntityTrait;
use serde_json::{Value, json};

fn published_email_example() -> Value {
    // API.md's published example, with valid addresses in cc/bcc/attachments.
    json!({"category":"campaign","notification_type":"notification_opt_in","staff_id":789,"provider":"twilio",
     "sent_by":789,"sender_type":"client","sent_at":"2025-07-07T07:04:14Z","from_email":"sender@dev.concerto.ai",
     "messages":[{"message_id":0,"client_id":0,"wl_user_id":0,"to_email":"recipient@dev.concerto.ai",
       "subject":"Your Appointment Details","message":"Dear client, here are your appointment details...",
       "cc_email":["cc@dev.concerto.ai"],"bcc_email":["bcc@dev.concerto.ai"],
       "attachments":[{"content":"aGVsbG8=","content_type":"image/png","filename":"a.png","url":"https://example.com/a.png"}],
       "status":"initiated","provider_metadata":{"campaign":"july"}}]})
}

async fn health_reports_dependencies(d: Deployment) {
    let app = TestApp::spawn(d).await;
    let resp = app.get("/health", None).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["status"], "ok");
    let names: Vec<&str> = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["database", "queue"]);
    assert!(
        v["services"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "ok")
    );
    let db: Value = app.get("/health/db", None).await.json().await.unwrap();
    assert_eq!(db["name"], "database");
    assert_eq!(db["status"], "ok");
}
both_deployments!(health, health_reports_dependencies);

async fn record_email_end_to_end(d: Deployment) {
    let app = TestApp::spawn(d).await;
    app.onboard(1).await;
    let resp = app
        .post(
            "/businesses/1/email/record",
            Some(PLATFORM_KEY),
            &published_email_example(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let ok: Value = resp.json().await.unwrap();
    assert_eq!(ok["success"], true);
    assert_eq!(ok["accepted"], 1);
    let request_id = ok["request_id"].as_str().unwrap().to_owned();

    let v = app.request_messages(1, &request_id, 1).await;
    let m = &v["messages"][0];
    assert_eq!(m["channel"], "email");
    assert_eq!(m["direction"], "outbound");
    assert_eq!(m["client_id"], 0);
    assert_eq!(m["to"], "recipient@dev.concerto.ai");
    assert_eq!(m["from"], "sender@dev.concerto.ai");
    assert_eq!(m["subject"], "Your Appointment Details");
    assert_eq!(m["cc"], json!(["cc@dev.concerto.ai"]));
    assert_eq!(m["status"], "initiated");
    assert_eq!(m["sender_type"], "client");
    assert_eq!(m["provider"], "twilio");
    assert_eq!(m["message_id"], 0);
    let sent_at: chrono::DateTime<chrono::Utc> = m["sent_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        sent_at,
        "2025-07-07T07:04:14Z"
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    );
    assert_eq!(m["metadata"]["campaign"], "july");
    assert_eq!(m["metadata"]["wl_user_id"], 0);
    assert_eq!(m["attachments"][0]["filename"], "a.png");
    assert_eq!(m["events"].as_array().unwrap().len(), 1);
    assert_eq!(m["events"][0]["status"], "initiated");
    // The unknown client 0 was created, with a conversation.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM clients WHERE business_id = 1 AND id = 0")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM conversations WHERE business_id = 1 AND client_id = 0")
            .await,
        1
    );
}
both_deployments!(record_email, record_email_end_to_end);

async fn record_sms_into_conversations(d: Deployment) {
    let app = TestApp::spawn(d).await;
    app.onboard(1).await;
    let body = json!({"category":"conversation","sender_type":"staff","staff_id":789,"provider":"twilio","location_id":10,
    "from_number":"+1 415 555 0100",
    "messages":[
        {"message_id": 41, "client_id":5,"to_number":"+1 (415) 555-0123","message":"See you at 3pm","status":"delivered","provider_message_id":"SM1"},
        {"message_id": 42, "client_id":5,"to_number":"+14155550123","message":"Reminder","status":"sent"},
        {"client_id":6,"to_number":"+14155550124","message":"Hi Alan","status":"sent"}
    ]});
    let ok: Value = app
        .post("/businesses/1/sms/record", Some(PLATFORM_KEY), &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ok["accepted"], 3);
    let v = app
        .request_messages(1, ok["request_id"].as_str().unwrap(), 3)
        .await;
    let msgs = v["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["to"], "+14155550123", "numbers are stored in E.164");
    assert_eq!(msgs[0]["from"], "+14155550100");
    assert_eq!(msgs[0]["status"], "delivered");
    assert!(msgs[0]["delivered_at"].is_string());
    assert_eq!(msgs[0]["provider_message_id"], "SM1");
    assert_eq!(
        msgs[0]["conversation_id"], msgs[1]["conversation_id"],
        "one conversation per client and location"
    );
    assert_ne!(msgs[0]["conversation_id"], msgs[2]["conversation_id"]);
    assert_eq!(msgs[0]["location_id"], 10);
    // Recording the same caller ids again records nothing twice.
    let again: Value = app
        .post("/businesses/1/sms/record", Some(PLATFORM_KEY), &body)
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(again["request_id"], ok["request_id"]);
    common::wait_for(
        "the second request to be processed",
        std::time::Duration::from_secs(20),
        || async {
            let n = app
                .count("SELECT COUNT(*) FROM messages WHERE channel = 'sms'")
                .await;
            let dead = app
                .queue
                .list_dead(jobs::JobType::RecordSms, &Default::default(), 0, 10)
                .await
                .unwrap();
            assert!(dead.items.is_empty(), "{:?}", dead.items);
            (n == 4).then_some(())
        },
    )
    .await;
    let done = app.queue.stats().await.unwrap();
    let record = done.iter().find(|s| s.job_type == "record_sms").unwrap();
    assert_eq!((record.pending, record.dead), (0, 0));
    assert_eq!(
        app.count("SELECT COUNT(*) FROM messages WHERE external_id IN (41, 42)")
            .await,
        2
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM conversations WHERE business_id = 1")
            .await,
        2
    );
}
both_deployments!(record_sms, record_sms_into_conversations);

async fn inbound_record_counts_unread(d: Deployment) {
    let app = TestApp::spawn(d).await;
    app.onboard(1).await;
    let body = json!({"category":"conversation","sender_type":"client","direction":"inbound",
        "messages":[{"client_id":5,"to_number":"+14155550100","from_number":"+14155550123","message":"Can I move my appointment?","status":"received"}]});
    let ok: Value = app
        .post("/businesses/1/sms/record", Some(PLATFORM_KEY), &body)
        .await
        .json()
        .await
        .unwrap();
    let v = app
        .request_messages(1, ok["request_id"].as_str().unwrap(), 1)
        .await;
    assert_eq!(v["messages"][0]["direction"], "inbound");
    assert_eq!(v["messages"][0]["is_read"], false);
    assert_eq!(app.count("SELECT CAST(unread_count AS BIGINT) FROM conversations WHERE business_id = 1 AND client_id = 5").await as i64, 1);
    // Inbound without the client's number is refused.
    let bad = json!({"category":"conversation","direction":"inbound",
        "messages":[{"client_id":5,"to_number":"+14155550100","message":"x","status":"received"}]});
    let resp = app
        .post("/businesses/1/sms/record", Some(PLATFORM_KEY), &bad)
        .await;
    assert_eq!(resp.status(), 422);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(
        e["detail"][0]["loc"],
        json!(["body", "messages", 0, "from_number"])
    );
}
both_deployments!(inbound_record, inbound_record_counts_unread);

async fn authentication_and_scoping(d: Deployment) {
    let app = TestApp::spawn(d).await;
    app.onboard(1).await;
    app.onboard(2).await;
    let key1 = app.business_key(1).await;
    let body = json!({"category":"conversation","messages":[{"client_id":5,"to_number":"+14155550123","message":"hi","status":"sent"}]});
    for (key, expected) in [
        (None, 401),
        (Some("omk_notarealkeyatallxxxxxxxx"), 401),
        (Some("garbage"), 401),
        (Some(&key1[..key1.len() - 1]), 401),
        (Some(key1.as_str()), 200),
    ] {
        let resp = app.post("/businesses/1/sms/record", key, &body).await;
        assert_eq!(resp.status(), expected, "key {key:?}");
        if expected != 200 {
            let v: Value = resp.json().await.unwrap();
            assert!(v["detail"].is_string(), "{v}");
        }
    }
    // A business key cannot touch another business, nor platform endpoints.
    let resp = app
        .post("/businesses/2/sms/record", Some(&key1), &body)
        .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(
        app.get("/business/2/onboarding-status", Some(&key1))
            .await
            .status(),
        403
    );
    assert_eq!(
        app.get("/business/1/onboarding-status", Some(&key1))
            .await
            .status(),
        200
    );
    let resp = app
        .post(
            "/business/onboard",
            Some(&key1),
            &common::onboard_body(1, "x"),
        )
        .await;
    assert_eq!(resp.status(), 403);
    let rid = uuid::Uuid::new_v4();
    assert_eq!(
        app.get(&format!("/messages/requests/{rid}"), Some(&key1))
            .await
            .status(),
        403
    );
    assert_eq!(
        app.get(&format!("/messages/requests/{rid}"), Some(PLATFORM_KEY))
            .await
            .status(),
        200
    );
    // An unknown business is a 404, with a platform key.
    let resp = app
        .post("/businesses/999/sms/record", Some(PLATFORM_KEY), &body)
        .await;
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["detail"], "Business 999 not found");
    // A revoked key stops working (within the one-second cache).
    let row = entities::keys::find_by_prefix(&app.db, entities::keys::prefix_of(&key1).unwrap())
        .await
        .unwrap()
        .unwrap();
    entities::keys::revoke(&app.db, row.id).await.unwrap();
    common::wait_for(
        "the revocation to apply",
        std::time::Duration::from_secs(3),
        || async {
            (app.post("/businesses/1/sms/record", Some(&key1), &body)
                .await
                .status()
                == 401)
                .then_some(())
        },
    )
    .await;
    // A session cookie that does not exist is a 401.
    let resp = app
        .http
        .get(app.url(&format!("/businesses/1/messages/requests/{rid}")))
        .header("Cookie", "omega_session=nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}
both_deployments!(auth, authentication_and_scoping);

async fn idempotency_key_replays_and_conflicts(d: Deployment) {
    let app = TestApp::spawn(d).await;
    app.onboard(1).await;
    let body = json!({"category":"conversation","messages":[{"client_id":5,"to_number":"+14155550123","message":"once","status":"sent"}]});
    let send = |b: Value, key: &'static str| {
        app.http
            .post(app.url("/businesses/1/sms/record"))
            .header("X-API-KEY", PLATFORM_KEY)
            .header("Idempotency-Key", key)
            .json(&b)
            .send()
    };
    let first = send(body.clone(), "k-1").await.unwrap();
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotency-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let second = send(body.clone(), "k-1").await.unwrap();
    assert_eq!(second.status(), 200);
    assert_eq!(
        second.headers().get("idempotency-replayed").unwrap(),
        "true"
    );
    let second: Value = second.json().await.unwrap();
    assert_eq!(first, second);
    let mut other = body.clone();
    other["messages"][0]["message"] = json!("different");
    let conflict = send(other, "k-1").await.unwrap();
    assert_eq!(conflict.status(), 409);
    app.request_messages(1, first["request_id"].as_str().unwrap(), 1)
        .await;
    // Only one job was queued: wait until the queue is idle, then count.
    common::wait_for(
        "the queue to be idle",
        std::time::Duration::from_secs(10),
        || async {
            let s = app.queue.stats().await.unwrap();
            s.iter()
                .all(|s| s.pending == 0 && s.running == 0)
                .then_some(())
        },
    )
    .await;
    assert_eq!(app.count("SELECT COUNT(*) FROM messages").await, 1);
    let stats = app.queue.stats().await.unwrap();
    assert_eq!(
        stats
            .iter()
            .find(|s| s.job_type == "record_sms")
            .unwrap()
            .done,
        1
    );
}
both_deployments!(idempotency, idempotency_key_replays_and_conflicts);

async fn onboarding_upserts(d: Deployment) {
    let app = TestApp::spawn(d).await;
    app.onboard(7).await;
    let status: Value = app
        .get("/business/7/onboarding-status", Some(PLATFORM_KEY))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        status["counts"],
        json!({"locations": 2, "staff": 1, "clients": 2})
    );
    // Again with a changed name and phone: rows are updated, not duplicated.
    let mut body = common::onboard_body(7, "Serenity Spa & Wellness");
    body["clients"][0]["phone"] = json!("+14155550999");
    let resp = app
        .post("/business/onboard", Some(PLATFORM_KEY), &body)
        .await;
    assert_eq!(resp.status(), 202);
    let accepted: Value = resp.json().await.unwrap();
    assert_eq!(accepted["status"], "queued");
    common::wait_for(
        "the second onboarding",
        std::time::Duration::from_secs(20),
        || async {
            let v: Value = app
                .get("/business/7/onboarding-status", Some(PLATFORM_KEY))
                .await
                .json()
                .await
                .unwrap();
            (v["request_id"] == accepted["request_id"] && v["status"] == "completed").then_some(())
        },
    )
    .await;
    assert_eq!(app.count("SELECT COUNT(*) FROM businesses").await, 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM clients WHERE business_id = 7")
            .await,
        2
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM locations WHERE business_id = 7")
            .await,
        2
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM staff_locations WHERE business_id = 7")
            .await,
        2
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM clients WHERE business_id = 7 AND phone = '+14155550999'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM businesses WHERE name = 'Serenity Spa & Wellness'")
            .await,
        1
    );
    assert_eq!(
        app.get("/business/8/onboarding-status", Some(PLATFORM_KEY))
            .await
            .status(),
        404
    );
}
both_deployments!(onboarding, onboarding_upserts);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_echoed_or_made() {
    let app = TestApp::spawn(Deployment::Embedded).await;
    let resp = app
        .http
        .get(app.url("/health"))
        .header("X-Request-ID", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
    let resp = app.get("/nowhere", None).await;
    assert_eq!(resp.status(), 404);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["detail"], "Not Found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_has_the_contract_schemas() {
    let app = TestApp::spawn(Deployment::Embedded).await;
    let spec: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    let schemas = spec["components"]["schemas"].as_object().unwrap();
    for name in [
        "SuccessResponse",
        "HTTPValidationError",
        "ValidationError",
        "RecordSmsRequest",
        "RecordEmailRequest",
        "RecordMessageItem",
        "EmailAttachment",
        "BusinessOnboardRequest",
        "MessageItem",
        "Health",
        "HealthService",
        "Channel",
        "MessageStatus",
        "UserType",
        "MessageCategory",
        "NotificationType",
        "Provider",
        "ClientType",
        "MessageResponse",
        "PaginatedClientList",
    ] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
    // Issue 14: an optional field that is empty is omitted, not sent as a null its schema
    // does not allow.
    let health: Value = app.get("/health", None).await.json().await.unwrap();
    for service in health["services"].as_array().unwrap() {
        assert!(service.get("detail").is_none(), "{service}");
    }
    let paths = spec["paths"].as_object().unwrap();
    for path in [
        "/health",
        "/health/db",
        "/businesses/{business_id}/sms/record",
        "/businesses/{business_id}/email/record",
        "/businesses/{business_id}/messages/requests/{request_id}",
        "/messages/requests/{request_id}",
        "/business/onboard",
        "/business/{business_id}/onboarding-status",
    ] {
        assert!(paths.contains_key(path), "path {path} missing");
    }
    let docs = app.get("/docs", None).await;
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
}

async fn onboarding_reports_bad_rows_and_seals_credentials(d: Deployment) {
    let app = TestApp::spawn(d).await;
    let mut body = common::onboard_body(3, "Glow Studio");
    let clients = body["clients"].as_array_mut().unwrap();
    clients.push(json!({"id": 7, "first_name": "Bad", "phone": "12", "client_type": "lead"}));
    clients.push(json!({"id": 5, "first_name": "Again", "client_type": "client"}));
    clients.push(json!({"id": 8, "email": "nope", "client_type": "client"}));
    body["providers"] = json!({
        "twilio": {"account_sid": format!("AC{}", "a".repeat(32)), "auth_token": "tok_0123456789abcdef",
                   "api_key_sid": format!("SK{}", "b".repeat(32)), "api_key_secret": "sec_0123456789abcdef",
                   "twiml_app_sid": format!("AP{}", "c".repeat(32))},
        "email": {"provider": "sendgrid", "from_email": "hello@glow.example", "api_key": "SG.key_0123456789"}
    });
    let resp = app
        .post("/business/onboard", Some(PLATFORM_KEY), &body)
        .await;
    assert_eq!(resp.status(), 202);
    let status = common::wait_for(
        "the onboarding",
        std::time::Duration::from_secs(20),
        || async {
            let v: Value = app
                .get("/business/3/onboarding-status", Some(PLATFORM_KEY))
                .await
                .json()
                .await
                .unwrap();
            (v["status"] == "completed").then_some(v)
        },
    )
    .await;
    assert_eq!(
        status["counts"],
        json!({"locations": 2, "staff": 1, "clients": 2})
    );
    let errors = status["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 3, "{status}");
    assert_eq!(
        errors[0],
        json!({"section": "clients", "index": 2, "id": 7, "reason": "phone: value is not a valid E.164 phone number"})
    );
    assert_eq!(errors[1]["id"], 5);
    assert!(
        errors[1]["reason"]
            .as_str()
            .unwrap()
            .contains("duplicate id 5")
    );
    assert_eq!(
        errors[2]["reason"],
        "email: value is not a valid email address"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM clients WHERE business_id = 3")
            .await,
        2
    );
    // The first client 5 was kept, not the duplicate.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM clients WHERE business_id = 3 AND first_name = 'Grace'")
            .await,
        1
    );

    // Credentials: stored sealed, opened only with the service's key, never shown.
    assert!(!status.to_string().contains("tok_0123456789abcdef"));
    assert_eq!(
        app.count("SELECT COUNT(*) FROM provider_credentials WHERE business_id = 3")
            .await,
        2
    );
    let rows = entities::provider_credential::Entity::find()
        .all(&app.db)
        .await
        .unwrap();
    let twilio = rows.iter().find(|r| r.kind == "twilio").unwrap();
    assert!(!twilio.sealed.contains("tok_0123456789abcdef"));
    assert!(
        !format!("{twilio:?}").contains(&twilio.sealed),
        "Debug hides the sealed value"
    );
    let secret = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        &app.sandbox.env["OMEGA_SECRET_KEY"],
    )
    .unwrap();
    let opened = entities::secrets::Sealer::new(&secret)
        .open(&twilio.sealed)
        .unwrap();
    let creds: entities::credentials::TwilioCredentials = serde_json::from_slice(&opened).unwrap();
    assert_eq!(creds.auth_token, "tok_0123456789abcdef");
    assert!(
        !format!("{creds:?}").contains("tok_0123456789abcdef"),
        "Debug hides secrets"
    );
    // Nor did the queue see them in plain text.
    let dead = app
        .queue
        .list_dead(jobs::JobType::Onboard, &Default::default(), 0, 10)
        .await
        .unwrap();
    assert_eq!(dead.total, 0);
}
both_deployments!(
    onboarding_rows,
    onboarding_reports_bad_rows_and_seals_credentials
);
