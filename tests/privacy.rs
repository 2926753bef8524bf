//! A client's data on request (issue 14, item 16): export all of it, erase it leaving
//! anonymous counts (and the address's opt-out), both API-key only and audit-logged.
mod common;

use std::time::Duration;

use common::{Deployment, PLATFORM_KEY, TestApp, wait_for};
use common::{TWILIO_ACCOUNT as ACCOUNT, TWILIO_TOKEN as TOKEN};
use serde_json::{Value, json};

const GRACE: &str = "+14155550123";
const DOWNTOWN: &str = "+14155550100";

async fn app(d: Deployment) -> TestApp {
    common::with_twilio_sandbox(d).await
}

/// A text from Grace to the Downtown number, as Twilio posts it.
async fn text_from_grace(app: &TestApp, sid: &str, body: &str) {
    let params = [
        ("AccountSid", ACCOUNT),
        ("MessageSid", sid),
        ("From", GRACE),
        ("To", DOWNTOWN),
        ("Body", body),
    ];
    let path = "/twilio/sms/incoming";
    let resp = common::post_as_twilio(app, TOKEN, path, &params).await;
    assert_eq!(resp.status(), 200);
}

/// Sends a text to a client and waits for it to settle; its message.
async fn send(app: &TestApp, client_id: i64, to: &str, text: &str) -> Value {
    let body = json!({"category": "conversation", "location_id": 10,
        "messages": [{"client_id": client_id, "to_number": to, "message": text}]});
    let ok: Value = app
        .post("/businesses/1/sms/send", Some(PLATFORM_KEY), &body)
        .await
        .json()
        .await
        .unwrap();
    let rid = ok["request_id"].as_str().unwrap().to_owned();
    wait_for("the send to settle", Duration::from_secs(20), || async {
        let v = app.request_messages(1, &rid, 1).await;
        let m = v["messages"][0].clone();
        matches!(m["status"].as_str(), Some("failed" | "delivered")).then_some(m)
    })
    .await
}

async fn call(app: &TestApp, method: &str, path: &str, key: Option<&str>) -> reqwest::Response {
    let mut req = app.http.request(method.parse().unwrap(), app.url(path));
    if let Some(k) = key {
        req = req.header("X-API-KEY", k);
    }
    req.send().await.unwrap()
}

async fn conversations_total(app: &TestApp) -> u64 {
    let v: Value = app
        .get("/businesses/1/conversations", Some(PLATFORM_KEY))
        .await
        .json()
        .await
        .unwrap();
    v["total"].as_u64().unwrap_or_else(|| panic!("{v}"))
}

async fn export_and_erase_a_client(d: Deployment) {
    let app = app(d).await;
    let (own, other) = (app.business_key(1).await, app.business_key(2).await);
    // Grace: a text out, a private text in, a note, then STOP. Alan: one text out.
    let first = send(&app, 5, GRACE, "Your facial is at 3pm").await;
    assert_eq!(first["status"], "delivered", "{first}");
    let conversation = first["conversation_id"].as_i64().unwrap();
    text_from_grace(&app, "SM901", "My knee surgery went fine").await;
    let note = app
        .post(
            &format!("/businesses/1/conversations/{conversation}/notes"),
            Some(PLATFORM_KEY),
            &json!({"staff_id": 789, "note": "Grace prefers afternoons"}),
        )
        .await;
    assert_eq!(note.status(), 201, "{}", note.text().await.unwrap());
    text_from_grace(&app, "SM902", "STOP").await;
    wait_for("Grace's texts", Duration::from_secs(20), || async {
        (app.count("SELECT COUNT(*) FROM messages WHERE client_id = 5")
            .await
            == 4
            && app
                .count("SELECT COUNT(*) FROM address_consents WHERE opted_out = true")
                .await
                == 1)
            .then_some(())
    })
    .await;
    send(&app, 6, "+14155550124", "See you Tuesday").await;
    assert_eq!(conversations_total(&app).await, 2);
    // Failed jobs: about Grace alone, about her and Alan, about Alan, and another business's.
    for data in [
        json!({"business_id": 1, "client_id": 5, "items": "broken"}),
        json!({"business_id": 1, "items": [{"client_id": 5}, {"client_id": 6}]}),
        json!({"business_id": 1, "items": [{"client_id": 6, "to": "+14155550124"}]}),
        json!({"business_id": 2, "client_id": 5, "items": "broken"}),
    ] {
        common::dead_job(&app, json!({"type": "record_sms", "data": data})).await;
    }

    let export = "/businesses/1/clients/5/export";
    let erase = "/businesses/1/clients/5";
    // Strangers, other tenants and staff get nothing, and nothing is logged or erased.
    let session = app.session(1, 789).await;
    for (label, method, path) in [("export", "GET", export), ("erase", "DELETE", erase)] {
        assert_eq!(
            call(&app, method, path, None).await.status(),
            401,
            "{label}"
        );
        assert_eq!(
            call(&app, method, path, Some(&other)).await.status(),
            403,
            "{label} with another business's key"
        );
        let staff = app
            .http
            .request(method.parse().unwrap(), app.url(path))
            .bearer_auth(&session)
            .send()
            .await
            .unwrap();
        assert_eq!(staff.status(), 403, "{label} with a staff session");
        for bad in [
            "/businesses/1/clients/abc",
            "/businesses/1/clients/9999999999999999999999",
        ] {
            let path = if label == "export" {
                format!("{bad}/export")
            } else {
                bad.to_owned()
            };
            let resp = call(&app, method, &path, Some(&own)).await;
            assert_eq!(resp.status(), 422, "{label} {path}");
            let v: Value = resp.json().await.unwrap();
            assert!(v["detail"].is_array(), "{v}");
        }
        let path = path.replace("/5", "/404");
        assert_eq!(call(&app, method, &path, Some(&own)).await.status(), 404);
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log").await, 0);

    // The export: everything, with histories.
    let resp = call(&app, "GET", export, Some(&own)).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["client"]["first_name"], "Grace", "{v}");
    let messages = v["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4, "{v}");
    let bodies: Vec<&str> = messages
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert!(bodies.contains(&"My knee surgery went fine"), "{bodies:?}");
    assert!(bodies.contains(&"Grace prefers afternoons"), "{bodies:?}");
    assert!(
        messages[0]["events"].as_array().unwrap().len() >= 2,
        "the sent text's history: {}",
        messages[0]
    );
    assert_eq!(v["conversations"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["address_consent"][0]["address"], GRACE, "{v}");
    assert_eq!(v["address_consent"][0]["opted_in"], false, "{v}");

    // The erasure: counts back, then nothing left but counts and the opt-out.
    let resp = call(&app, "DELETE", erase, Some(&own)).await;
    assert_eq!(resp.status(), 200);
    let e: Value = resp.json().await.unwrap();
    let erased: u64 = e["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["count"].as_u64().unwrap())
        .sum();
    assert_eq!(erased, 4, "{e}");
    assert_eq!(e["conversations"], 1, "{e}");
    assert_eq!(e["webhook_receipts"], 2, "{e}");
    assert_eq!(e["address_opt_outs_kept"], 1, "{e}");
    assert_eq!(e["dead_jobs_removed"], 1, "{e}");
    assert_eq!(
        e["dead_jobs_kept"], 1,
        "the batch that carries Alan too: {e}"
    );
    let dead = app
        .queue
        .list_dead(jobs::JobType::RecordSms, &Default::default(), 0, 10)
        .await
        .unwrap();
    assert_eq!(dead.total, 3, "{dead:?}");
    for table in ["messages", "conversations", "clients"] {
        let column = if table == "clients" {
            "id"
        } else {
            "client_id"
        };
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM {table} WHERE business_id = 1 AND {column} = 5"
            ))
            .await,
            0,
            "{table}"
        );
    }
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM message_events WHERE message_id NOT IN (SELECT id FROM messages)"
        )
        .await,
        0
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM webhook_receipts WHERE CAST(payload AS TEXT) LIKE '%{GRACE}%'"
        ))
        .await,
        0
    );
    // Search and the inbox's counts no longer see her; Alan is untouched.
    let found: Value = app
        .get("/businesses/1/messages/search?q=knee", Some(PLATFORM_KEY))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["total"], 0, "{found}");
    assert_eq!(conversations_total(&app).await, 1);
    let filters: Value = app
        .get("/businesses/1/conversations/filters", Some(PLATFORM_KEY))
        .await
        .json()
        .await
        .unwrap();
    let open: u64 = filters["status"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["count"].as_u64().unwrap())
        .sum();
    assert_eq!(open, 1, "{filters}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM messages WHERE client_id = 6")
            .await,
        1
    );
    // A second request finds nothing.
    assert_eq!(call(&app, "GET", export, Some(&own)).await.status(), 404);
    assert_eq!(call(&app, "DELETE", erase, Some(&own)).await.status(), 404);
    // Her STOP still holds for her number, under any client row.
    let again = send(&app, 5, GRACE, "We miss you").await;
    assert_eq!(again["status"], "failed", "{again}");
    assert_eq!(again["error_code"], "opted_out", "{again}");

    // The audit log: who did what, with counts and no personal data.
    let log = entities::audit::of_business(&app.db, 1, 10).await.unwrap();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0].action, "client.erase");
    assert_eq!(log[1].action, "client.export");
    assert!(log.iter().all(|e| e.subject == "client:5"
        && e.actor.starts_with("business_key:")
        && e.request_id.is_some()));
    let text = serde_json::to_string(&log).unwrap();
    assert!(!text.contains(GRACE) && !text.contains("knee"), "{text}");
}
both_deployments!(export_and_erase, export_and_erase_a_client);
