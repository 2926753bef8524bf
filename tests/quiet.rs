//! Quiet hours and keywords (issue 15): a business's messaging settings, a campaign held to
//! the end of quiet hours in the location's zone while a conversation message goes, the
//! business's own opt-out and opt-in keywords, and the answer to HELP.
mod common;

use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use common::{Deployment, PLATFORM_KEY, TestApp, wait_for};
use common::{TWILIO_ACCOUNT as ACCOUNT, TWILIO_TOKEN as TOKEN};
use serde_json::{Value, json};

const SETTINGS: &str = "/businesses/1/settings/messaging";

async fn app(d: Deployment) -> TestApp {
    common::with_twilio_sandbox(d).await
}

async fn put(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.http
        .put(app.url(SETTINGS))
        .header("X-API-KEY", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn settings_are_validated_and_kept(d: Deployment) {
    let app = app(d).await;
    let (own, other) = (app.business_key(1).await, app.business_key(2).await);
    let v: Value = app.get(SETTINGS, Some(&own)).await.json().await.unwrap();
    assert_eq!(v["quiet_hours"], Value::Null, "{v}");
    assert_eq!(
        v["quiet_hours_categories"],
        json!(["campaign", "automated"]),
        "{v}"
    );
    assert!(
        v["opt_out_keywords"]
            .as_array()
            .unwrap()
            .contains(&json!("REVOKE"))
    );
    assert!(
        v["opt_in_keywords"]
            .as_array()
            .unwrap()
            .contains(&json!("YES"))
    );

    for (label, body, field) in [
        (
            "hour 25",
            json!({"quiet_hours": {"start": "25:00", "end": "08:00"}}),
            json!(["body", "quiet_hours", "start"]),
        ),
        (
            "no minutes",
            json!({"quiet_hours": {"start": "21", "end": "08:00"}}),
            json!(["body", "quiet_hours", "start"]),
        ),
        (
            "empty period",
            json!({"quiet_hours": {"start": "08:00", "end": "08:00"}}),
            json!(["body", "quiet_hours", "end"]),
        ),
        (
            "unknown category",
            json!({"quiet_hours_categories": ["spam"]}),
            json!(["body", "quiet_hours_categories", 0]),
        ),
        (
            "no keywords",
            json!({"opt_out_keywords": []}),
            json!(["body", "opt_out_keywords"]),
        ),
        (
            "blank keyword",
            json!({"opt_out_keywords": ["STOP", " !! "]}),
            json!(["body", "opt_out_keywords", "1"]),
        ),
        (
            "both ways",
            json!({"opt_in_keywords": ["stop"]}),
            json!(["body", "opt_in_keywords", "0"]),
        ),
    ] {
        let resp = put(&app, &own, &body).await;
        assert_eq!(resp.status(), 422, "{label}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["detail"][0]["loc"], field, "{label}: {v}");
    }
    let resp = app
        .http
        .put(app.url(SETTINGS))
        .header("X-API-KEY", &own)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);

    // Keys only, and only the business's own.
    let wanted = json!({"quiet_hours": {"start": "21:00", "end": "08:00"},
        "quiet_hours_categories": ["campaign"], "opt_out_keywords": ["Arret", "STOP"]});
    assert_eq!(put(&app, &other, &wanted).await.status(), 403);
    assert_eq!(app.get(SETTINGS, Some(&other)).await.status(), 403);
    let session = app.session(1, 789).await;
    let resp = app
        .http
        .get(app.url(SETTINGS))
        .bearer_auth(&session)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    let resp = put(&app, &own, &wanted).await;
    assert_eq!(resp.status(), 200);
    let saved: Value = app.get(SETTINGS, Some(&own)).await.json().await.unwrap();
    assert_eq!(
        saved["quiet_hours"],
        json!({"start": "21:00", "end": "08:00"})
    );
    assert_eq!(saved["quiet_hours_categories"], json!(["campaign"]));
    assert_eq!(saved["opt_out_keywords"], json!(["ARRET", "STOP"]));
    assert_eq!(saved["opt_in_keywords"], json!(["START", "YES", "UNSTOP"]));
    // Another business still has the defaults.
    let theirs: Value = app
        .get("/businesses/2/settings/messaging", Some(&other))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["quiet_hours"], Value::Null);
}
both_deployments!(settings, settings_are_validated_and_kept);

async fn sent(app: &TestApp, category: &str) -> String {
    let body = json!({"category": category, "location_id": 10,
        "messages": [{"client_id": 5, "to_number": "+14155550123", "message": category}]});
    let v: Value = app
        .post("/businesses/1/sms/send", Some(PLATFORM_KEY), &body)
        .await
        .json()
        .await
        .unwrap();
    v["request_id"].as_str().unwrap().to_owned()
}

async fn settled(app: &TestApp, rid: &str, status: &str) -> Value {
    wait_for(status, Duration::from_secs(20), || async {
        let v = app.request_messages(1, rid, 1).await;
        let m = v["messages"][0].clone();
        (m["status"] == status).then_some(m)
    })
    .await
}

/// Location 10 is in America/New_York: quiet hours from an hour ago to an hour from now
/// there hold a campaign until their end, and let a conversation message through.
async fn quiet_hours_hold_a_campaign_not_a_conversation(d: Deployment) {
    let app = app(d).await;
    let now = Utc::now()
        .duration_trunc(chrono::Duration::minutes(1))
        .unwrap();
    let local = now.with_timezone(&chrono_tz::America::New_York);
    let hhmm = |t: chrono::DateTime<chrono_tz::Tz>| t.format("%H:%M").to_string();
    let quiet = json!({"quiet_hours": {
        "start": hhmm(local - chrono::Duration::hours(1)),
        "end": hhmm(local + chrono::Duration::hours(1))}});
    assert_eq!(put(&app, PLATFORM_KEY, &quiet).await.status(), 200);

    let campaign = sent(&app, "campaign").await;
    let m = settled(&app, &campaign, "scheduled").await;
    let at: DateTime<Utc> = m["scheduled_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(at, now + chrono::Duration::hours(1), "{m}");
    assert!(m["provider_message_id"].is_null(), "{m}");
    let statuses: Vec<&str> = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["queued", "scheduled"], "{m}");

    let conversation = sent(&app, "conversation").await;
    settled(&app, &conversation, "delivered").await;

    // Canceled while held, like any scheduled message.
    let id = m["id"].as_i64().unwrap();
    let resp = app
        .post(
            &format!("/businesses/1/messages/{id}/cancel"),
            Some(PLATFORM_KEY),
            &json!({}),
        )
        .await;
    assert_eq!(resp.status(), 200);
}
both_deployments!(quiet_hours, quiet_hours_hold_a_campaign_not_a_conversation);

async fn text(app: &TestApp, sid: &str, body: &str) {
    text_from(app, "+14155550123", sid, body).await;
    wait_for("the text", Duration::from_secs(20), || async {
        (app.count(&format!(
            "SELECT COUNT(*) FROM messages WHERE provider_message_id = '{sid}'"
        ))
        .await
            == 1)
            .then_some(())
    })
    .await;
}

async fn opted_out(app: &TestApp) -> bool {
    let v: Value = app
        .get("/businesses/1/clients/5", Some(PLATFORM_KEY))
        .await
        .json()
        .await
        .unwrap();
    v["consent"]["sms"]["opted_in"] == false
}

async fn the_business_keywords_apply(d: Deployment) {
    let app = app(d).await;
    let own = json!({"opt_out_keywords": ["ARRET"], "opt_in_keywords": ["REPRENDRE"]});
    assert_eq!(put(&app, PLATFORM_KEY, &own).await.status(), 200);
    text(&app, "SM1", "stop").await;
    assert!(
        !opted_out(&app).await,
        "STOP is not this business's keyword"
    );
    text(&app, "SM2", "Arret!").await;
    assert!(opted_out(&app).await);
    text(&app, "SM3", "reprendre").await;
    assert!(!opted_out(&app).await);
}
both_deployments!(keywords, the_business_keywords_apply);

async fn answer_to(app: &TestApp, sid: &str) -> Option<entities::message::Model> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    entities::message::Entity::find()
        .filter(entities::message::Column::RequestId.eq(format!("help:{sid}")))
        .one(&app.db)
        .await
        .unwrap()
}

async fn text_from(app: &TestApp, from: &str, sid: &str, body: &str) {
    let params = [
        ("AccountSid", ACCOUNT),
        ("MessageSid", sid),
        ("From", from),
        ("To", "+14155550100"),
        ("Body", body),
    ];
    let resp = common::post_as_twilio(app, TOKEN, "/twilio/sms/incoming", &params).await;
    assert_eq!(resp.status(), 200);
}

async fn help_is_answered_once_a_day(d: Deployment) {
    let app = app(d).await;
    text_from(&app, "+14155550123", "SM10", " help ").await;
    let answer = wait_for("the answer", Duration::from_secs(20), || async {
        answer_to(&app, "SM10")
            .await
            .filter(|m| m.status == "delivered")
    })
    .await;
    assert_eq!(answer.body, "Serenity Spa: reply STOP to unsubscribe.");
    assert_eq!(answer.from_addr.as_deref(), Some("+14155550100"));
    assert_eq!(answer.to_addr.as_deref(), Some("+14155550123"));
    assert_eq!(
        (answer.direction.as_str(), answer.sender_type.as_str()),
        ("outbound", "system")
    );
    assert_eq!(answer.category.as_deref(), Some("system"));
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM messages WHERE provider_message_id = 'SM10' AND conversation_id = {}",
            answer.conversation_id
        ))
        .await,
        1,
        "in the conversation the question is in"
    );
    // The same number again within a day: recorded, not answered.
    text(&app, "SM11", "INFO").await;
    assert!(answer_to(&app, "SM11").await.is_none());

    // The business's own words.
    let own = json!({"help_keywords": ["AIDE"], "help_text": "Spa Sérénité : répondez STOP pour arrêter."});
    assert_eq!(put(&app, PLATFORM_KEY, &own).await.status(), 200);
    let long = json!({"help_text": "x".repeat(321)});
    let resp = put(&app, PLATFORM_KEY, &long).await;
    assert_eq!(resp.status(), 422);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["detail"][0]["loc"], json!(["body", "help_text"]), "{v}");
    text_from(&app, "+14155550124", "SM12", "Aide?").await;
    let answer = wait_for("the answer", Duration::from_secs(20), || async {
        answer_to(&app, "SM12").await
    })
    .await;
    assert_eq!(answer.body, "Spa Sérénité : répondez STOP pour arrêter.");
    text_from(&app, "+14155550124", "SM13", "help").await;
    wait_for("the text", Duration::from_secs(20), || async {
        (app.count("SELECT COUNT(*) FROM messages WHERE provider_message_id = 'SM13'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    assert!(
        answer_to(&app, "SM13").await.is_none(),
        "HELP is not this business's keyword any more"
    );

    // A number that opted out still gets its answer (carriers require it); nothing else.
    let gone = "+14155550125";
    text_from(&app, gone, "SM20", "STOP").await;
    wait_for("the opt-out", Duration::from_secs(20), || async {
        let n = app
            .count("SELECT COUNT(*) FROM address_consents WHERE opted_out = true")
            .await;
        (n == 1).then_some(())
    })
    .await;
    text_from(&app, gone, "SM21", "aide").await;
    let answer = wait_for("the answer", Duration::from_secs(20), || async {
        answer_to(&app, "SM21")
            .await
            .filter(|m| m.status == "delivered")
    })
    .await;
    assert_eq!(answer.to_addr.as_deref(), Some(gone));
}
both_deployments!(help, help_is_answered_once_a_day);
