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

/// The GCRA step on Redis's clock: KEYS[1] holds the bucket's theoretical arrival time (µs);
/// ARGV = interval µs, tolerance µs. Returns 0 when allowed, else the µs to wait.
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat + interval - tolerance - now
if wait > 0 then return wait end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.ceil((tat + interval - now) / 1000) + 1000)
return 0
";

/// How long a Redis bucket check may take before the request goes on unlimited: a limit is
/// protection, and a hung Redis must not hang (or refuse) every request.
const REDIS_WAIT: Duration = Duration::from_millis(250);
/// In-process buckets kept before idle ones are forgotten.
const LOCAL_MAX: usize = 100_000;

pub enum RateLimiter {
    Local(Mutex<HashMap<String, Instant>>),
    Redis {
        conn: ConnectionManager,
        prefix: String,
        script: Script,
    },
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
            } => {
                let call = async {
                    script
                        .key(format!("{prefix}:rate:{bucket}"))
                        .arg(interval)
                        .arg(tolerance)
                        .invoke_async::<i64>(&mut conn.clone())
                        .await
                };
                match tokio::time::timeout(REDIS_WAIT, call).await {
                    Ok(Ok(0)) => Ok(()),
                    Ok(Ok(wait_us)) => Err(Duration::from_micros(wait_us.max(1) as u64)),
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
}
