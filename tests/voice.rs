//! Browser calling: Twilio Voice access tokens.
mod common;

use common::{Deployment, PLATFORM_KEY, Sandbox, TestApp};
use serde_json::{Value, json};

const ACCOUNT: &str = "AC00000000000000000000000000000001";
const KEY_SID: &str = "SK00000000000000000000000000000002";
const KEY_SECRET: &str = "voice-key-secret-0123456789";
const APP_SID: &str = "AP00000000000000000000000000000003";

async fn voice_app() -> TestApp {
    let mut sandbox = Sandbox::new(Deployment::Embedded).await;
    sandbox.set("OMEGA_TWILIO_ACCOUNT_SID", ACCOUNT);
    sandbox.set("OMEGA_TWILIO_AUTH_TOKEN", "global-auth-token-0123456789");
    sandbox.set("OMEGA_TWILIO_API_KEY_SID", KEY_SID);
    sandbox.set("OMEGA_TWILIO_API_KEY_SECRET", KEY_SECRET);
    sandbox.set("OMEGA_TWILIO_TWIML_APP_SID", APP_SID);
    let app = TestApp::spawn_in(sandbox, omega::Role::Serve).await;
    app.onboard(1).await;
    app
}

fn decode(token: &str, secret: &str) -> (jsonwebtoken::Header, Value) {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.validate_aud = false;
    validation.required_spec_claims = ["exp", "nbf", "iss", "sub"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let data = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .expect("a valid HS256 token signed with the API key secret");
    (data.header, data.claims)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_get_twilio_voice_tokens() {
    let app = voice_app().await;
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
        .get(app.url("/voice-calls/token"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["identity"], "b1_s789");
    let (header, claims) = decode(v["token"].as_str().unwrap(), KEY_SECRET);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    assert_eq!(header.cty.as_deref(), Some("twilio-fpa;v=1"));
    assert_eq!(claims["iss"], KEY_SID);
    assert_eq!(claims["sub"], ACCOUNT);
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(claims["jti"], format!("{KEY_SID}-{iat}"));
    assert_eq!(claims["nbf"], iat);
    assert_eq!(claims["exp"].as_i64().unwrap() - iat, 3600);
    assert_eq!(claims["grants"]["identity"], "b1_s789");
    assert_eq!(claims["grants"]["voice"]["incoming"]["allow"], true);
    assert_eq!(
        claims["grants"]["voice"]["outgoing"]["application_sid"],
        APP_SID
    );
    let expires: chrono::DateTime<chrono::Utc> = v["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires.timestamp(), iat + 3600);
    // A wrong secret does not verify it.
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.validate_aud = false;
    assert!(
        jsonwebtoken::decode::<Value>(
            v["token"].as_str().unwrap(),
            &jsonwebtoken::DecodingKey::from_secret(b"other"),
            &validation
        )
        .is_err()
    );

    // With an API key: for a named staff member, with a TTL.
    let v: Value = app
        .get(
            "/voice-calls/token?business_id=1&staff_id=789&ttl_seconds=600",
            Some(PLATFORM_KEY),
        )
        .await
        .json()
        .await
        .unwrap();
    let (_, claims) = decode(v["token"].as_str().unwrap(), KEY_SECRET);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
    // Bad requests.
    for (path, status) in [
        ("/voice-calls/token", 422),
        ("/voice-calls/token?business_id=1", 422),
        ("/voice-calls/token?business_id=1&staff_id=4242", 404),
        (
            "/voice-calls/token?business_id=1&staff_id=789&ttl_seconds=10",
            422,
        ),
        (
            "/voice-calls/token?business_id=1&staff_id=789&ttl_seconds=90000",
            422,
        ),
        ("/voice-calls/token?business_id=x&staff_id=789", 422),
        ("/voice-calls/token?business_id=77&staff_id=789", 404),
    ] {
        assert_eq!(
            app.get(path, Some(PLATFORM_KEY)).await.status(),
            status,
            "{path}"
        );
    }
    // A session asks for its own staff member only.
    let other = app
        .http
        .get(app.url("/voice-calls/token?business_id=1&staff_id=790"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_needs_configuration() {
    let app = TestApp::spawn(Deployment::Embedded).await;
    app.onboard(1).await;
    let resp = app
        .get(
            "/voice-calls/token?business_id=1&staff_id=789",
            Some(PLATFORM_KEY),
        )
        .await;
    assert_eq!(resp.status(), 409);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["detail"],
        "Twilio Voice is not configured for this business"
    );
}

use common::twilio_sign as sign;

const TOKEN: &str = "global-auth-token-0123456789";
const PUBLIC: &str = "http://127.0.0.1:8080";

async fn twiml(app: &TestApp, params: &[(&str, &str)], signature: Option<String>) -> (u16, String) {
    let mut req = app
        .http
        .post(app.url("/voice-calls/twiml"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(params).unwrap());
    if let Some(sig) = signature {
        req = req.header("X-Twilio-Signature", sig);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    if status == 200 {
        assert_eq!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .split(';')
                .next(),
            Some("text/xml")
        );
    }
    (status, resp.text().await.unwrap())
}

async fn signed(app: &TestApp, params: &[(&str, &str)]) -> (u16, String) {
    twiml(
        app,
        params,
        Some(sign(TOKEN, &format!("{PUBLIC}/voice-calls/twiml"), params)),
    )
    .await
}

async fn voice_messages(app: &TestApp) -> i64 {
    app.count("SELECT COUNT(*) FROM messages WHERE channel = 'voice'")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_calls_dial_out_and_are_recorded() {
    let app = voice_app().await;
    let call = [
        ("AccountSid", ACCOUNT),
        ("CallSid", "CA100"),
        ("From", "client:b1_s789"),
        ("To", "+1 (415) 555-0123"),
        ("Direction", "inbound"),
    ];
    let (status, xml) = signed(&app, &call).await;
    assert_eq!(status, 200, "{xml}");
    assert_eq!(
        xml,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Dial callerId=\"+14155550100\" answerOnBridge=\"true\">\
         <Number statusCallback=\"http://127.0.0.1:8080/twilio/voice/status\" statusCallbackEvent=\"initiated ringing answered completed\">+14155550123</Number>\
         </Dial></Response>"
    );
    common::wait_for(
        "the call to be recorded",
        std::time::Duration::from_secs(10),
        || async { (voice_messages(&app).await == 1).then_some(()) },
    )
    .await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM messages WHERE channel = 'voice' AND client_id = 5 AND provider_message_id = 'CA100' AND direction = 'outbound' AND staff_id = 789 AND location_id = 10").await,
        1
    );
    // Twilio retries: the same CallSid records once.
    assert_eq!(signed(&app, &call).await.0, 200);
    // A number no client has becomes a lead.
    let (status, _) = signed(
        &app,
        &[
            ("CallSid", "CA101"),
            ("From", "client:b1_s789"),
            ("To", "+14155559876"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    common::wait_for(
        "the lead's call",
        std::time::Duration::from_secs(10),
        || async { (voice_messages(&app).await == 2).then_some(()) },
    )
    .await;
    assert_eq!(app.count("SELECT COUNT(*) FROM clients WHERE business_id = 1 AND id < 0 AND client_type = 'lead' AND phone = '+14155559876'").await, 1);
    let stats = app.queue.stats().await.unwrap();
    let calls = stats.iter().find(|s| s.job_type == "record_call").unwrap();
    assert_eq!((calls.done, calls.dead), (3, 0));
    assert_eq!(voice_messages(&app).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_calls_ring_the_locations_staff() {
    let app = voice_app().await;
    let call = [
        ("CallSid", "CA200"),
        ("From", "+14155550124"),
        ("To", "+14155550101"),
        ("Direction", "inbound"),
    ];
    let (status, xml) = signed(&app, &call).await;
    assert_eq!(status, 200);
    assert_eq!(
        xml,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Dial answerOnBridge=\"true\"><Client>b1_s789</Client></Dial></Response>"
    );
    common::wait_for(
        "the incoming call",
        std::time::Duration::from_secs(10),
        || async { (voice_messages(&app).await == 1).then_some(()) },
    )
    .await;
    assert_eq!(app.count("SELECT COUNT(*) FROM messages WHERE client_id = 6 AND direction = 'inbound' AND location_id = 11").await, 1);
    assert_eq!(app.count("SELECT CAST(unread_count AS BIGINT) FROM conversations WHERE client_id = 6 AND location_key = 11").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_and_bad_calls_record_nothing() {
    let app = voice_app().await;
    let url = format!("{PUBLIC}/voice-calls/twiml");
    let call = [
        ("CallSid", "CA300"),
        ("From", "client:b1_s789"),
        ("To", "+14155550123"),
    ];
    // Missing, wrong token, changed parameter, other URL, extra parameter: all 403.
    assert_eq!(twiml(&app, &call, None).await.0, 403);
    assert_eq!(
        twiml(&app, &call, Some(sign("wrong-token", &url, &call)))
            .await
            .0,
        403
    );
    let changed = [
        ("CallSid", "CA300"),
        ("From", "client:b1_s789"),
        ("To", "+14155550199"),
    ];
    assert_eq!(
        twiml(&app, &changed, Some(sign(TOKEN, &url, &call)))
            .await
            .0,
        403
    );
    assert_eq!(
        twiml(
            &app,
            &call,
            Some(sign(
                TOKEN,
                "https://elsewhere.example/voice-calls/twiml",
                &call
            ))
        )
        .await
        .0,
        403
    );
    let extra = [
        ("CallSid", "CA300"),
        ("From", "client:b1_s789"),
        ("To", "+14155550123"),
        ("Digits", "1"),
    ];
    assert_eq!(
        twiml(&app, &extra, Some(sign(TOKEN, &url, &call))).await.0,
        403
    );
    // A call for no business here.
    assert_eq!(
        signed(
            &app,
            &[
                ("CallSid", "CA301"),
                ("From", "+14155550124"),
                ("To", "+19995550000")
            ]
        )
        .await
        .0,
        403
    );
    // Signed but not callable: a spoken refusal, nothing recorded.
    for (params, says) in [
        (
            vec![
                ("CallSid", "CA302"),
                ("From", "client:b1_s789"),
                ("To", "not a number"),
            ],
            "not a valid phone number",
        ),
        (
            vec![
                ("CallSid", "CA303"),
                ("From", "client:b1_s4242"),
                ("To", "+14155550123"),
            ],
            "cannot place calls",
        ),
    ] {
        let (status, xml) = signed(&app, &params).await;
        assert_eq!(status, 200);
        assert!(
            xml.contains(says) && xml.ends_with("<Hangup/></Response>"),
            "{xml}"
        );
    }
    // Malformed bodies.
    let resp = app
        .http
        .post(app.url("/voice-calls/twiml"))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let big = "a=".to_owned() + &"x".repeat(100_000);
    let resp = app
        .http
        .post(app.url("/voice-calls/twiml"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // Nothing was queued or recorded.
    let stats = app.queue.stats().await.unwrap();
    assert_eq!(
        stats
            .iter()
            .find(|s| s.job_type == "record_call")
            .unwrap()
            .done,
        0
    );
    assert_eq!(voice_messages(&app).await, 0);
}
