//! The event log (issue 16): what happens in a business is an event written with the change
//! (an inbound text, a status moving forward, inbox commands, consent), read in pages by
//! `GET /businesses/{id}/events`, resumable after any id with nothing missed or repeated.
mod common;

use std::time::Duration;

use common::{Deployment, PLATFORM_KEY, TestApp, wait_for};
use serde_json::{Value, json};

async fn app(d: Deployment) -> TestApp {
    common::with_twilio_sandbox(d).await
}

async fn events(app: &TestApp, query: &str, key: &str) -> Value {
    let resp = app
        .get(&format!("/businesses/1/events{query}"), Some(key))
        .await;
    assert_eq!(resp.status(), 200, "{query}");
    resp.json().await.unwrap()
}

/// Waits until the log holds an event of this type whose data matches.
async fn event_where(app: &TestApp, kind: &str, matches: impl Fn(&Value) -> bool) -> Value {
    wait_for(kind, Duration::from_secs(20), || async {
        let v = events(app, &format!("?types={kind}&limit=1000"), PLATFORM_KEY).await;
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| matches(&e["data"]))
            .cloned()
    })
    .await
}

async fn changes_are_logged_and_paged(d: Deployment) {
    let app = app(d).await;

    // An inbound text: message.received, with the message as the API shows it.
    common::client_texts(&app, "SM1", "Can I move my facial to 4pm?").await;
    let received = event_where(&app, "message.received", |m| {
        m["provider_message_id"] == "SM1"
    })
    .await;
    assert_eq!(received["type"], "message.received");
    assert_eq!(received["business_id"], 1);
    let message = &received["data"];
    assert_eq!(message["body"], "Can I move my facial to 4pm?");
    assert_eq!(message["direction"], "inbound");
    assert_eq!(message["status"], "received");
    let conversation = message["conversation_id"].as_i64().unwrap();

    // A send: its status moving forward, each move an event with the status it left.
    let body = json!({"category": "conversation", "location_id": 10,
        "messages": [{"client_id": 5, "to_number": "+14155550123", "message": "Yes, 4pm works"}]});
    let resp = app
        .post("/businesses/1/sms/send", Some(PLATFORM_KEY), &body)
        .await;
    assert_eq!(resp.status(), 200);
    let delivered = event_where(&app, "message.status_updated", |m| {
        m["body"] == "Yes, 4pm works" && m["status"] == "delivered"
    })
    .await;
    assert!(delivered["data"]["previous_status"].is_string());
    let sent = event_where(&app, "message.status_updated", |m| {
        m["body"] == "Yes, 4pm works" && m["previous_status"] == "queued"
    })
    .await;
    assert!(sent["id"].as_str() < delivered["id"].as_str(), "in order");

    // The inbox commands.
    let path = |what: &str| format!("/businesses/1/conversations/{conversation}/{what}");
    for (what, body) in [
        ("notes", json!({"staff_id": 789, "note": "Moved to 4pm"})),
        ("assign", json!({"staff_id": 789})),
        ("status", json!({"status": "resolved"})),
    ] {
        let resp = app.post(&path(what), Some(PLATFORM_KEY), &body).await;
        assert!(resp.status().is_success(), "{what}: {}", resp.status());
    }
    let note = event_where(&app, "conversation.note_added", |d| {
        d["conversation_id"] == conversation
    })
    .await;
    assert_eq!(note["data"]["note"]["body"], "Moved to 4pm");
    let assigned = event_where(&app, "conversation.assigned", |d| d["staff_id"] == 789).await;
    assert_eq!(assigned["data"]["previous_staff_id"], Value::Null);
    let status = event_where(&app, "conversation.status_updated", |d| {
        d["status"] == "resolved"
    })
    .await;
    assert_eq!(status["data"]["previous_status"], "open");

    // Consent by keyword.
    common::client_texts(&app, "SM2", "STOP").await;
    let consent = event_where(&app, "client.consent_updated", |d| d["opted_in"] == false).await;
    assert_eq!(consent["data"]["channel"], "sms");
    assert_eq!(consent["data"]["address"], "+14155550123");
    assert_eq!(consent["data"]["client_id"], 5);

    // Pages of 2 from the start give the whole log once, in order, ids ascending.
    let all = events(&app, "?limit=1000", PLATFORM_KEY).await["events"]
        .as_array()
        .unwrap()
        .clone();
    assert!(all.len() >= 8, "{all:?}");
    let mut paged: Vec<Value> = vec![];
    let mut query = "?limit=2".to_owned();
    loop {
        let page = events(&app, &query, PLATFORM_KEY).await;
        let got = page["events"].as_array().unwrap().clone();
        if got.is_empty() {
            assert_eq!(page["next_after"], paged.last().unwrap()["id"]);
            break;
        }
        paged.extend(got);
        query = format!("?limit=2&after={}", page["next_after"].as_str().unwrap());
    }
    let ids = |v: &[Value]| -> Vec<String> {
        v.iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&paged), ids(&all));
    let mut sorted = ids(&all);
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, ids(&all), "ids strictly ascending");
    let only = events(
        &app,
        "?types=message.received,client.consent_updated",
        PLATFORM_KEY,
    )
    .await;
    assert!(
        only["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["type"] == "message.received" || e["type"] == "client.consent_updated")
    );

    // Who may read: the business's key and its staff; not another business.
    let own = app.business_key(1).await;
    assert_eq!(
        app.get("/businesses/1/events", Some(&own)).await.status(),
        200
    );
    let session = app.session(1, 789).await;
    let resp = app
        .http
        .get(app.url("/businesses/1/events"))
        .bearer_auth(&session)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let other = app.business_key(2).await;
    assert_eq!(
        app.get("/businesses/1/events", Some(&other)).await.status(),
        403
    );
    let theirs: Value = app
        .get("/businesses/2/events", Some(&other))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["events"], json!([]), "business 2 saw nothing of 1");

    // Malformed: 422 at the parameter.
    for (query, loc) in [
        ("?after=evt_nothex", "after"),
        ("?after=12", "after"),
        ("?types=message.sent", "types"),
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
    ] {
        let resp = app
            .get(&format!("/businesses/1/events{query}"), Some(PLATFORM_KEY))
            .await;
        assert_eq!(resp.status(), 422, "{query}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["detail"][0]["loc"], json!(["query", loc]), "{query}: {v}");
    }
}
both_deployments!(changes_are_logged, changes_are_logged_and_paged);

/// Events older than the retention are swept; newer ones stay.
async fn old_events_are_swept(d: Deployment) {
    let app = app(d).await;
    common::client_texts(&app, "SM9", "hello").await;
    event_where(&app, "message.received", |m| {
        m["provider_message_id"] == "SM9"
    })
    .await;
    let kept = entities::retention::Retention::default();
    let now = chrono::Utc::now();
    let swept = entities::retention::sweep(&app.db, &kept, now)
        .await
        .unwrap();
    assert_eq!(swept.events, 0);
    let later = now + kept.events + chrono::Duration::minutes(1);
    let swept = entities::retention::sweep(&app.db, &kept, later)
        .await
        .unwrap();
    assert!(swept.events >= 1, "{swept:?}");
    assert_eq!(app.count("SELECT COUNT(*) FROM events").await, 0);
}
both_deployments!(retention, old_events_are_swept);
