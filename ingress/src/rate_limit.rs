//! Per-caller rate limits: a token bucket (as GCRA: one "theoretical arrival time" per
//! bucket) per business and route class, and one per platform key and class. On the scaled
//! deployment the buckets live in Redis, so a limit holds across every ingress process; the
//! embedded deployment keeps them in process.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::Script;
use redis::aio::ConnectionManager;

/// What a class of routes costs a caller: sending (provider dispatch), other writes, reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteClass {
    Send,
    Write,
    Read,
}

impl RouteClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Send => "send",
            RouteClass::Write => "write",
            RouteClass::Read => "read",
        }
    }
}

/// A sustained rate with a burst: `per_second` requests a second on average, up to `burst`
/// at once after a quiet spell.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

impl Rate {
    /// `"<per second>"` or `"<per second>,<burst>"` (burst defaults to twice the rate).
    pub fn parse(text: &str) -> Result<Rate, String> {
        let (rate, burst) = match text.split_once(',') {
            Some((r, b)) => (r.trim(), Some(b.trim())),
            None => (text.trim(), None),
        };
        let per_second: f64 = rate
            .parse()
            .map_err(|_| format!("{rate:?} is not a number of requests per second"))?;
        if !(per_second.is_finite() && per_second > 0.0) {
            return Err("the rate must be above 0".into());
        }
        let burst = match burst {
            Some(b) => b
                .parse()
                .map_err(|_| format!("{b:?} is not a whole number of requests"))?,
            None => (per_second * 2.0).ceil().max(1.0) as u32,
        };
        if burst == 0 {
            return Err("the burst must be at least 1".into());
        }
        Ok(Rate { per_second, burst })
    }

    /// Microseconds between two requests at the sustained rate.
    fn interval_us(self) -> u64 {
        (1_000_000.0 / self.per_second).max(1.0) as u64
    }
}

/// The limits in force; `None` is no limit for that caller and class.
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimits {
    pub business_send: Option<Rate>,
    pub business_write: Option<Rate>,
    pub business_read: Option<Rate>,
    /// Each platform key's, per class.
    pub platform: Option<Rate>,
}

impl Default for RateLimits {
    fn default() -> Self {
        let rate = |per_second, burst| Some(Rate { per_second, burst });
        RateLimits {
            business_send: rate(50.0, 100),
            business_write: rate(100.0, 200),
            business_read: rate(200.0, 400),
            platform: rate(50_000.0, 100_000),
        }
    }
}

/// The GCRA step on Redis's clock, for up to ARGV[3] requests at once: KEYS[1] holds the
/// bucket's theoretical arrival time (µs); ARGV = interval µs, tolerance µs, wanted. Returns
/// how many were granted (at least 1), or minus the µs to wait for one.
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local room = math.floor((now + tolerance - tat) / interval)
if room < 1 then return -(tat + interval - tolerance - now) end
local granted = math.min(wanted, room)
tat = tat + granted * interval
redis.call('SET', KEYS[1], tat, 'PX', math.ceil((tat - now) / 1000) + 1000)
return granted
";

/// How long a Redis bucket check may take before the request goes on unlimited: a limit is
/// protection, and a hung Redis must not hang (or refuse) every request.
const REDIS_WAIT: Duration = Duration::from_millis(250);
/// In-process buckets kept before idle ones are forgotten.
const LOCAL_MAX: usize = 100_000;
/// How long requests taken from Redis ahead of need stay usable in this process.
const LEASE_LIFE: Duration = Duration::from_millis(100);
/// The most requests taken from Redis at once.
const LEASE_MAX: u32 = 100;

/// Requests this process took from a Redis bucket ahead of need, usable until `until`.
pub struct Lease {
    left: u32,
    until: Instant,
}

pub enum RateLimiter {
    Local(Mutex<HashMap<String, Instant>>),
    /// Buckets in Redis. A process takes up to a twentieth of a second's allowance at once
    /// (at most a quarter of the burst, and [`LEASE_MAX`]) and spends it locally for
    /// [`LEASE_LIFE`], so a busy caller costs a Redis call per lease rather than per request;
    /// a lease unspent when it lapses is lost, so no process can run ahead of the limit.
    Redis {
        conn: ConnectionManager,
        prefix: String,
        script: Script,
        leases: Mutex<HashMap<String, Lease>>,
    },
}

impl Rate {
    /// Requests taken from Redis at once for this rate.
    fn lease_size(self) -> u32 {
        let twentieth = (self.per_second / 20.0).floor() as u32;
        twentieth.min(self.burst / 4).clamp(1, LEASE_MAX)
    }
}

impl RateLimiter {
    pub fn local() -> Self {
        RateLimiter::Local(Mutex::new(HashMap::new()))
    }

    /// Buckets in Redis at `url`, under `prefix`, shared by every ingress process.
    pub async fn redis(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        let conn = jobs::redis_client(url)?.get_connection_manager().await?;
        Ok(RateLimiter::Redis {
            conn,
            prefix: prefix.to_owned(),
            script: Script::new(TAKE),
            leases: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one request from `bucket`'s allowance: `Ok` to go on, `Err(wait)` when over.
    pub async fn take(&self, bucket: &str, rate: Rate) -> Result<(), Duration> {
        let interval = rate.interval_us();
        // The bucket may run `burst` requests ahead of the sustained rate.
        let tolerance = interval * u64::from(rate.burst);
        match self {
            RateLimiter::Local(buckets) => {
                let now = Instant::now();
                let mut buckets = buckets.lock().expect("rate buckets poisoned");
                if buckets.len() >= LOCAL_MAX {
                    buckets.retain(|_, tat| *tat > now);
                }
                let tat = buckets.get(bucket).copied().unwrap_or(now).max(now);
                let next = tat + Duration::from_micros(interval);
                let ahead = next.duration_since(now);
                if ahead > Duration::from_micros(tolerance) {
                    return Err(ahead - Duration::from_micros(tolerance));
                }
                buckets.insert(bucket.to_owned(), next);
                Ok(())
            }
            RateLimiter::Redis {
                conn,
                prefix,
                script,
                leases,
            } => {
                if spend_leased(leases, bucket) {
                    return Ok(());
                }
                let wanted = rate.lease_size();
                let call = async {
                    script
                        .key(format!("{prefix}:rate:{bucket}"))
                        .arg(interval)
                        .arg(tolerance)
                        .arg(wanted)
                        .invoke_async::<i64>(&mut conn.clone())
                        .await
                };
                match tokio::time::timeout(REDIS_WAIT, call).await {
                    Ok(Ok(granted)) if granted >= 1 => {
                        if granted > 1 {
                            lease(leases, bucket, granted as u32 - 1);
                        }
                        Ok(())
                    }
                    Ok(Ok(wait_us)) => Err(Duration::from_micros(wait_us.unsigned_abs().max(1))),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "rate limit check failed; not limiting");
                        Ok(())
                    }
                    Err(_) => {
                        tracing::warn!("rate limit check timed out; not limiting");
                        Ok(())
                    }
                }
            }
        }
    }
}

/// Spends one request of this process's lease on `bucket`, if it holds a live one.
fn spend_leased(leases: &Mutex<HashMap<String, Lease>>, bucket: &str) -> bool {
    let mut leases = leases.lock().expect("rate leases poisoned");
    match leases.get_mut(bucket) {
        Some(l) if l.left > 0 && l.until > Instant::now() => {
            l.left -= 1;
            true
        }
        _ => false,
    }
}

/// Keeps `extra` requests taken from Redis for the next [`LEASE_LIFE`].
fn lease(leases: &Mutex<HashMap<String, Lease>>, bucket: &str, extra: u32) {
    let now = Instant::now();
    let mut leases = leases.lock().expect("rate leases poisoned");
    if leases.len() >= LOCAL_MAX {
        leases.retain(|_, l| l.until > now);
    }
    let until = now + LEASE_LIFE;
    match leases.get_mut(bucket) {
        // Another request's lease, still live: the two add up.
        Some(l) if l.until > now => l.left += extra,
        _ => {
            leases.insert(bucket.to_owned(), Lease { left: extra, until });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_and_without_a_burst() {
        assert_eq!(
            Rate::parse("10").unwrap(),
            Rate {
                per_second: 10.0,
                burst: 20
            }
        );
        assert_eq!(
            Rate::parse("0.5, 3").unwrap(),
            Rate {
                per_second: 0.5,
                burst: 3
            }
        );
        for bad in ["", "0", "-1", "x", "10,0", "10,x", "inf"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_local_bucket_allows_its_burst_then_says_how_long_to_wait() {
        let limiter = RateLimiter::local();
        let rate = Rate {
            per_second: 1.0,
            burst: 3,
        };
        for _ in 0..3 {
            assert!(limiter.take("b", rate).await.is_ok());
        }
        let wait = limiter.take("b", rate).await.unwrap_err();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Another bucket is not affected.
        assert!(limiter.take("other", rate).await.is_ok());
    }

    #[test]
    fn a_lease_is_a_twentieth_of_a_second_within_a_quarter_of_the_burst() {
        let rate = |per_second, burst| Rate { per_second, burst };
        assert_eq!(rate(1.0, 3).lease_size(), 1);
        assert_eq!(rate(50.0, 100).lease_size(), 2);
        assert_eq!(rate(1000.0, 8).lease_size(), 2);
        assert_eq!(rate(10_000_000.0, 20_000_000).lease_size(), LEASE_MAX);
    }

    #[test]
    fn leased_requests_are_spent_once_and_lapse() {
        let leases = Mutex::new(HashMap::new());
        assert!(!spend_leased(&leases, "b"));
        lease(&leases, "b", 2);
        assert!(spend_leased(&leases, "b"));
        assert!(spend_leased(&leases, "b"));
        assert!(!spend_leased(&leases, "b"));
        lease(&leases, "b", 1);
        leases.lock().unwrap().get_mut("b").unwrap().until = Instant::now();
        assert!(!spend_leased(&leases, "b"), "a lapsed lease is not spent");
    }
}
