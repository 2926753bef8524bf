//! Bounded resources and no hangs (issue 14, items 7 to 11): a hung queue or database is
//! answered 503 with `Retry-After` in time and leaves nothing half-done; slow clients are cut
//! off; strangers are refused before their bodies are read; rate limits per business.
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::freeze::FreezingProxy;
use common::{Deployment, PLATFORM_KEY, Sandbox, TestApp, wait_for};
use omega::Role;
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The bound the issue sets for answering when a dependency hangs.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

fn record(text: &str) -> Value {
    json!({"category": "conversation", "messages": [
        {"client_id": 5, "to_number": "+14155550123", "message": text, "status": "sent"}
    ]})
}

async fn post_keyed(
    app: &TestApp,
    key: &str,
    idempotency_key: &str,
    body: &Value,
) -> reqwest::Response {
    app.post_keyed("/businesses/1/sms/record", key, idempotency_key, body)
        .await
}

/// Answers 503 with Retry-After within the bound, and says so for the record.
async fn assert_unavailable_in_time(app: &TestApp, key: &str, idempotency_key: &str) {
    let started = Instant::now();
    let resp = post_keyed(app, key, idempotency_key, &record("while hung")).await;
    let took = started.elapsed();
    assert_eq!(resp.status(), 503, "{}", resp.text().await.unwrap());
    assert!(took < ANSWER_WITHIN, "answered after {took:?}");
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
}

async fn messages(app: &TestApp, text: &str) -> i64 {
    app.count(&format!(
        "SELECT COUNT(*) FROM messages WHERE body = '{text}'"
    ))
    .await
}

/// Item 7 and 8: the queue stops answering (Redis paused; the embedded queue's database
/// locked by another writer). Requests answer 503 in time, /health says the queue is down,
/// and after it recovers the same Idempotency-Key is accepted once: the cut-off push never
/// landed and the key was not left "in progress".
async fn a_hung_queue_is_answered_in_time(d: Deployment) {
    let mut sandbox = Sandbox::new(d).await;
    let proxy = match d {
        Deployment::Scaled => {
            let redis: SocketAddr = "127.0.0.1:6379".parse().unwrap();
            let proxy = FreezingProxy::start(redis).await;
            sandbox.set("OMEGA_REDIS_URL", &format!("redis://{}", proxy.addr));
            Some(proxy)
        }
        Deployment::Embedded => None,
    };
    let app = TestApp::spawn_in(sandbox, Role::Serve).await;
    app.onboard(1).await;
    let key = app.business_key(1).await;
    // The key is looked up once while all is well (credentials are cached for a second).
    let resp = post_keyed(&app, &key, "warm", &record("warm")).await;
    assert_eq!(resp.status(), 200);

    // Hang the queue.
    let lock = match &proxy {
        Some(proxy) => {
            proxy.freeze();
            None
        }
        None => {
            // Another writer holds SQLite's write lock: the queue's INSERT waits.
            let path = format!("sqlite://{}/omega.db", app.sandbox.env["OMEGA_DATA_DIR"]);
            let mut opts = sea_orm::ConnectOptions::new(path);
            opts.max_connections(1).min_connections(1);
            let holder = Database::connect(opts).await.unwrap();
            holder.execute_unprepared("BEGIN IMMEDIATE").await.unwrap();
            Some(holder)
        }
    };
    assert_unavailable_in_time(&app, &key, "k-1").await;
    if d == Deployment::Scaled {
        let started = Instant::now();
        let health = app.get("/health", None).await;
        assert!(started.elapsed() < ANSWER_WITHIN);
        assert_eq!(health.status(), 503);
        let v: Value = health.json().await.unwrap();
        assert_eq!(v["services"][1]["name"], "queue");
        assert_eq!(v["services"][1]["status"], "down");
    }

    // Recover.
    match (&proxy, lock) {
        (Some(proxy), _) => proxy.thaw(),
        (None, Some(holder)) => {
            holder.execute_unprepared("ROLLBACK").await.unwrap();
        }
        _ => unreachable!(),
    }
    let recovered = Instant::now();
    let resp = wait_for("the queue to recover", Duration::from_secs(5), || async {
        let resp = post_keyed(&app, &key, "k-1", &record("while hung")).await;
        (resp.status() != 503).then_some(resp)
    })
    .await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert!(recovered.elapsed() < Duration::from_secs(5));
    wait_for("the message", Duration::from_secs(20), || async {
        (messages(&app, "while hung").await == 1).then_some(())
    })
    .await;
    // Had the cut-off push landed late, a second message would appear.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(messages(&app, "while hung").await, 1);
}
both_deployments!(
    a_hung_queue_is_answered_in_time,
    a_hung_queue_is_answered_in_time
);

/// Item 7, the database: Postgres stops answering (scaled). Requests that need it answer 503
/// in time and the service recovers when it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_postgres_is_answered_in_time() {
    let mut sandbox = Sandbox::new(Deployment::Scaled).await;
    let proxy = FreezingProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let url = sandbox.env["OMEGA_DATABASE_URL"].replace("127.0.0.1:5432", &proxy.addr.to_string());
    assert_ne!(
        url, sandbox.env["OMEGA_DATABASE_URL"],
        "the database URL names 127.0.0.1:5432"
    );
    sandbox.set("OMEGA_DATABASE_URL", &url);
    let app = TestApp::spawn_in(sandbox, Role::Serve).await;
    app.onboard(1).await;
    let key = app.business_key(1).await;
    proxy.freeze();
    // Past the credential cache: every request needs the database.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_unavailable_in_time(&app, &key, "k-pg").await;
    let started = Instant::now();
    let health = app.get("/health/db", None).await;
    assert!(started.elapsed() < ANSWER_WITHIN);
    assert_eq!(health.status(), 503);
    proxy.thaw();
    let resp = wait_for(
        "the database to recover",
        Duration::from_secs(5),
        || async {
            let resp = post_keyed(&app, &key, "k-pg", &record("after pg")).await;
            (resp.status() != 503).then_some(resp)
        },
    )
    .await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

/// Item 8: a reservation left "in progress" by a request that never finished (cut off, or
/// its process died) is taken over once abandoned, not held for the whole 24 h window.
async fn an_abandoned_idempotency_key_is_released(d: Deployment) {
    use entities::idempotency::{ABANDONED_AFTER, Reservation, reserve};
    let app = TestApp::spawn(d).await;
    let t0 = chrono::Utc::now();
    let reserved = |r: &Reservation| matches!(r, Reservation::Reserved);
    assert!(reserved(
        &reserve(&app.db, "s", "k", "h", t0).await.unwrap()
    ));
    let soon = reserve(&app.db, "s", "k", "h", t0 + chrono::Duration::seconds(30))
        .await
        .unwrap();
    assert!(matches!(soon, Reservation::InProgress));
    let later = t0 + ABANDONED_AFTER + chrono::Duration::seconds(1);
    assert!(reserved(
        &reserve(&app.db, "s", "k", "h", later).await.unwrap()
    ));
    // Taken over once: a second repeat then finds it in progress again.
    let again = reserve(&app.db, "s", "k", "h", later).await.unwrap();
    assert!(matches!(again, Reservation::InProgress));
}
both_deployments!(
    an_abandoned_idempotency_key_is_released,
    an_abandoned_idempotency_key_is_released
);

/// Item 10: the caller is known, and allowed the path's business, before the body is read.
async fn strangers_are_refused_before_their_body_is_read(d: Deployment) {
    let app = TestApp::spawn(d).await;
    app.onboard(1).await;
    app.onboard_directly(2).await;
    let other = app.business_key(2).await;
    let raw = |path: &str, key: Option<&str>, body: Vec<u8>| {
        let mut req = app
            .http
            .post(app.url(path))
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(key) = key {
            req = req.header("X-API-KEY", key);
        }
        req.send()
    };
    let garbage = b"{not json".to_vec();
    for (path, key, expected) in [
        ("/businesses/1/sms/send", Some(other.as_str()), 403),
        ("/businesses/1/sms/send", None, 401),
        (
            "/businesses/1/sms/send",
            Some("omk_notakeyatall000000"),
            401,
        ),
        ("/business/onboard", Some(other.as_str()), 403),
        (
            "/businesses/1/conversations/1/notes",
            Some(other.as_str()),
            403,
        ),
        ("/messages/process", None, 401),
    ] {
        let resp = raw(path, key, garbage.clone()).await.unwrap();
        assert_eq!(resp.status(), expected, "{path} with {key:?}");
    }
    // A large body from a stranger is refused, not read into memory and parsed.
    let big = vec![b'x'; 8 << 20];
    let resp = raw("/business/onboard", Some(&other), big).await;
    if let Ok(resp) = resp {
        assert_eq!(resp.status(), 403);
    }
    // A staff session is refused on another business's paths the same way.
    let token = app.session(1, 789).await;
    let resp = app
        .http
        .post(app.url("/businesses/2/conversations/1/notes"))
        .bearer_auth(token)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // The business's own key with the same body gets the validation error.
    let own = app.business_key(1).await;
    let resp = raw("/businesses/1/sms/send", Some(&own), garbage)
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
}
both_deployments!(
    strangers_are_refused_before_their_body_is_read,
    strangers_are_refused_before_their_body_is_read
);

/// Item 11: a token bucket per business and route class, 429 with Retry-After beyond it;
/// other businesses and the platform key have their own. On the scaled deployment the
/// bucket is shared by every ingress process.
async fn rate_limits_are_per_business(d: Deployment) {
    let mut sandbox = Sandbox::new(d).await;
    sandbox.set("OMEGA_RATE_LIMIT_READ", "0.2,2");
    let app = TestApp::spawn_in(sandbox, Role::Serve).await;
    app.onboard(1).await;
    app.onboard_directly(2).await;
    let (k1, k2) = (app.business_key(1).await, app.business_key(2).await);
    for _ in 0..2 {
        let resp = app.get("/businesses/1/conversations", Some(&k1)).await;
        assert_eq!(resp.status(), 200);
    }
    // A second ingress process shares the bucket when the buckets are in Redis.
    let second = match d {
        Deployment::Scaled => Some(
            omega::start(app.sandbox.config(), Role::Ingress)
                .await
                .unwrap(),
        ),
        Deployment::Embedded => None,
    };
    let base = second
        .as_ref()
        .and_then(|s| s.addr)
        .map(|a| format!("http://{a}"))
        .unwrap_or_else(|| app.base.clone());
    let over = app
        .http
        .get(format!("{base}/businesses/1/conversations"))
        .header("X-API-KEY", &k1)
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), 429);
    let wait: u64 = over.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5).contains(&wait), "Retry-After {wait}");
    let v: Value = over.json().await.unwrap();
    assert!(v["detail"].as_str().unwrap().contains("read"));
    // Writes are another class; business 2 and the platform key have buckets of their own.
    assert_eq!(
        app.post("/businesses/1/sms/record", Some(&k1), &record("w"))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.get("/businesses/2/conversations", Some(&k2))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.get("/businesses/1/conversations", Some(PLATFORM_KEY))
            .await
            .status(),
        200
    );
    if let Some(second) = second {
        second.shutdown().await.unwrap();
    }
}
both_deployments!(rate_limits_are_per_business, rate_limits_are_per_business);

/// Item 9: slow clients are cut off (headers, body), and connections are capped.
async fn slow_clients_are_cut_off(d: Deployment) {
    let mut sandbox = Sandbox::new(d).await;
    sandbox.set("OMEGA_HEADER_TIMEOUT_SECS", "1");
    sandbox.set("OMEGA_BODY_TIMEOUT_SECS", "1");
    sandbox.set("OMEGA_MAX_CONNECTIONS", "3");
    let app = TestApp::spawn_in(sandbox, Role::Serve).await;
    app.onboard(1).await;
    let key = app.business_key(1).await;
    let addr = app.base.trim_start_matches("http://").to_owned();

    // A body that never finishes: 408 after the body timeout.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /businesses/1/sms/record HTTP/1.1\r\nHost: x\r\nX-API-KEY: {key}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"messages\": ["
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut answer))
        .await
        .expect("an answer within the body timeout")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    drop(slow);

    // Headers that never finish: the connection is closed after the header timeout.
    let mut trickle = TcpStream::connect(&addr).await.unwrap();
    trickle
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), trickle.read(&mut answer))
        .await
        .expect("closed within the header timeout");
    assert!(matches!(closed, Ok(0) | Err(_)) || String::from_utf8_lossy(&answer).contains("408"));
    drop(trickle);

    // Three idle connections take every slot: a fourth client waits until one goes.
    let idle: Vec<TcpStream> = futures::future::join_all((0..3).map(|_| TcpStream::connect(&addr)))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waiting = reqwest::Client::new()
        .get(app.url("/health"))
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(waiting.is_err(), "served beyond the connection cap");
    drop(idle);
    let served = wait_for("a free connection slot", Duration::from_secs(5), || async {
        reqwest::Client::new()
            .get(app.url("/health"))
            .send()
            .await
            .ok()
    })
    .await;
    assert_eq!(served.status(), 200);
}
both_deployments!(slow_clients_are_cut_off, slow_clients_are_cut_off);
