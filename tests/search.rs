//! Message search (full-text index on both backends) and a conversation's detail with its
//! assignment and status history.
mod common;

use common::{Deployment, PLATFORM_KEY, TestApp};
use serde_json::{Value, json};

/// Records SMS bodies for client 5 (location 10) and emails for client 6; returns the
/// conversation ids (client 5's, client 6's).
async fn seed(app: &TestApp) -> (i64, i64) {
    let sms = [
        "Your appointment is confirmed for Tuesday",
        "Reminder: APPOINTMENT tomorrow, bring your gift card",
        "Thanks for visiting the spa",
    ];
    let v: Value = app
        .post(
            "/businesses/1/sms/record",
            Some(PLATFORM_KEY),
            &json!({"category": "conversation", "location_id": 10, "messages": sms.iter().map(|b| json!({
                "client_id": 5, "to_number": "+14155550123", "message": b, "status": "sent"})).collect::<Vec<_>>()}),
        )
        .await
        .json()
        .await
        .unwrap();
    app.request_messages(1, v["request_id"].as_str().unwrap(), 3)
        .await;
    let v: Value = app
        .post(
            "/businesses/1/email/record",
            Some(PLATFORM_KEY),
            &json!({"category": "conversation", "location_id": 11, "from_email": "spa@example.com", "messages": [
                {"client_id": 6, "to_email": "alan@example.com", "subject": "Gift card balance", "message": "Your balance is 50 dollars", "status": "sent"},
                {"client_id": 6, "to_email": "alan@example.com", "subject": "Crème brûlée night", "message": "Join us on Friday", "status": "sent"}]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let rows = app
        .request_messages(1, v["request_id"].as_str().unwrap(), 2)
        .await;
    let c6 = rows["messages"][0]["conversation_id"].as_i64().unwrap();
    let c5: Value = app
        .post(
            "/businesses/1/conversations",
            Some(PLATFORM_KEY),
            &json!({"client_id": 5, "location_id": 10}),
        )
        .await
        .json()
        .await
        .unwrap();
    (c5["id"].as_i64().unwrap(), c6)
}

async fn bodies(app: &TestApp, path: &str) -> Vec<String> {
    let resp = app.get(path, Some(PLATFORM_KEY)).await;
    assert_eq!(resp.status(), 200, "{path}");
    let v: Value = resp.json().await.unwrap();
    let items = v["items"].as_array().unwrap();
    assert_eq!(v["total"].as_u64().unwrap() as usize, items.len(), "{v}");
    items
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_owned())
        .collect()
}

async fn search_finds_every_word(d: Deployment) {
    let app = TestApp::spawn(d).await;
    app.onboard(1).await;
    app.onboard(2).await;
    let (c5, c6) = seed(&app).await;

    // All words must match, in any case, in the body or the subject; newest first.
    assert_eq!(
        bodies(&app, "/businesses/1/messages/search?q=appointment").await,
        vec![
            "Reminder: APPOINTMENT tomorrow, bring your gift card",
            "Your appointment is confirmed for Tuesday"
        ]
    );
    assert_eq!(
        bodies(&app, "/businesses/1/messages/search?q=Gift%20CARD").await,
        vec![
            "Your balance is 50 dollars",
            "Reminder: APPOINTMENT tomorrow, bring your gift card"
        ]
    );
    assert_eq!(
        bodies(&app, "/businesses/1/messages/search?q=gift+card+tomorrow").await,
        vec!["Reminder: APPOINTMENT tomorrow, bring your gift card"]
    );
    assert!(
        bodies(&app, "/businesses/1/messages/search?q=appointment+dollars")
            .await
            .is_empty()
    );
    assert_eq!(
        bodies(&app, "/businesses/1/messages/search?q=gift&channel=email").await,
        vec!["Your balance is 50 dollars"]
    );
    assert_eq!(
        bodies(&app, "/businesses/1/messages/search?q=cr%C3%A8me").await,
        vec!["Join us on Friday"]
    );
    // Within one conversation.
    assert_eq!(
        bodies(
            &app,
            &format!("/businesses/1/conversations/{c5}/messages/search?q=gift")
        )
        .await,
        vec!["Reminder: APPOINTMENT tomorrow, bring your gift card"]
    );
    assert_eq!(
        bodies(
            &app,
            &format!("/businesses/1/conversations/{c6}/messages/search?q=gift")
        )
        .await,
        vec!["Your balance is 50 dollars"]
    );
    // Paging.
    let v: Value = app
        .get(
            "/businesses/1/messages/search?q=appointment&page=2&page_size=1",
            Some(PLATFORM_KEY),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["total"], 2);
    assert_eq!(v["total_pages"], 2);
    assert_eq!(
        v["items"][0]["body"],
        "Your appointment is confirmed for Tuesday"
    );

    // The index follows writes: a note added now is found at once.
    let resp = app
        .post(
            &format!("/businesses/1/conversations/{c5}/notes"),
            Some(PLATFORM_KEY),
            &json!({"staff_id": 789, "note": "Prefers the lavender oil"}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    assert_eq!(
        bodies(&app, "/businesses/1/messages/search?q=lavender").await,
        vec!["Prefers the lavender oil"]
    );

    // Another business sees none of it; its key cannot search this one.
    assert!(
        bodies(&app, "/businesses/2/messages/search?q=gift")
            .await
            .is_empty()
    );
    let resp = app
        .get(
            &format!("/businesses/2/conversations/{c5}/messages/search?q=gift"),
            Some(PLATFORM_KEY),
        )
        .await;
    assert_eq!(resp.status(), 404);
    let key2 = app.business_key(2).await;
    let resp = app
        .get("/businesses/1/messages/search?q=gift", Some(&key2))
        .await;
    assert_eq!(resp.status(), 403);

    // Bad queries: 422 at the parameter.
    for (path, loc) in [
        ("/businesses/1/messages/search", json!(["query", "q"])),
        ("/businesses/1/messages/search?q=", json!(["query", "q"])),
        (
            "/businesses/1/messages/search?q=%20--%20",
            json!(["query", "q"]),
        ),
        (
            "/businesses/1/messages/search?q=x&channel=fax",
            json!(["query", "channel"]),
        ),
        (
            "/businesses/1/messages/search?q=x&page=0",
            json!(["query", "page"]),
        ),
        (
            "/businesses/1/messages/search?q=x&page_size=101",
            json!(["query", "page_size"]),
        ),
        (
            "/businesses/1/conversations/abc/messages/search?q=x",
            json!(["path", "conversation_id"]),
        ),
    ] {
        let resp = app.get(path, Some(PLATFORM_KEY)).await;
        assert_eq!(resp.status(), 422, "{path}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["detail"][0]["loc"], loc, "{path}: {v}");
    }
    // Words that mean something to the index's own query language are only words here.
    for q in [
        "%22",
        "NEAR(a%20b)",
        "a%20OR%20b",
        "*",
        "a%3A",
        "'%3B%20DROP%20TABLE%20messages",
    ] {
        let resp = app
            .get(
                &format!("/businesses/1/messages/search?q={q}"),
                Some(PLATFORM_KEY),
            )
            .await;
        assert!(
            resp.status() == 200 || resp.status() == 422,
            "{q}: {}",
            resp.status()
        );
    }
}
both_deployments!(search, search_finds_every_word);

async fn conversation_detail_shows_its_history(d: Deployment) {
    let app = TestApp::spawn(d).await;
    app.onboard(1).await;
    let c: Value = app
        .post(
            "/businesses/1/conversations",
            Some(PLATFORM_KEY),
            &json!({"client_id": 5, "location_id": 10}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = c["id"].as_i64().unwrap();
    assert_eq!(c["events"], json!([]));
    let base = format!("/businesses/1/conversations/{id}");
    for (path, body) in [
        ("assign", json!({"staff_id": 789, "assigned_by": 789})),
        ("status", json!({"status": "resolved", "staff_id": 789})),
        ("assign", json!({"staff_id": null})),
    ] {
        let resp = app
            .post(&format!("{base}/{path}"), Some(PLATFORM_KEY), &body)
            .await;
        assert_eq!(resp.status(), 200, "{path}");
    }
    let page: Value = app
        .get(&format!("{base}/messages"), Some(PLATFORM_KEY))
        .await
        .json()
        .await
        .unwrap();
    let detail = &page["conversation"];
    assert_eq!(detail["id"], id);
    assert_eq!(detail["status"], "resolved");
    assert_eq!(detail["assigned_staff_id"], Value::Null);
    let events: Vec<(Value, Value, Value)> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].clone(), e["from"].clone(), e["to"].clone()))
        .collect();
    assert_eq!(
        events,
        vec![
            (json!("assigned"), Value::Null, json!("789")),
            (json!("status"), json!("open"), json!("resolved")),
            (json!("assigned"), json!("789"), Value::Null),
        ],
        "{detail}"
    );
    assert_eq!(detail["events"][0]["staff_id"], 789);
    assert!(detail["events"][0]["at"].is_string());
    // The create-or-retrieve answer is the same detail.
    let again: Value = app
        .post(
            "/businesses/1/conversations",
            Some(PLATFORM_KEY),
            &json!({"client_id": 5, "location_id": 10}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["events"].as_array().unwrap().len(), 3);
}
both_deployments!(detail, conversation_detail_shows_its_history);
