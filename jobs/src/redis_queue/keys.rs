//! The Redis keys of one job type.
use crate::JobType;

pub(super) struct Keys {
    pub stream: String,
    pub delayed: String,
    pub dead: String,
    pub dead_env: String,
    pub dead_idx: String,
    pub claims: String,
    pub done: String,
}

impl Keys {
    pub fn of(prefix: &str, t: JobType) -> Keys {
        // The hash tag keeps one type's keys in one slot, so scripts and MULTI work on a cluster.
        let base = format!("{{{}:{}}}", prefix, t.as_str());
        Keys {
            stream: format!("{base}:stream"),
            delayed: format!("{base}:delayed"),
            dead: format!("{base}:dead"),
            dead_env: format!("{base}:dead_env"),
            dead_idx: format!("{base}:dead_idx"),
            claims: format!("{base}:claims"),
            done: format!("{base}:done"),
        }
    }
}
