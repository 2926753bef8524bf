//! The business directory: locations, staff and clients, scoped to the business in the path.
mod common;

use common::{Deployment, PLATFORM_KEY, TestApp};
use serde_json::{Value, json};

async fn get(app: &TestApp, path: &str) -> Value {
    let resp = app.get(path, Some(PLATFORM_KEY)).await;
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.unwrap()
}

async fn directory_reads(d: Deployment) {
    let app = TestApp::spawn(d).await;
    app.onboard(1).await;
    app.onboard(2).await;

    let locations = get(&app, "/businesses/1/locations").await;
    assert_eq!(
        locations[0],
        json!({"id": 10, "name": "Downtown", "phone_number": "+14155550100", "email": "downtown@example.com", "timezone": "America/New_York"})
    );
    assert_eq!(locations.as_array().unwrap().len(), 2);

    let staff = get(&app, "/businesses/1/staffs?q=LOVE").await;
    assert_eq!(
        (staff["total"].as_u64(), staff["items"][0]["id"].as_i64()),
        (Some(1), Some(789))
    );
    assert_eq!(get(&app, "/businesses/1/staffs?q=nobody").await["total"], 0);
    assert_eq!(
        get(&app, "/businesses/1/staffs?location_id=11").await["total"],
        1
    );
    assert_eq!(
        get(&app, "/businesses/1/staffs?location_id=99").await["total"],
        0
    );
    let member = get(&app, "/businesses/1/staffs/789").await;
    assert_eq!(member["first_name"], "Ada");
    assert_eq!(member["location_ids"], json!([10, 11]));
    assert_eq!(member["assigned_open_conversations"], 0);

    let clients = get(&app, "/businesses/1/clients?page_size=1").await;
    assert_eq!(
        (clients["total"].as_u64(), clients["total_pages"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(clients["items"][0]["id"], 5);
    assert_eq!(
        get(&app, "/businesses/1/clients?page=2&page_size=1").await["items"][0]["id"],
        6
    );
    for (query, id) in [
        ("q=hopper", 5),
        ("q=%2B14155550124", 6),
        ("q=GRACE%40", 5),
        ("client_type=prospect", 6),
        ("location_id=10", 5),
    ] {
        let found = get(&app, &format!("/businesses/1/clients?{query}")).await;
        assert_eq!(found["total"], 1, "{query}: {found}");
        assert_eq!(found["items"][0]["id"], id, "{query}");
    }
    assert_eq!(
        get(&app, "/businesses/1/clients?q=%25").await["total"],
        0,
        "LIKE wildcards are literal"
    );

    // Details after some messages.
    let body = json!({"category": "conversation", "location_id": 10, "messages": [
        {"client_id": 5, "to_number": "+14155550123", "message": "a", "status": "sent"},
        {"client_id": 5, "to_number": "+14155550123", "message": "b", "status": "sent"}]});
    let ok: Value = app
        .post("/businesses/1/sms/record", Some(PLATFORM_KEY), &body)
        .await
        .json()
        .await
        .unwrap();
    app.request_messages(1, ok["request_id"].as_str().unwrap(), 2)
        .await;
    let c = get(&app, "/businesses/1/clients/5").await;
    assert_eq!(c["first_name"], "Grace");
    assert_eq!(c["consent"]["sms"]["opted_in"], true);
    assert_eq!(c["consent"]["email"]["opt_out_reason"], Value::Null);
    assert_eq!(c["message_counts"], json!([{"channel": "sms", "count": 2}]));
    assert_eq!(c["conversations"].as_array().unwrap().len(), 1);
    assert_eq!(c["conversations"][0]["location_id"], 10);
    assert_eq!(c["conversations"][0]["status"], "open");
    assert!(c["last_contact_at"].is_string());
    let alan = get(&app, "/businesses/1/clients/6").await;
    assert_eq!(alan["consent"]["email"]["opted_in"], false);
    assert_eq!(alan["message_counts"], json!([]));

    // Scoped to the business; 404s; bad parameters.
    let key2 = app.business_key(2).await;
    assert_eq!(
        app.get("/businesses/1/clients/5", Some(&key2))
            .await
            .status(),
        403
    );
    assert_eq!(
        app.get("/businesses/2/clients/5", Some(&key2))
            .await
            .status(),
        200,
        "business 2 has its own client 5"
    );
    assert_eq!(
        app.get("/businesses/1/clients/999", Some(PLATFORM_KEY))
            .await
            .status(),
        404
    );
    assert_eq!(
        app.get("/businesses/1/staffs/999", Some(PLATFORM_KEY))
            .await
            .status(),
        404
    );
    assert_eq!(
        app.get("/businesses/9/locations", Some(PLATFORM_KEY))
            .await
            .status(),
        404
    );
    for bad in [
        "/businesses/1/clients?page=0",
        "/businesses/1/clients?page_size=101",
        "/businesses/1/clients?client_type=vip",
        "/businesses/1/staffs/x",
    ] {
        assert_eq!(
            app.get(bad, Some(PLATFORM_KEY)).await.status(),
            422,
            "{bad}"
        );
    }
    // A staff session reads its own business's directory.
    let session: Value = app
        .post(
            "/auth/token",
            Some(PLATFORM_KEY),
            &json!({"business_id": 1, "staff_id": 789}),
        )
        .await
        .json()
        .await
        .unwrap();
    let token = session["access_token"].as_str().unwrap();
    let resp = app
        .http
        .get(app.url("/businesses/1/clients"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
both_deployments!(directory, directory_reads);

async fn conversations_open_once_and_list_messages(d: Deployment) {
    let app = TestApp::spawn(d).await;
    app.onboard(1).await;
    app.onboard(2).await;
    // Twenty concurrent calls for one client and location: one conversation, one 201.
    let open = json!({"client_id": 6, "location_id": 11});
    let calls = (0..20).map(|_| app.post("/businesses/1/conversations", Some(PLATFORM_KEY), &open));
    let responses = futures::future::join_all(calls).await;
    let mut created = 0;
    let mut ids = std::collections::HashSet::new();
    for r in responses {
        let status = r.status().as_u16();
        assert!(status == 200 || status == 201, "{status}");
        created += (status == 201) as usize;
        let v: Value = r.json().await.unwrap();
        ids.insert(v["id"].as_i64().unwrap());
        assert_eq!(v["location_id"], 11);
    }
    assert_eq!((created, ids.len()), (1, 1));
    assert_eq!(
        app.count("SELECT COUNT(*) FROM conversations WHERE client_id = 6")
            .await,
        1
    );
    let id = *ids.iter().next().unwrap();
    for (body, status) in [
        (json!({"client_id": 999}), 404),
        (json!({"client_id": 6, "location_id": 77}), 404),
        (json!({"client_id": "x"}), 422),
        (json!({}), 422),
    ] {
        assert_eq!(
            app.post("/businesses/1/conversations", Some(PLATFORM_KEY), &body)
                .await
                .status(),
            status,
            "{body}"
        );
    }

    // Its timeline, newest first, filtered.
    let body = json!({"category": "conversation", "location_id": 11, "messages": [
        {"client_id": 6, "to_number": "+14155550124", "message": "first", "status": "sent"},
        {"client_id": 6, "to_number": "+14155550124", "message": "second", "status": "failed"}]});
    let ok: Value = app
        .post("/businesses/1/sms/record", Some(PLATFORM_KEY), &body)
        .await
        .json()
        .await
        .unwrap();
    app.request_messages(1, ok["request_id"].as_str().unwrap(), 2)
        .await;
    let page = get(
        &app,
        &format!("/businesses/1/conversations/{id}/messages?include=events"),
    )
    .await;
    assert_eq!(page["total"], 2);
    assert_eq!(page["items"][0]["conversation_id"], id);
    assert!(page["items"][0]["events"].is_array());
    assert_eq!(
        get(
            &app,
            &format!("/businesses/1/conversations/{id}/messages?filter=failed")
        )
        .await["items"][0]["body"],
        "second"
    );
    assert_eq!(
        get(
            &app,
            &format!("/businesses/1/conversations/{id}/messages?filter=email")
        )
        .await["total"],
        0
    );
    assert_eq!(
        get(
            &app,
            &format!("/businesses/1/conversations/{id}/messages?page_size=1&page=2")
        )
        .await["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        app.get(
            &format!("/businesses/2/conversations/{id}/messages"),
            Some(PLATFORM_KEY)
        )
        .await
        .status(),
        404,
        "another business's conversation"
    );
    assert_eq!(
        app.get(
            &format!("/businesses/1/conversations/{id}/messages?filter=junk"),
            Some(PLATFORM_KEY)
        )
        .await
        .status(),
        422
    );
}
both_deployments!(conversations, conversations_open_once_and_list_messages);

async fn notes_assignment_and_status(d: Deployment) {
    let app = TestApp::spawn(d).await;
    app.onboard(1).await;
    let opened: Value = app
        .post(
            "/businesses/1/conversations",
            Some(PLATFORM_KEY),
            &json!({"client_id": 5, "location_id": 10}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = opened["id"].as_i64().unwrap();
    let base = format!("/businesses/1/conversations/{id}");

    let resp = app
        .post(
            &format!("{base}/notes"),
            Some(PLATFORM_KEY),
            &json!({"staff_id": 789, "note": "Prefers mornings"}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let note: Value = resp.json().await.unwrap();
    assert_eq!(
        (note["channel"].as_str(), note["body"].as_str()),
        (Some("note"), Some("Prefers mornings"))
    );
    let notes = get(&app, &format!("{base}/messages?filter=notes")).await;
    assert_eq!(notes["total"], 1);
    assert_eq!(
        app.count(&format!(
            "SELECT CAST(unread_count AS BIGINT) FROM conversations WHERE id = {id}"
        ))
        .await,
        0
    );
    assert_eq!(
        app.post(
            &format!("{base}/notes"),
            Some(PLATFORM_KEY),
            &json!({"staff_id": 4242, "note": "x"})
        )
        .await
        .status(),
        422
    );
    assert_eq!(
        app.post(
            &format!("{base}/notes"),
            Some(PLATFORM_KEY),
            &json!({"staff_id": 789, "note": "  "})
        )
        .await
        .status(),
        422
    );

    // Assignment: to a staff member of the business only; then unassigned.
    let ok = app
        .post(
            &format!("{base}/assign"),
            Some(PLATFORM_KEY),
            &json!({"staff_id": 789, "assigned_by": 789}),
        )
        .await;
    assert_eq!(
        ok.json::<Value>().await.unwrap(),
        json!({"success": true, "updated": 1})
    );
    assert_eq!(
        get(&app, "/businesses/1/staffs/789").await["assigned_open_conversations"],
        1
    );
    let bad = app
        .post(
            &format!("{base}/assign"),
            Some(PLATFORM_KEY),
            &json!({"staff_id": 4242}),
        )
        .await;
    assert_eq!(bad.status(), 422);
    assert_eq!(
        bad.json::<Value>().await.unwrap()["detail"][0]["loc"],
        json!(["body", "staff_id"])
    );
    assert_eq!(
        app.post(
            &format!("{base}/assign"),
            Some(PLATFORM_KEY),
            &json!({"staff_id": null})
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        get(&app, "/businesses/1/staffs/789").await["assigned_open_conversations"],
        0
    );

    // Status: resolved; an inbound message reopens it; snoozing needs a time.
    assert_eq!(
        app.post(
            &format!("{base}/status"),
            Some(PLATFORM_KEY),
            &json!({"status": "resolved"})
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        get(&app, "/businesses/1/clients/5").await["conversations"][0]["status"],
        "resolved"
    );
    let inbound = json!({"category": "conversation", "direction": "inbound", "location_id": 10, "messages": [
        {"client_id": 5, "to_number": "+14155550100", "from_number": "+14155550123", "message": "one more thing", "status": "received"}]});
    let rec: Value = app
        .post("/businesses/1/sms/record", Some(PLATFORM_KEY), &inbound)
        .await
        .json()
        .await
        .unwrap();
    app.request_messages(1, rec["request_id"].as_str().unwrap(), 1)
        .await;
    assert_eq!(
        get(&app, "/businesses/1/clients/5").await["conversations"][0]["status"],
        "open"
    );
    assert_eq!(
        app.post(
            &format!("{base}/status"),
            Some(PLATFORM_KEY),
            &json!({"status": "snoozed"})
        )
        .await
        .status(),
        422
    );
    assert_eq!(
        app.post(
            &format!("{base}/status"),
            Some(PLATFORM_KEY),
            &json!({"status": "asleep"})
        )
        .await
        .status(),
        422
    );
    assert_eq!(
        app.post(
            "/businesses/1/conversations/999999/status",
            Some(PLATFORM_KEY),
            &json!({"status": "open"})
        )
        .await
        .status(),
        404
    );
    // Who did what, in order.
    let events = entities::inbox::conversation_events(&app.db, id)
        .await
        .unwrap();
    let kinds: Vec<(String, Option<String>, Option<String>)> = events
        .into_iter()
        .map(|e| (e.kind, e.from_value, e.to_value))
        .collect();
    assert_eq!(
        kinds,
        [
            ("assigned".into(), None, Some("789".into())),
            ("assigned".into(), Some("789".into()), None),
            (
                "status".into(),
                Some("open".into()),
                Some("resolved".into())
            ),
        ]
    );
}
both_deployments!(inbox_commands, notes_assignment_and_status);

async fn conversation_list_filters_combine(d: Deployment) {
    let app = TestApp::spawn(d).await;
    app.onboard(1).await;
    let record = |path: &'static str, body: Value| {
        let app = &app;
        async move {
            let ok: Value = app
                .post(path, Some(PLATFORM_KEY), &body)
                .await
                .json()
                .await
                .unwrap();
            app.request_messages(1, ok["request_id"].as_str().unwrap(), 1)
                .await;
        }
    };
    record("/businesses/1/email/record", json!({"category": "conversation", "location_id": 11,
        "messages": [{"client_id": 6, "to_email": "alan@example.com", "subject": "s", "message": "hello Alan", "status": "sent"}]})).await;
    record("/businesses/1/sms/record", json!({"category": "conversation", "direction": "inbound", "location_id": 10,
        "messages": [{"client_id": 5, "to_number": "+14155550100", "from_number": "+14155550123", "message": "Can I come at 4?", "status": "received"}]})).await;
    let list = get(&app, "/businesses/1/conversations").await;
    assert_eq!(list["total"], 2);
    assert_eq!(list["items"][0]["client"]["id"], 5, "newest activity first");
    assert_eq!(
        list["items"][0]["last_message"]["preview"],
        "Can I come at 4?"
    );
    assert_eq!(list["items"][0]["unread_count"], 1);
    let alan = list["items"][1]["id"].as_i64().unwrap();
    assert_eq!(
        app.post(
            &format!("/businesses/1/conversations/{alan}/assign"),
            Some(PLATFORM_KEY),
            &json!({"staff_id": 789})
        )
        .await
        .status(),
        200
    );

    let only = |query: &'static str| {
        let app = &app;
        async move {
            let v = get(app, &format!("/businesses/1/conversations?{query}")).await;
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["client"]["id"].as_i64().unwrap())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(only("status=open").await, [5, 6]);
    assert_eq!(only("status=resolved").await, Vec::<i64>::new());
    assert_eq!(only("assignment=unassigned").await, [5]);
    assert_eq!(only("assignment=assigned").await, [6]);
    assert_eq!(only("assignment=mine&staff_id=789").await, [6]);
    assert_eq!(only("location_id=11").await, [6]);
    assert_eq!(only("channel=email").await, [6]);
    assert_eq!(only("channel=sms").await, [5]);
    assert_eq!(only("unread_only=true").await, [5]);
    assert_eq!(only("q=turing").await, [6]);
    assert_eq!(only("q=%2B14155550123").await, [5]);
    assert_eq!(
        only("status=open&assignment=unassigned&channel=sms&unread_only=true").await,
        [5]
    );
    assert_eq!(
        only("status=open&assignment=assigned&channel=sms").await,
        Vec::<i64>::new()
    );
    // Stable paging: two pages of one cover the list once.
    let mut paged = only("page_size=1&page=1").await;
    paged.extend(only("page_size=1&page=2").await);
    assert_eq!(paged, [5, 6]);
    // `mine` needs someone; a staff session is someone.
    assert_eq!(
        app.get(
            "/businesses/1/conversations?assignment=mine",
            Some(PLATFORM_KEY)
        )
        .await
        .status(),
        422
    );
    let session: Value = app
        .post(
            "/auth/token",
            Some(PLATFORM_KEY),
            &json!({"business_id": 1, "staff_id": 789}),
        )
        .await
        .json()
        .await
        .unwrap();
    let mine: Value = app
        .http
        .get(app.url("/businesses/1/conversations?assignment=mine"))
        .bearer_auth(session["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine["items"][0]["client"]["id"], 6);
    assert_eq!(mine["total"], 1);
    // The filters' counts are the list's totals.
    let filters = get(&app, "/businesses/1/conversations/filters?staff_id=789").await;
    let total = |query: String| {
        let app = &app;
        async move {
            get(app, &format!("/businesses/1/conversations?{query}")).await["total"]
                .as_u64()
                .unwrap()
        }
    };
    for f in filters["status"].as_array().unwrap() {
        assert_eq!(
            f["count"].as_u64().unwrap(),
            total(format!("status={}", f["value"].as_str().unwrap())).await,
            "{f}"
        );
    }
    for f in filters["assignment"].as_array().unwrap() {
        assert_eq!(
            f["count"].as_u64().unwrap(),
            total(format!(
                "assignment={}&staff_id=789",
                f["value"].as_str().unwrap()
            ))
            .await,
            "{f}"
        );
    }
    for f in filters["locations"].as_array().unwrap() {
        assert_eq!(
            f["count"].as_u64().unwrap(),
            total(format!("location_id={}", f["location_id"])).await,
            "{f}"
        );
    }
    for f in filters["channels"].as_array().unwrap() {
        assert_eq!(
            f["count"].as_u64().unwrap(),
            total(format!("channel={}", f["value"].as_str().unwrap())).await,
            "{f}"
        );
    }
    assert_eq!(
        filters["unread"].as_u64().unwrap(),
        total("unread_only=true".into()).await
    );
    assert_eq!(
        filters["assignment"].as_array().unwrap().len(),
        4,
        "mine is counted with a staff member"
    );
    assert_eq!(filters["channels"].as_array().unwrap().len(), 2);
    for bad in [
        "status=gone",
        "assignment=everyone",
        "channel=fax",
        "unread_only=maybe",
        "page_size=500",
    ] {
        assert_eq!(
            app.get(
                &format!("/businesses/1/conversations?{bad}"),
                Some(PLATFORM_KEY)
            )
            .await
            .status(),
            422,
            "{bad}"
        );
    }
}
both_deployments!(conversation_list, conversation_list_filters_combine);

async fn read_state_keeps_unread_counts_true(d: Deployment) {
    let app = TestApp::spawn(d).await;
    app.onboard(1).await;
    let inbound = |client: i64, from: &'static str, n: usize| {
        let app = &app;
        async move {
            let messages: Vec<Value> = (0..n)
                .map(|i| json!({"client_id": client, "to_number": "+14155550100", "from_number": from, "message": format!("in {i}"), "status": "received"}))
                .collect();
            let body = json!({"category": "conversation", "direction": "inbound", "location_id": 10, "messages": messages});
            let ok: Value = app
                .post("/businesses/1/sms/record", Some(PLATFORM_KEY), &body)
                .await
                .json()
                .await
                .unwrap();
            app.request_messages(1, ok["request_id"].as_str().unwrap(), n)
                .await
        }
    };
    let recount = || {
        let app = &app;
        async move {
            app.count(
                "SELECT COUNT(*) FROM conversations c WHERE c.unread_count <> \
                 (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id AND m.direction = 'inbound' AND m.is_read = false)",
            )
            .await
        }
    };
    let unread = |client: i64| {
        let app = &app;
        async move {
            app.count(&format!(
                "SELECT CAST(unread_count AS BIGINT) FROM conversations WHERE client_id = {client}"
            ))
            .await
        }
    };
    let grace = inbound(5, "+14155550123", 3).await;
    inbound(6, "+14155550124", 1).await;
    assert_eq!((unread(5).await, unread(6).await), (3, 1));
    let conv = grace["messages"][0]["conversation_id"].as_i64().unwrap();
    let read = |body: Value| {
        let app = &app;
        async move {
            let resp = app
                .post(
                    "/businesses/1/messages/read-status",
                    Some(PLATFORM_KEY),
                    &body,
                )
                .await;
            assert_eq!(resp.status(), 200, "{body}");
            resp.json::<Value>().await.unwrap()["updated"]
                .as_u64()
                .unwrap()
        }
    };
    assert_eq!(
        read(json!({"is_read": true, "conversation_id": conv})).await,
        3
    );
    assert_eq!(unread(5).await, 0);
    assert_eq!(
        read(json!({"is_read": true, "conversation_id": conv})).await,
        0,
        "already read"
    );
    let one = grace["messages"][1]["id"].as_i64().unwrap();
    assert_eq!(
        read(json!({"is_read": false, "message_ids": [one]})).await,
        1
    );
    assert_eq!(unread(5).await, 1);
    assert_eq!(read(json!({"is_read": true, "client_id": 6})).await, 1);
    assert_eq!(read(json!({"is_read": true, "channel": "email"})).await, 0);
    // Random mix of new inbound messages and read/unread calls: counts stay true, never negative.
    for round in 0..12u64 {
        match round % 4 {
            0 => {
                inbound(5, "+14155550123", 1 + (round as usize % 3)).await;
            }
            1 => {
                read(json!({"is_read": round % 8 == 1, "client_id": 5})).await;
            }
            2 => {
                read(json!({"is_read": false, "before": "2100-01-01T00:00:00Z"})).await;
            }
            _ => {
                read(json!({"is_read": true, "channel": "sms"})).await;
            }
        }
        if round % 3 == 0 {
            // Status and assignment moves too: the filter counts' cells must follow.
            let path = format!("/businesses/1/conversations/{conv}");
            let status = ["resolved", "pending", "open"][(round / 3) as usize % 3];
            app.post(
                &format!("{path}/status"),
                Some(PLATFORM_KEY),
                &json!({"status": status}),
            )
            .await;
            let staff = if round % 2 == 0 {
                json!(789)
            } else {
                Value::Null
            };
            app.post(
                &format!("{path}/assign"),
                Some(PLATFORM_KEY),
                &json!({"staff_id": staff}),
            )
            .await;
        }
        assert_eq!(recount().await, 0, "drift after round {round}");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM conversations WHERE unread_count < 0")
                .await,
            0
        );
        // The filter counts' cells equal a recount of the conversations.
        let cells_drift = app
            .count(
                "SELECT COUNT(*) FROM (SELECT business_id, location_key, status, \
                   CASE WHEN assigned_staff_id IS NULL THEN 1 ELSE 0 END AS u, \
                   CASE WHEN unread_count > 0 THEN 1 ELSE 0 END AS r, channels, COUNT(*) AS n \
                 FROM conversations GROUP BY 1, 2, 3, 4, 5, 6) t \
                 FULL OUTER JOIN (SELECT * FROM conversation_cells WHERE n > 0) c \
                 ON c.business_id = t.business_id AND c.location_key = t.location_key AND c.status = t.status \
                   AND c.unassigned = t.u AND c.unread = t.r AND c.channels = t.channels \
                 WHERE t.n IS NULL OR c.n IS NULL OR t.n <> c.n",
            )
            .await;
        assert_eq!(cells_drift, 0, "filter cells drift after round {round}");
    }
    let resp = app
        .post(
            "/businesses/1/messages/read-status",
            Some(PLATFORM_KEY),
            &json!({"is_read": true}),
        )
        .await;
    assert_eq!(resp.status(), 422, "a selector is required");
    assert_eq!(
        app.post(
            "/businesses/1/messages/read-status",
            Some(PLATFORM_KEY),
            &json!({"client_id": 5})
        )
        .await
        .status(),
        422
    );
}
both_deployments!(read_state, read_state_keeps_unread_counts_true);
