use serde::{Deserialize, Serialize};

use crate::JobType;

/// What a queue stores for one job: its identity, where it came from, and the payload kept
/// as raw JSON so that a payload a worker cannot decode is still kept (and buried) intact.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub id: String,
    pub job_type: JobType,
    pub request_id: Option<String>,
    /// The X-Request-ID of the HTTP request that queued the job, for the logs.
    #[serde(default)]
    pub trace_id: Option<String>,
    pub business_id: Option<i64>,
    /// Failed attempts before this enqueue (Redis; the SQL queue counts in its row).
    #[serde(default)]
    pub attempt: u32,
    pub enqueued_at: i64,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub first_failed_at: Option<i64>,
    /// The job as its JSON text: written once by the producer and decoded once by the worker
    /// (no `Value` tree in between, which cost the ingress a tenth of its time per request).
    pub payload: Box<serde_json::value::RawValue>,
}

impl Envelope {
    pub fn new(
        job: &crate::Job,
        request_id: Option<String>,
        trace_id: Option<String>,
    ) -> Result<Self, serde_json::Error> {
        Ok(Envelope {
            id: uuid::Uuid::new_v4().to_string(),
            job_type: job.job_type(),
            request_id,
            trace_id,
            business_id: job.business_id(),
            attempt: 0,
            enqueued_at: crate::now_ms(),
            last_error: None,
            first_failed_at: None,
            payload: serde_json::value::to_raw_value(job)?,
        })
    }

    /// The payload as a JSON value (dead-job listings, filters); a payload that is not
    /// JSON, which a queue never holds, comes back as its text.
    pub fn payload_value(&self) -> serde_json::Value {
        serde_json::from_str(self.payload.get())
            .unwrap_or_else(|_| serde_json::Value::String(self.payload.get().to_owned()))
    }
}

/// One delivery of a job to a worker.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub envelope: Envelope,
    /// 1 for the first delivery; counts retries and deliveries abandoned by crashed workers.
    pub attempt: u32,
    /// The backend's handle for acking this delivery (stream entry id, or row id).
    pub receipt: String,
}
