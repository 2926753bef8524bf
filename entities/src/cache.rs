//! A small read-through cache with a time to live: lookups on the hot path (credentials,
//! which business owns a number, a business's Twilio account) read the database at most once
//! per key and TTL. `None` results are cached too, so a flood of unknown keys does not reach
//! the database; the whole map is dropped when it grows past its bound.
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::RwLock;
use std::time::{Duration, Instant};

pub struct TtlCache<K, V> {
    ttl: Duration,
    max_entries: usize,
    entries: RwLock<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        TtlCache {
            ttl,
            max_entries,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The cached value for `key`, or `load`'s (then cached); a failed load is not cached.
    pub async fn get_or_load<Q, F, E>(&self, key: &Q, load: F) -> Result<V, E>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ToOwned<Owned = K> + ?Sized,
        F: Future<Output = Result<V, E>>,
    {
        let cached = self
            .entries
            .read()
            .expect("cache poisoned")
            .get(key)
            .cloned();
        if let Some((value, fetched)) = cached
            && fetched.elapsed() < self.ttl
        {
            return Ok(value);
        }
        let value = load.await?;
        let mut entries = self.entries.write().expect("cache poisoned");
        if entries.len() >= self.max_entries {
            entries.clear();
        }
        entries.insert(key.to_owned(), (value.clone(), Instant::now()));
        Ok(value)
    }
}
