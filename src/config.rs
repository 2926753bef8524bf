//! The one configuration of every omega process, from `OMEGA_*` environment variables
//! (optionally also from a file named by `OMEGA_CONFIG`; the environment wins).
//! Every setting has a default that gives the embedded deployment; `validate` refuses
//! combinations that cannot work before anything starts.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `OMEGA_LISTEN` | address the ingress binds | `127.0.0.1:8080` |
//! | `OMEGA_PUBLIC_URL` | the URL clients and providers call | `http://127.0.0.1:8080` |
//! | `OMEGA_DATA_DIR` | where the embedded deployment keeps its files | `./data` |
//! | `OMEGA_DATABASE_URL` | `postgres://…` or `sqlite://…` | `sqlite://<data dir>/omega.db` |
//! | `OMEGA_DB_MAX_CONNECTIONS` | database pool size per process | `20` (SQLite: `8`) |
//! | `OMEGA_REDIS_URL` | Redis for the queue; unset = the embedded queue (in the database) | unset |
//! | `OMEGA_REDIS_PREFIX` | prefix of every Redis key | `omega` |
//! | `OMEGA_SECRET_KEY` | base64, 32+ bytes: encrypts stored provider secrets | generated once under the data dir for SQLite; required with Postgres |
//! | `OMEGA_BOOTSTRAP_PLATFORM_KEY` | a platform API key ensured at start (`omk_…`) | unset |
//! | `OMEGA_LOG_FORMAT` | `text` or `json` | `text` |
//! | `OMEGA_WORKER_CONCURRENCY` | jobs of one type run at once per worker process | `16` |
//! | `OMEGA_WORKER_BATCH` | the most send or status jobs that share one transaction (group commit); so many of them run at once per process: larger batches give a little more throughput (the sends a killed worker may repeat are bounded by `OMEGA_WORKER_PROVIDER_CALLS`, not by this) | `512` |
//! | `OMEGA_WORKER_PROVIDER_CALLS` | provider calls (Twilio, SendGrid, …) in flight at once per worker process. A killed worker cannot know which of its calls in flight were accepted, and their jobs send again: this bounds those repeats (BENCHMARKS.md, crash test), and throughput to a provider answering in L seconds to this many / L a second per process (6 / 0.15 s = 40 messages a second to Twilio; raise it with more worker processes or a higher setting where throughput to a slow provider matters more than a few repeats per crash) | `6` |
//! | `OMEGA_JOB_MAX_ATTEMPTS` | attempts before a job goes dead | `8` |
//! | `OMEGA_JOB_BACKOFF_BASE_MS` | first retry delay (doubles each attempt, with jitter) | `1000` |
//! | `OMEGA_JOB_BACKOFF_MAX_MS` | longest retry delay | `300000` |
//! | `OMEGA_JOB_TIMEOUT_SECS` | a job running longer fails (and is retried) | `300` |
//! | `OMEGA_QUEUE_VISIBILITY_SECS` | an unsettled delivery is redelivered after this (worker crash) | `60` |
//! | `OMEGA_TWILIO_ACCOUNT_SID`, `OMEGA_TWILIO_AUTH_TOKEN` | the global Twilio account (webhook signatures) | unset |
//! | `OMEGA_TWILIO_API_KEY_SID`, `OMEGA_TWILIO_API_KEY_SECRET`, `OMEGA_TWILIO_TWIML_APP_SID` | Twilio Voice access tokens | unset |
//! | `OMEGA_TWILIO_API_BASE` | Twilio REST base URL | `https://api.twilio.com` |
//! | `OMEGA_SENDGRID_API_KEY`, `OMEGA_SENDGRID_API_BASE` | SendGrid Mail Send | unset, `https://api.sendgrid.com` |
//! | `OMEGA_SENDGRID_WEBHOOK_PUBLIC_KEY` | SendGrid Event Webhook verification key (base64 DER, as SendGrid shows it) | unset (SendGrid webhooks answer 403) |
//! | `OMEGA_MAILGUN_SIGNING_KEY` | Mailgun webhook signing key | unset (403) |
//! | `OMEGA_POSTMARK_WEBHOOK_USER`, `OMEGA_POSTMARK_WEBHOOK_PASSWORD` | Postmark webhook Basic credentials | unset (403) |
//! | `OMEGA_SES_TOPIC_ARNS` | SNS topics (comma-separated) whose SES events are accepted | unset (403) |
//! | `OMEGA_SNS_TRUSTED_CERT_PREFIX` | a certificate URL prefix trusted besides `https://sns.<region>.amazonaws.com` (tests only; logged loudly) | unset |
//! | `OMEGA_MAILGUN_API_KEY`, `OMEGA_MAILGUN_DOMAIN` | the global Mailgun account (Messages API) and its sending domain; both or neither | unset |
//! | `OMEGA_MAILGUN_API_BASE` | Mailgun API base URL (`https://api.eu.mailgun.net` for EU domains) | `https://api.mailgun.net` (a business's own EU account: the EU host) |
//! | `OMEGA_POSTMARK_SERVER_TOKEN`, `OMEGA_POSTMARK_API_BASE` | the global Postmark server | unset, `https://api.postmarkapp.com` |
//! | `OMEGA_SES_REGION`, `OMEGA_SES_ACCESS_KEY_ID`, `OMEGA_SES_SECRET_ACCESS_KEY` | the global Amazon SES account (v2 SendEmail, SigV4); all three or none | unset |
//! | `OMEGA_SES_ENDPOINT` | SES API base URL | `https://email.<region>.amazonaws.com` |
//! | `OMEGA_SMTP_URL` | SMTP relay, e.g. `smtp://user:pass@host:587` | unset |
//! | `OMEGA_INBOUND_EMAIL_DOMAIN` | a domain whose mail reaches `/email/inbound/{provider}`: outbound email then replies to `reply+<token>@` it, which names the conversation | unset (replies go to the location's address) |
//! | `OMEGA_INBOUND_EMAIL_TOKEN` | the secret `?token=` of SendGrid Inbound Parse posts (Parse is not signed) | unset (SendGrid inbound answers 403) |
//! | `OMEGA_INBOUND_EMAIL_USER`, `OMEGA_INBOUND_EMAIL_PASSWORD` | Basic credentials SendGrid Inbound Parse posts must also carry, when set | unset |
//! | `OMEGA_DEFAULT_SMS_PROVIDER`, `OMEGA_DEFAULT_EMAIL_PROVIDER` | used when a request names none | `twilio` when configured; for email the business's own account, else the first configured of SendGrid, Mailgun, Postmark, SES, SMTP; else `sandbox` |
//! | `OMEGA_METRICS_LISTEN` | where an `omega worker` process serves `/metrics` (others serve it with the API) | unset |
//! | `OMEGA_SHUTDOWN_TIMEOUT_SECS` | how long SIGTERM waits for requests and jobs under way | `30` |
//! | `OMEGA_REQUEST_TIMEOUT_MS` | from a request's body (or headers) to its answer; past it, 503 with `Retry-After`. The queue push gets three quarters of it | `1500` |
//! | `OMEGA_BODY_TIMEOUT_SECS` | time to send a request body; past it, 408 | `30` |
//! | `OMEGA_HEADER_TIMEOUT_SECS` | time to send a request's headers, and the longest a keep-alive connection idles | `15` |
//! | `OMEGA_MAX_CONNECTIONS` | open connections per ingress process (more wait in the backlog) | `4096` |
//! | `OMEGA_RATE_LIMIT_SEND` | per business: `sms/send`, `email/send`, `messages/process` requests a second `[,burst]`; `off` for none | `50,100` |
//! | `OMEGA_RATE_LIMIT_WRITE` | per business: other writes | `100,200` |
//! | `OMEGA_RATE_LIMIT_READ` | per business: reads | `200,400` |
//! | `OMEGA_RATE_LIMIT_PLATFORM` | per platform key, for each class | `50000,100000` |
//! | `OMEGA_SWEEP_EVERY_SECS` | how often worker processes delete what is past its retention | `3600` |
//! | `OMEGA_RETENTION_WEBHOOK_RECEIPTS_HOURS` | webhook receipts (whole provider bodies, orphans too) | `168` (7 days) |
//! | `OMEGA_RETENTION_DEAD_JOBS_HOURS` | dead jobs, from their last failure | `720` (30 days) |
//! | `OMEGA_RETENTION_ONBOARDING_RUNS_HOURS` | finished onboarding runs (a business's latest is kept) | `720` |
//! | `OMEGA_RETENTION_EVENTS_HOURS` | the event log (`GET /businesses/{id}/events`) | `168` (7 days) |
//! | `OMEGA_ALLOW_PRIVATE_URLS` | let user-given URLs (webhook endpoints) be plain http and private, loopback or link-local addresses: for tests and private deployments only (logged loudly at start) | `false` |
//! | `OMEGA_WEBHOOK_TIMEOUT_SECS` | one webhook delivery attempt's limit (connect, send, answer) | `10` |
//! | `OMEGA_WEBHOOK_DISABLE_AFTER_HOURS` | a webhook endpoint whose every attempt failed for this long is disabled | `120` (5 days) |
//! | `OMEGA_EVENT_STREAM_HEARTBEAT_SECS` | how often an event stream sends a keep-alive comment | `15` |
//! | (fixed) | Idempotency-Key records: their 24 h window | |
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub public_url: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub db_max_connections: u32,
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    /// None until `ensure_secret_key` (embedded default) or when taken from the environment.
    pub secret_key: Option<Vec<u8>>,
    pub bootstrap_platform_key: Option<String>,
    pub log_format: LogFormat,
    pub worker_concurrency: usize,
    pub worker_batch: usize,
    pub worker_provider_calls: usize,
    pub job_max_attempts: u32,
    pub job_backoff_base: Duration,
    pub job_backoff_max: Duration,
    pub job_timeout: Duration,
    pub visibility_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub metrics_listen: Option<SocketAddr>,
    /// The global Twilio account; a business's own (from onboarding) takes precedence.
    pub twilio: Option<entities::credentials::TwilioCredentials>,
    pub twilio_api_base: String,
    pub sendgrid_api_key: Option<String>,
    pub sendgrid_api_base: String,
    pub smtp_url: Option<String>,
    pub mailgun: Option<workers::providers::MailgunAccount>,
    pub mailgun_api_base: Option<String>,
    pub postmark_server_token: Option<String>,
    pub postmark_api_base: String,
    pub ses: Option<workers::providers::SesAccount>,
    pub ses_endpoint: Option<String>,
    pub inbound_email_domain: Option<String>,
    pub inbound_email_token: Option<String>,
    pub inbound_email_basic: Option<(String, String)>,
    pub sendgrid_webhook_public_key: Option<String>,
    pub mailgun_signing_key: Option<String>,
    pub postmark_webhook: Option<(String, String)>,
    pub ses_topic_arns: Vec<String>,
    pub sns_trusted_cert_prefix: Option<String>,
    pub default_sms_provider: Option<entities::types::Provider>,
    pub default_email_provider: Option<entities::types::Provider>,
    pub deadlines: ingress::guard::Deadlines,
    pub connections: ingress::server::ConnectionLimits,
    pub rates: ingress::rate_limit::RateLimits,
    pub sweep_every: Duration,
    pub retention: entities::retention::Retention,
    pub allow_private_urls: bool,
    pub webhook_timeout: Duration,
    pub webhook_disable_after: chrono::Duration,
    pub stream_heartbeat: Duration,
}

impl Config {
    /// The environment, over the optional file that `OMEGA_CONFIG` names (lines of
    /// `OMEGA_NAME=value`; `#` starts a comment). The environment wins.
    pub fn from_env() -> anyhow::Result<Config> {
        let file = match std::env::var("OMEGA_CONFIG") {
            Ok(path) => {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading OMEGA_CONFIG={path}"))?;
                parse_file(&text).with_context(|| format!("in OMEGA_CONFIG={path}"))?
            }
            Err(_) => Default::default(),
        };
        Config::from_lookup(|name| std::env::var(name).ok().or_else(|| file.get(name).cloned()))
    }

    /// Reads the settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
        let var = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        fn parse<T: FromStr>(name: &str, value: Option<String>, default: T) -> anyhow::Result<T>
        where
            T::Err: std::fmt::Display,
        {
            match value {
                None => Ok(default),
                Some(v) => v
                    .parse()
                    .map_err(|e| anyhow::anyhow!("{name}={v:?} is invalid: {e}")),
            }
        }
        let data_dir = PathBuf::from(var("OMEGA_DATA_DIR").unwrap_or_else(|| "./data".into()));
        let database_url = var("OMEGA_DATABASE_URL")
            .unwrap_or_else(|| format!("sqlite://{}/omega.db?mode=rwc", data_dir.display()));
        let sqlite = database_url.starts_with("sqlite:");
        let secret_key = var("OMEGA_SECRET_KEY")
            .map(|k| base64::engine::general_purpose::STANDARD.decode(k.as_bytes()))
            .transpose()
            .context("OMEGA_SECRET_KEY must be base64")?;
        let log_format = match var("OMEGA_LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => bail!("OMEGA_LOG_FORMAT={other:?} is invalid: use text or json"),
        };
        let (deadlines, connections, rates) = Config::limits(&var)?;
        let hours = |name: &str, default: chrono::Duration| -> anyhow::Result<chrono::Duration> {
            match var(name) {
                None => Ok(default),
                Some(v) => match v.parse::<i64>() {
                    Ok(h) if h > 0 => Ok(chrono::Duration::hours(h)),
                    _ => bail!("{name}={v:?} is invalid: use a whole number of hours above 0"),
                },
            }
        };
        let keep = entities::retention::Retention::default();
        let retention = entities::retention::Retention {
            webhook_receipts: hours(
                "OMEGA_RETENTION_WEBHOOK_RECEIPTS_HOURS",
                keep.webhook_receipts,
            )?,
            dead_jobs: hours("OMEGA_RETENTION_DEAD_JOBS_HOURS", keep.dead_jobs)?,
            onboarding_runs: hours(
                "OMEGA_RETENTION_ONBOARDING_RUNS_HOURS",
                keep.onboarding_runs,
            )?,
            events: hours("OMEGA_RETENTION_EVENTS_HOURS", keep.events)?,
        };
        let config = Config {
            retention,
            allow_private_urls: parse(
                "OMEGA_ALLOW_PRIVATE_URLS",
                var("OMEGA_ALLOW_PRIVATE_URLS"),
                false,
            )?,
            webhook_timeout: Duration::from_secs(parse(
                "OMEGA_WEBHOOK_TIMEOUT_SECS",
                var("OMEGA_WEBHOOK_TIMEOUT_SECS"),
                10,
            )?),
            webhook_disable_after: hours(
                "OMEGA_WEBHOOK_DISABLE_AFTER_HOURS",
                chrono::Duration::hours(120),
            )?,
            stream_heartbeat: Duration::from_secs(parse(
                "OMEGA_EVENT_STREAM_HEARTBEAT_SECS",
                var("OMEGA_EVENT_STREAM_HEARTBEAT_SECS"),
                15,
            )?),
            sweep_every: Duration::from_secs(parse(
                "OMEGA_SWEEP_EVERY_SECS",
                var("OMEGA_SWEEP_EVERY_SECS"),
                3600,
            )?),
            deadlines,
            connections,
            rates,
            listen: parse(
                "OMEGA_LISTEN",
                var("OMEGA_LISTEN"),
                SocketAddr::from(([127, 0, 0, 1], 8080)),
            )?,
            public_url: var("OMEGA_PUBLIC_URL").unwrap_or_else(|| "http://127.0.0.1:8080".into()),
            data_dir,
            database_url,
            db_max_connections: parse(
                "OMEGA_DB_MAX_CONNECTIONS",
                var("OMEGA_DB_MAX_CONNECTIONS"),
                if sqlite { 8 } else { 20 },
            )?,
            redis_url: var("OMEGA_REDIS_URL"),
            redis_prefix: var("OMEGA_REDIS_PREFIX").unwrap_or_else(|| "omega".into()),
            secret_key,
            bootstrap_platform_key: var("OMEGA_BOOTSTRAP_PLATFORM_KEY"),
            log_format,
            worker_concurrency: parse(
                "OMEGA_WORKER_CONCURRENCY",
                var("OMEGA_WORKER_CONCURRENCY"),
                16,
            )?,
            worker_batch: parse("OMEGA_WORKER_BATCH", var("OMEGA_WORKER_BATCH"), 512)?,
            worker_provider_calls: parse(
                "OMEGA_WORKER_PROVIDER_CALLS",
                var("OMEGA_WORKER_PROVIDER_CALLS"),
                6,
            )?,
            job_max_attempts: parse("OMEGA_JOB_MAX_ATTEMPTS", var("OMEGA_JOB_MAX_ATTEMPTS"), 8)?,
            job_backoff_base: Duration::from_millis(parse(
                "OMEGA_JOB_BACKOFF_BASE_MS",
                var("OMEGA_JOB_BACKOFF_BASE_MS"),
                1000,
            )?),
            job_backoff_max: Duration::from_millis(parse(
                "OMEGA_JOB_BACKOFF_MAX_MS",
                var("OMEGA_JOB_BACKOFF_MAX_MS"),
                300_000,
            )?),
            job_timeout: Duration::from_secs(parse(
                "OMEGA_JOB_TIMEOUT_SECS",
                var("OMEGA_JOB_TIMEOUT_SECS"),
                300,
            )?),
            visibility_timeout: Duration::from_secs(parse(
                "OMEGA_QUEUE_VISIBILITY_SECS",
                var("OMEGA_QUEUE_VISIBILITY_SECS"),
                60,
            )?),
            shutdown_timeout: Duration::from_secs(parse(
                "OMEGA_SHUTDOWN_TIMEOUT_SECS",
                var("OMEGA_SHUTDOWN_TIMEOUT_SECS"),
                30,
            )?),
            twilio: match (
                var("OMEGA_TWILIO_ACCOUNT_SID"),
                var("OMEGA_TWILIO_AUTH_TOKEN"),
            ) {
                (Some(account_sid), Some(auth_token)) => {
                    Some(entities::credentials::TwilioCredentials {
                        account_sid,
                        auth_token,
                        api_key_sid: var("OMEGA_TWILIO_API_KEY_SID"),
                        api_key_secret: var("OMEGA_TWILIO_API_KEY_SECRET"),
                        twiml_app_sid: var("OMEGA_TWILIO_TWIML_APP_SID"),
                    })
                }
                (None, None) => None,
                _ => bail!("OMEGA_TWILIO_ACCOUNT_SID and OMEGA_TWILIO_AUTH_TOKEN go together"),
            },
            twilio_api_base: var("OMEGA_TWILIO_API_BASE")
                .unwrap_or_else(|| "https://api.twilio.com".into()),
            sendgrid_api_key: var("OMEGA_SENDGRID_API_KEY"),
            sendgrid_api_base: var("OMEGA_SENDGRID_API_BASE")
                .unwrap_or_else(|| "https://api.sendgrid.com".into()),
            smtp_url: var("OMEGA_SMTP_URL"),
            mailgun: match (var("OMEGA_MAILGUN_API_KEY"), var("OMEGA_MAILGUN_DOMAIN")) {
                (Some(api_key), Some(domain)) => Some(workers::providers::MailgunAccount {
                    api_key,
                    domain,
                    region: None,
                }),
                (None, None) => None,
                _ => bail!("OMEGA_MAILGUN_API_KEY and OMEGA_MAILGUN_DOMAIN go together"),
            },
            mailgun_api_base: var("OMEGA_MAILGUN_API_BASE"),
            postmark_server_token: var("OMEGA_POSTMARK_SERVER_TOKEN"),
            postmark_api_base: var("OMEGA_POSTMARK_API_BASE")
                .unwrap_or_else(|| "https://api.postmarkapp.com".into()),
            ses: match (
                var("OMEGA_SES_REGION"),
                var("OMEGA_SES_ACCESS_KEY_ID"),
                var("OMEGA_SES_SECRET_ACCESS_KEY"),
            ) {
                (Some(region), Some(access_key_id), Some(secret_access_key)) => {
                    Some(workers::providers::SesAccount {
                        region,
                        access_key_id,
                        secret_access_key,
                    })
                }
                (None, None, None) => None,
                _ => bail!(
                    "OMEGA_SES_REGION, OMEGA_SES_ACCESS_KEY_ID and OMEGA_SES_SECRET_ACCESS_KEY go together"
                ),
            },
            ses_endpoint: var("OMEGA_SES_ENDPOINT"),
            inbound_email_domain: var("OMEGA_INBOUND_EMAIL_DOMAIN"),
            inbound_email_token: var("OMEGA_INBOUND_EMAIL_TOKEN"),
            inbound_email_basic: match (
                var("OMEGA_INBOUND_EMAIL_USER"),
                var("OMEGA_INBOUND_EMAIL_PASSWORD"),
            ) {
                (Some(user), Some(password)) => Some((user, password)),
                (None, None) => None,
                _ => bail!("OMEGA_INBOUND_EMAIL_USER and OMEGA_INBOUND_EMAIL_PASSWORD go together"),
            },
            sendgrid_webhook_public_key: var("OMEGA_SENDGRID_WEBHOOK_PUBLIC_KEY"),
            mailgun_signing_key: var("OMEGA_MAILGUN_SIGNING_KEY"),
            postmark_webhook: match (
                var("OMEGA_POSTMARK_WEBHOOK_USER"),
                var("OMEGA_POSTMARK_WEBHOOK_PASSWORD"),
            ) {
                (Some(user), Some(password)) => Some((user, password)),
                (None, None) => None,
                _ => bail!(
                    "OMEGA_POSTMARK_WEBHOOK_USER and OMEGA_POSTMARK_WEBHOOK_PASSWORD go together"
                ),
            },
            ses_topic_arns: var("OMEGA_SES_TOPIC_ARNS")
                .map(|v| {
                    v.split(',')
                        .map(|t| t.trim().to_owned())
                        .filter(|t| !t.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            sns_trusted_cert_prefix: var("OMEGA_SNS_TRUSTED_CERT_PREFIX"),
            default_sms_provider: provider(
                var("OMEGA_DEFAULT_SMS_PROVIDER"),
                "OMEGA_DEFAULT_SMS_PROVIDER",
                &["twilio", "sandbox"],
            )?,
            default_email_provider: provider(
                var("OMEGA_DEFAULT_EMAIL_PROVIDER"),
                "OMEGA_DEFAULT_EMAIL_PROVIDER",
                &["sendgrid", "mailgun", "postmark", "ses", "smtp", "sandbox"],
            )?,
            metrics_listen: var("OMEGA_METRICS_LISTEN")
                .map(|v| {
                    v.parse()
                        .map_err(|e| anyhow::anyhow!("OMEGA_METRICS_LISTEN={v:?} is invalid: {e}"))
                })
                .transpose()?,
        };
        config.validate()?;
        Ok(config)
    }

    fn limits(
        var: &impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<(
        ingress::guard::Deadlines,
        ingress::server::ConnectionLimits,
        ingress::rate_limit::RateLimits,
    )> {
        fn number(
            var: &impl Fn(&str) -> Option<String>,
            name: &str,
            default: u64,
        ) -> anyhow::Result<u64> {
            match var(name) {
                None => Ok(default),
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => bail!("{name}={v:?} is invalid: use a whole number above 0"),
                },
            }
        }
        let rate = |name: &str, default: Option<ingress::rate_limit::Rate>| match var(name) {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("off") => Ok(None),
            Some(v) => ingress::rate_limit::Rate::parse(&v)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("{name}={v:?} is invalid: {e}")),
        };
        let d = ingress::guard::Deadlines::default();
        let c = ingress::server::ConnectionLimits::default();
        let r = ingress::rate_limit::RateLimits::default();
        Ok((
            ingress::guard::Deadlines {
                request: Duration::from_millis(number(
                    var,
                    "OMEGA_REQUEST_TIMEOUT_MS",
                    d.request.as_millis() as u64,
                )?),
                body: Duration::from_secs(number(
                    var,
                    "OMEGA_BODY_TIMEOUT_SECS",
                    d.body.as_secs(),
                )?),
            },
            ingress::server::ConnectionLimits {
                max_connections: number(var, "OMEGA_MAX_CONNECTIONS", c.max_connections as u64)?
                    as usize,
                header_timeout: Duration::from_secs(number(
                    var,
                    "OMEGA_HEADER_TIMEOUT_SECS",
                    c.header_timeout.as_secs(),
                )?),
            },
            ingress::rate_limit::RateLimits {
                business_send: rate("OMEGA_RATE_LIMIT_SEND", r.business_send)?,
                business_write: rate("OMEGA_RATE_LIMIT_WRITE", r.business_write)?,
                business_read: rate("OMEGA_RATE_LIMIT_READ", r.business_read)?,
                platform: rate("OMEGA_RATE_LIMIT_PLATFORM", r.platform)?,
            },
        ))
    }

    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if !(self.is_sqlite()
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            bail!("OMEGA_DATABASE_URL must be a postgres:// or sqlite:// URL");
        }
        if let Some(url) = &self.redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            bail!("OMEGA_REDIS_URL must be a redis:// or rediss:// URL");
        }
        if !(self.public_url.starts_with("http://") || self.public_url.starts_with("https://")) {
            bail!("OMEGA_PUBLIC_URL must be an http(s) URL");
        }
        match &self.secret_key {
            Some(k) if k.len() < 32 => bail!("OMEGA_SECRET_KEY must decode to at least 32 bytes"),
            None if !self.is_sqlite() => {
                bail!("OMEGA_SECRET_KEY is required when the database is Postgres")
            }
            _ => {}
        }
        if let Some(key) = &self.bootstrap_platform_key
            && entities::keys::prefix_of(key).is_none()
        {
            bail!("OMEGA_BOOTSTRAP_PLATFORM_KEY must look like omk_<at least 13 characters>");
        }
        if self.webhook_timeout.is_zero() || self.webhook_timeout > Duration::from_secs(60) {
            bail!("OMEGA_WEBHOOK_TIMEOUT_SECS must be between 1 and 60");
        }
        if self.stream_heartbeat.is_zero() {
            bail!("OMEGA_EVENT_STREAM_HEARTBEAT_SECS must be above 0");
        }
        if self.worker_concurrency == 0 || self.worker_concurrency > 1024 {
            bail!("OMEGA_WORKER_CONCURRENCY must be between 1 and 1024");
        }
        if self.worker_batch == 0 || self.worker_batch > 4096 {
            bail!("OMEGA_WORKER_BATCH must be between 1 and 4096");
        }
        if self.worker_provider_calls == 0 || self.worker_provider_calls > 4096 {
            bail!("OMEGA_WORKER_PROVIDER_CALLS must be between 1 and 4096");
        }
        for (name, url) in [
            ("OMEGA_TWILIO_API_BASE", Some(&self.twilio_api_base)),
            ("OMEGA_SENDGRID_API_BASE", Some(&self.sendgrid_api_base)),
            ("OMEGA_MAILGUN_API_BASE", self.mailgun_api_base.as_ref()),
            ("OMEGA_POSTMARK_API_BASE", Some(&self.postmark_api_base)),
            ("OMEGA_SES_ENDPOINT", self.ses_endpoint.as_ref()),
        ] {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                bail!("{name} must be an http(s) URL");
            }
        }
        if let Some(domain) = &self.inbound_email_domain
            && (domain.contains('@')
                || !domain.contains('.')
                || domain.contains(char::is_whitespace))
        {
            bail!("OMEGA_INBOUND_EMAIL_DOMAIN must be a domain name, like in.example.com");
        }
        if let Some(key) = &self.sendgrid_webhook_public_key {
            ingress::email_events::sendgrid_key(key)
                .map_err(|e| anyhow::anyhow!("OMEGA_SENDGRID_WEBHOOK_PUBLIC_KEY: {e}"))?;
        }
        if self.job_max_attempts == 0 {
            bail!("OMEGA_JOB_MAX_ATTEMPTS must be at least 1");
        }
        if self.sweep_every.is_zero() {
            bail!("OMEGA_SWEEP_EVERY_SECS must be at least 1");
        }
        if self.visibility_timeout < Duration::from_secs(1) {
            bail!("OMEGA_QUEUE_VISIBILITY_SECS must be at least 1");
        }
        Ok(())
    }

    /// The embedded default keeps a generated secret key under the data dir, made once.
    pub fn ensure_secret_key(&mut self) -> anyhow::Result<()> {
        if self.secret_key.is_some() {
            return Ok(());
        }
        let path = self.data_dir.join("secret.key");
        let encoded = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use rand::RngCore;
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                let encoded = base64::engine::general_purpose::STANDARD.encode(key);
                std::fs::create_dir_all(&self.data_dir)
                    .with_context(|| format!("creating {}", self.data_dir.display()))?;
                write_private(&path, &encoded)?;
                encoded
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        self.secret_key = Some(
            base64::engine::general_purpose::STANDARD
                .decode(encoded.as_bytes())
                .with_context(|| format!("{} is not base64", path.display()))?,
        );
        Ok(())
    }
}

fn provider(
    value: Option<String>,
    name: &str,
    allowed: &[&str],
) -> anyhow::Result<Option<entities::types::Provider>> {
    match value {
        None => Ok(None),
        Some(v) if allowed.contains(&v.as_str()) => {
            Ok(Some(v.parse().map_err(|e| anyhow::anyhow!("{name}: {e}"))?))
        }
        Some(v) => bail!("{name}={v:?} is invalid: use one of {}", allowed.join(", ")),
    }
}

/// `OMEGA_NAME=value` lines; blank lines and `#` comments are skipped; quotes are not special.
fn parse_file(text: &str) -> anyhow::Result<std::collections::HashMap<String, String>> {
    let mut out = std::collections::HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            bail!("line {}: expected OMEGA_NAME=value", i + 1);
        };
        let key = key.trim();
        if !key.starts_with("OMEGA_") {
            bail!(
                "line {}: {key} is not an omega setting (they start with OMEGA_)",
                i + 1
            );
        }
        out.insert(key.to_owned(), value.trim().to_owned());
    }
    Ok(out)
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("creating {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_give_the_embedded_deployment() {
        let c = Config::from_lookup(lookup(&[])).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert!(c.is_sqlite());
        assert!(c.database_url.contains("data/omega.db"));
        assert!(c.redis_url.is_none());
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.job_max_attempts, 8);
        assert_eq!(c.deadlines.request, Duration::from_millis(1500));
        assert!(c.rates.business_send.is_some());
        let off = Config::from_lookup(lookup(&[("OMEGA_RATE_LIMIT_PLATFORM", "off")])).unwrap();
        assert!(off.rates.platform.is_none());
    }

    #[test]
    fn invalid_settings_are_refused_with_their_name() {
        for (k, v) in [
            ("OMEGA_LISTEN", "nowhere"),
            ("OMEGA_LOG_FORMAT", "xml"),
            ("OMEGA_DATABASE_URL", "mysql://x"),
            ("OMEGA_REDIS_URL", "http://x"),
            ("OMEGA_WORKER_CONCURRENCY", "0"),
            ("OMEGA_WORKER_BATCH", "0"),
            ("OMEGA_SECRET_KEY", "c2hvcnQ="),
            ("OMEGA_BOOTSTRAP_PLATFORM_KEY", "short"),
            ("OMEGA_REQUEST_TIMEOUT_MS", "0"),
            ("OMEGA_MAX_CONNECTIONS", "many"),
            ("OMEGA_RATE_LIMIT_SEND", "fast"),
            ("OMEGA_RATE_LIMIT_READ", "10,0"),
            ("OMEGA_SWEEP_EVERY_SECS", "0"),
            ("OMEGA_RETENTION_DEAD_JOBS_HOURS", "-1"),
        ] {
            let err = Config::from_lookup(lookup(&[(k, v)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(k), "{k}={v}: {err}");
        }
        let err = Config::from_lookup(lookup(&[("OMEGA_DATABASE_URL", "postgres://db/omega")]))
            .unwrap_err();
        assert!(err.to_string().contains("OMEGA_SECRET_KEY"));
    }

    #[test]
    fn config_files_are_name_value_lines() {
        let map = parse_file("# comment\n\nOMEGA_LISTEN = 0.0.0.0:9000\nOMEGA_LOG_FORMAT=json\n")
            .unwrap();
        assert_eq!(map["OMEGA_LISTEN"], "0.0.0.0:9000");
        assert_eq!(map["OMEGA_LOG_FORMAT"], "json");
        assert!(parse_file("LISTEN=1").is_err());
        assert!(parse_file("OMEGA_LISTEN").is_err());
    }
}
