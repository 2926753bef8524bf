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
