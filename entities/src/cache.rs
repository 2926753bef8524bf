//! A small read-through cache with a time to live: lookups on the hot path (credentials,
//! which business owns a number, a business's Twilio account) read the database at most once
//! per key and TTL. `None` results are cached too, so a flood of unknown keys does not reach
//! the database; the whole map is dropped when it grows past its bound.
//!
//! Loads are single-flight: when a key is missing or expired, one caller loads it and the
//! others asking for the same key meanwhile wait for that answer. Without this, every job
//! under way (thousands, in a worker) missed at once when a key expired and each sent its own
//! query, queueing ahead of the batch transactions for the pool's connections.
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How long the hot paths trust what they looked up about a business (its credentials,
/// default providers, which business owns a number): onboarding changes reach the ingress and
/// the workers within this time.
pub const LOOKUP_TTL: Duration = Duration::from_secs(5);
/// Entries a lookup cache keeps before it is cleared.
pub const LOOKUP_MAX: usize = 100_000;

pub struct TtlCache<K, V> {
    ttl: Duration,
    max_entries: usize,
    entries: RwLock<HashMap<K, (V, Instant)>>,
    /// One lock per key being loaded; whoever holds it loads.
    loading: Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        TtlCache {
            ttl,
            max_entries,
            entries: RwLock::new(HashMap::new()),
            loading: Mutex::new(HashMap::new()),
        }
    }

    fn fresh<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let entries = self.entries.read().expect("cache poisoned");
        let (value, fetched) = entries.get(key)?;
        (fetched.elapsed() < self.ttl).then(|| value.clone())
    }

    /// The cached value for `key`, or `load`'s (then cached); a failed load is not cached
    /// (the next caller waiting for the key tries its own load).
    pub async fn get_or_load<Q, F, E>(&self, key: &Q, load: F) -> Result<V, E>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ToOwned<Owned = K> + ?Sized,
        F: Future<Output = Result<V, E>>,
    {
        if let Some(value) = self.fresh(key) {
            return Ok(value);
        }
        let turn = self
            .loading
            .lock()
            .expect("cache poisoned")
            .entry(key.to_owned())
            .or_default()
            .clone();
        let _turn = turn.lock().await;
        // Loaded by the caller whose turn came first.
        if let Some(value) = self.fresh(key) {
            return Ok(value);
        }
        let loaded = load.await;
        if let Ok(value) = &loaded {
            let mut entries = self.entries.write().expect("cache poisoned");
            if entries.len() >= self.max_entries {
                entries.clear();
            }
            entries.insert(key.to_owned(), (value.clone(), Instant::now()));
        }
        // Later callers find the entry; those already waiting hold their own handle.
        self.loading.lock().expect("cache poisoned").remove(key);
        loaded
    }

    /// Drops `key`'s entry: the next caller loads it afresh.
    pub fn forget<Q>(&self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.entries.write().expect("cache poisoned").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_load_once_and_failures_are_not_cached() {
        let cache = Arc::new(TtlCache::<String, u32>::new(Duration::from_secs(60), 10));
        let loads = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (0..200)
            .map(|_| {
                let (cache, loads) = (cache.clone(), loads.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_load("k", async {
                            loads.fetch_add(1, Ordering::SeqCst);
                            tokio::task::yield_now().await;
                            Ok::<_, ()>(7)
                        })
                        .await
                })
            })
            .collect();
        for caller in futures_join(callers).await {
            assert_eq!(caller, Ok(7));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);

        let failed = cache
            .get_or_load("e", async { Err::<u32, _>("down") })
            .await;
        assert_eq!(failed, Err("down"));
        let retried = cache.get_or_load("e", async { Ok::<_, &str>(9) }).await;
        assert_eq!(retried, Ok(9));
    }

    #[tokio::test]
    async fn expired_entries_are_loaded_again() {
        let cache = TtlCache::<u8, u32>::new(Duration::from_millis(0), 10);
        assert_eq!(cache.get_or_load(&1, async { Ok::<_, ()>(1) }).await, Ok(1));
        assert_eq!(cache.get_or_load(&1, async { Ok::<_, ()>(2) }).await, Ok(2));
    }

    async fn futures_join<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
        let mut out = vec![];
        for h in handles {
            out.push(h.await.expect("caller"));
        }
        out
    }
}
