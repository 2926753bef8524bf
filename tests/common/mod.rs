//! The test harness: starts the real omega on a random port against either deployment, each
//! test with its own database (a SQLite file, or a fresh Postgres database) and, for the
//! scaled deployment, its own Redis key prefix. Services that are missing fail the test.
#![allow(dead_code)]

pub mod freeze;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jobs::JobQueue;
use omega::{Config, Role, Running};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::{Value, json};

pub const PLATFORM_KEY: &str = "omk_testplatformkey0123456789";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deployment {
    /// SQLite with the queue in the database.
    Embedded,
    /// Postgres with the Redis Streams queue.
    Scaled,
}

pub fn pg_admin_url() -> String {
    std::env::var("OMEGA_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("OMEGA_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Where one test keeps its state; dropped at the end of the test.
pub struct Sandbox {
    pub deployment: Deployment,
    pub env: HashMap<String, String>,
    _dir: tempfile::TempDir,
    pg_db: Option<String>,
    redis_prefix: Option<String>,
}

impl Sandbox {
    pub async fn new(deployment: Deployment) -> Sandbox {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut env = HashMap::new();
        env.insert("OMEGA_LISTEN".into(), "127.0.0.1:0".into());
        env.insert("OMEGA_DATA_DIR".into(), dir.path().display().to_string());
        env.insert("OMEGA_BOOTSTRAP_PLATFORM_KEY".into(), PLATFORM_KEY.into());
        env.insert(
            "OMEGA_SECRET_KEY".into(),
            "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=".into(),
        );
        // Quick retries and takeovers so failure paths finish within a test.
        env.insert("OMEGA_JOB_BACKOFF_BASE_MS".into(), "50".into());
        env.insert("OMEGA_JOB_BACKOFF_MAX_MS".into(), "200".into());
        env.insert("OMEGA_JOB_MAX_ATTEMPTS".into(), "3".into());
        env.insert("OMEGA_QUEUE_VISIBILITY_SECS".into(), "2".into());
        env.insert("OMEGA_SHUTDOWN_TIMEOUT_SECS".into(), "5".into());
        env.insert("OMEGA_DB_MAX_CONNECTIONS".into(), "8".into());
        let (mut pg_db, mut redis_prefix) = (None, None);
        if deployment == Deployment::Scaled {
            let name = format!("omega_test_{}", uuid::Uuid::new_v4().simple());
            let admin = sea_orm::Database::connect(pg_admin_url())
                .await
                .expect("Postgres must be running for the scaled tests (see scripts/test)");
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create test database");
            let base = pg_admin_url();
            let url = format!(
                "{}/{name}",
                &base[..base.rfind('/').expect("database url has a path")]
            );
            env.insert("OMEGA_DATABASE_URL".into(), url);
            let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
            env.insert("OMEGA_REDIS_URL".into(), redis_url());
            env.insert("OMEGA_REDIS_PREFIX".into(), prefix.clone());
            pg_db = Some(name);
            redis_prefix = Some(prefix);
        }
        Sandbox {
            deployment,
            env,
            _dir: dir,
            pg_db,
            redis_prefix,
        }
    }

    /// The test's own directory (removed with the sandbox).
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub fn config(&self) -> Config {
        Config::from_lookup(|k| self.env.get(k).cloned()).expect("test config")
    }

    pub fn set(&mut self, key: &str, value: &str) {
        self.env.insert(key.into(), value.into());
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let (pg_db, prefix) = (self.pg_db.take(), self.redis_prefix.take());
        if pg_db.is_none() && prefix.is_none() {
            return;
        }
        // Cleanup needs async clients; run it on a thread of its own so it works from any
        // context (including a panicking test).
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Some(name) = pg_db
                    && let Ok(admin) = sea_orm::Database::connect(pg_admin_url()).await
                {
                    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = admin.execute_unprepared(&drop).await;
                }
                if let Some(prefix) = prefix
                    && let Ok(client) = redis::Client::open(redis_url())
                    && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                {
                    let keys: Vec<String> = redis::cmd("KEYS")
                        .arg(format!("{{{prefix}:*"))
                        .query_async(&mut conn)
                        .await
                        .unwrap_or_default();
                    if !keys.is_empty() {
                        let _: Result<(), _> =
                            redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
                    }
                }
            });
        })
        .join();
    }
}

/// A running omega and an HTTP client for it.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub db: DatabaseConnection,
    pub queue: Arc<dyn JobQueue>,
    running: Option<Running>,
    pub sandbox: Sandbox,
}

impl TestApp {
    pub async fn spawn(deployment: Deployment) -> TestApp {
        TestApp::spawn_in(Sandbox::new(deployment).await, Role::Serve).await
    }

    pub async fn spawn_in(sandbox: Sandbox, role: Role) -> TestApp {
        if role != Role::Serve {
            // As `omega migrate` would in a scaled deployment.
            omega::prepare(&mut sandbox.config(), true)
                .await
                .expect("migrations");
        }
        let running = omega::start(sandbox.config(), role)
            .await
            .expect("omega starts");
        let base = running
            .addr
            .map(|a| format!("http://{a}"))
            .unwrap_or_default();
        TestApp {
            base,
            http: reqwest::Client::new(),
            db: running.db.clone(),
            queue: running.queue.clone(),
            running: Some(running),
            sandbox,
        }
    }

    /// Stops omega gracefully and gives back the sandbox (its database and queue remain).
    pub async fn stop(mut self) -> Sandbox {
        if let Some(r) = self.running.take() {
            r.shutdown().await.expect("clean shutdown");
        }
        let TestApp { sandbox, .. } = self;
        sandbox
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
        let mut req = self.http.post(self.url(path)).json(body);
        if let Some(k) = key {
            req = req.header("X-API-KEY", k);
        }
        req.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(self.url(path));
        if let Some(k) = key {
            req = req.header("X-API-KEY", k);
        }
        req.send().await.expect("request sent")
    }

    /// POST with an API key and an Idempotency-Key.
    pub async fn post_keyed(
        &self,
        path: &str,
        key: &str,
        idempotency_key: &str,
        body: &Value,
    ) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("X-API-KEY", key)
            .header("Idempotency-Key", idempotency_key)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// A staff session's token, issued with the platform key.
    pub async fn session(&self, business_id: i64, staff_id: i64) -> String {
        let v: Value = self
            .post(
                "/auth/token",
                Some(PLATFORM_KEY),
                &json!({"business_id": business_id, "staff_id": staff_id}),
            )
            .await
            .json()
            .await
            .expect("a JSON answer");
        v["access_token"].as_str().expect("a session").to_owned()
    }

    /// Onboards a business (locations 10 and 11, staff 789, clients 5 and 6) and waits for it.
    pub async fn onboard(&self, business_id: i64) {
        self.onboard_with(&onboard_body(business_id, "Serenity Spa"))
            .await;
    }

    /// Onboards the business an onboarding body describes, and waits for it.
    pub async fn onboard_with(&self, body: &Value) {
        let resp = self
            .post("/business/onboard", Some(PLATFORM_KEY), body)
            .await;
        assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
        let path = format!("/business/{}/onboarding-status", body["business_id"]);
        wait_for(
            "onboarding to complete",
            Duration::from_secs(20),
            || async {
                let v: Value = self
                    .get(&path, Some(PLATFORM_KEY))
                    .await
                    .json()
                    .await
                    .unwrap();
                assert_ne!(v["status"], "failed", "{v}");
                (v["status"] == "completed").then_some(())
            },
        )
        .await;
    }

    /// Creates a business straight through the data layer (for processes with no worker).
    pub async fn onboard_directly(&self, business_id: i64) {
        let business = entities::onboard::Onboarding {
            business_id,
            name: "Spa".into(),
            timezone: "UTC".into(),
            locations: vec![],
            staff: vec![],
            clients: vec![],
            email_domains: None,
            credentials: vec![],
            row_errors: vec![],
        };
        let run = format!("direct-{business_id}");
        entities::onboard::start_run(&self.db, &run, business_id)
            .await
            .unwrap();
        entities::onboard::apply(&self.db, &run, &business)
            .await
            .unwrap();
    }

    /// Creates a business key through the data layer (the admin API comes later).
    pub async fn business_key(&self, business_id: i64) -> String {
        let (_, key) = entities::keys::create(
            &self.db,
            entities::keys::KeyKind::Business(business_id),
            "test",
            entities::keys::generate(),
        )
        .await
        .unwrap();
        key
    }

    /// The messages of a request, once `expected` of them are recorded.
    pub async fn request_messages(
        &self,
        business_id: i64,
        request_id: &str,
        expected: usize,
    ) -> Value {
        let path =
            format!("/businesses/{business_id}/messages/requests/{request_id}?include=events");
        wait_for(
            "messages to be recorded",
            Duration::from_secs(20),
            || async {
                let v: Value = self
                    .get(&path, Some(PLATFORM_KEY))
                    .await
                    .json()
                    .await
                    .unwrap();
                (v["total"].as_u64() == Some(expected as u64)).then_some(v)
            },
        )
        .await
    }

    pub async fn count(&self, sql: &str) -> i64 {
        let row = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                self.db.get_database_backend(),
                sql.to_owned(),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get_by_index::<i64>(0).unwrap()
    }
}

pub fn onboard_body(business_id: i64, name: &str) -> Value {
    json!({
        "business_id": business_id,
        "name": name,
        "timezone": "America/New_York",
        // The domains the sending tests use as From.
        "email_domains": ["spa.example", "spa.example.com"],
        "locations": [
            {"id": 10, "name": "Downtown", "phone_number": "+14155550100", "email": "downtown@example.com", "timezone": "America/New_York"},
            {"id": 11, "name": "Uptown", "phone_number": "+14155550101"}
        ],
        "staff": [{"id": 789, "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com", "location_ids": [10, 11]}],
        "clients": [
            {"id": 5, "first_name": "Grace", "last_name": "Hopper", "email": "grace@example.com", "phone": "+14155550123", "client_type": "client", "location_id": 10, "sms_opt_in": true, "email_opt_in": true},
            {"id": 6, "first_name": "Alan", "last_name": "Turing", "phone": "+14155550124", "client_type": "prospect", "location_id": 11, "sms_opt_in": true, "email_opt_in": false}
        ]
    })
}

/// Pushes a `record_sms` job with this payload, which workers cannot read, and waits for it
/// to die; its id.
pub async fn dead_job(app: &TestApp, payload: Value) -> String {
    let env = jobs::Envelope {
        id: uuid::Uuid::new_v4().to_string(),
        job_type: jobs::JobType::RecordSms,
        request_id: None,
        trace_id: None,
        business_id: payload["data"]["business_id"].as_i64(),
        attempt: 0,
        enqueued_at: chrono::Utc::now().timestamp_millis(),
        last_error: None,
        first_failed_at: None,
        payload: serde_json::value::to_raw_value(&payload).unwrap(),
    };
    app.queue.push(std::slice::from_ref(&env)).await.unwrap();
    let only = jobs::DeadSelector {
        ids: Some(vec![env.id.clone()]),
        ..Default::default()
    };
    wait_for("the job to die", Duration::from_secs(20), || async {
        let dead = app
            .queue
            .list_dead(jobs::JobType::RecordSms, &only, 0, 1)
            .await
            .unwrap();
        (dead.total == 1).then_some(())
    })
    .await;
    env.id
}

/// Polls `check` until it yields a value or the deadline passes (then the test fails).
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Runs a test body once per deployment.
#[macro_export]
macro_rules! both_deployments {
    ($name:ident, $body:ident) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                $body(common::Deployment::Embedded).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn scaled() {
                $body(common::Deployment::Scaled).await
            }
        }
    };
}

/// Posts a form to a Twilio webhook as Twilio would, signed with `token` for omega's default
/// public URL (`http://127.0.0.1:8080`).
pub async fn post_as_twilio(
    app: &TestApp,
    token: &str,
    path: &str,
    params: &[(&str, &str)],
) -> reqwest::Response {
    let signature = twilio_sign(token, &format!("http://127.0.0.1:8080{path}"), params);
    app.http
        .post(app.url(path))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", signature)
        .body(serde_urlencoded::to_string(params).unwrap())
        .send()
        .await
        .unwrap()
}

/// Twilio's request signature, computed here independently of omega's code:
/// Base64(HMAC-SHA1(auth token, URL followed by the parameters' names and values sorted by name)).
pub fn twilio_sign(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    use hmac::Mac;
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut data = url.to_owned();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        mac.finalize().into_bytes(),
    )
}

/// The status omega answers a POST of `declared` bytes (of which `sent` are sent) with,
/// posted over a raw connection: the server may stop reading at its limit, which a client
/// library reports as a broken connection rather than the answer.
pub async fn oversized(
    app: &TestApp,
    path: &str,
    content_type: &str,
    declared: usize,
    sent: usize,
) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n",
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    // The server may stop reading at its limit: a failed write is expected.
    let _ = conn.write_all(&vec![b'a'; sent]).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP response: {text:?}"))
}

/// Serves a local mock (a provider's API, a webhook receiver) on a free port until the test
/// ends; its base URL, once it accepts connections.
pub async fn serve_mock(endpoint: impl poem::Endpoint + 'static) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    tokio::spawn(
        poem::Server::new(poem::listener::TcpListener::bind(addr.to_string())).run(endpoint),
    );
    wait_for("the mock to listen", Duration::from_secs(5), || async {
        tokio::net::TcpStream::connect(addr).await.ok().map(|_| ())
    })
    .await;
    format!("http://{addr}")
}

/// The global Twilio account of [`with_twilio_sandbox`]: webhooks are signed with its token.
pub const TWILIO_ACCOUNT: &str = "AC00000000000000000000000000000001";
pub const TWILIO_TOKEN: &str = "global-auth-token-0123456789";

/// Client 5 of business 1 texts its Downtown number, as Twilio posts it (signed with
/// [`TWILIO_TOKEN`]): a `message.received` event once a worker records it.
pub async fn client_texts(app: &TestApp, sid: &str, body: &str) {
    let params = [
        ("AccountSid", TWILIO_ACCOUNT),
        ("MessageSid", sid),
        ("From", "+14155550123"),
        ("To", "+14155550100"),
        ("Body", body),
    ];
    let resp = post_as_twilio(app, TWILIO_TOKEN, "/twilio/sms/incoming", &params).await;
    assert_eq!(resp.status(), 200);
}

/// An omega whose Twilio account is configured (so webhooks verify) while SMS go to the
/// sandbox; business 1 onboarded through the API, business 2 directly.
pub async fn with_twilio_sandbox(d: Deployment) -> TestApp {
    let mut sandbox = Sandbox::new(d).await;
    sandbox.set("OMEGA_DEFAULT_SMS_PROVIDER", "sandbox");
    sandbox.set("OMEGA_TWILIO_ACCOUNT_SID", TWILIO_ACCOUNT);
    sandbox.set("OMEGA_TWILIO_AUTH_TOKEN", TWILIO_TOKEN);
    let app = TestApp::spawn_in(sandbox, Role::Serve).await;
    app.onboard(1).await;
    app.onboard_directly(2).await;
    app
}
