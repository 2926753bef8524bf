//! The typed job payloads. Each job type has its own queue (stream or table partition).
use entities::calls::CallRecord;
use entities::onboard::Onboarding;
use entities::record::RecordBatch;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobType {
    RecordSms,
    RecordEmail,
    RecordCall,
    Onboard,
}

impl JobType {
    pub const ALL: &'static [JobType] = &[
        JobType::RecordSms,
        JobType::RecordEmail,
        JobType::RecordCall,
        JobType::Onboard,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobType::RecordSms => "record_sms",
            JobType::RecordEmail => "record_email",
            JobType::RecordCall => "record_call",
            JobType::Onboard => "onboard",
        }
    }

    pub fn parse(s: &str) -> Option<JobType> {
        JobType::ALL.iter().copied().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for JobType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OnboardJob {
    pub request_id: String,
    pub data: Onboarding,
}

/// A job as the ingress pushes it and a worker receives it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Job {
    RecordSms(RecordBatch),
    RecordEmail(RecordBatch),
    RecordCall(CallRecord),
    Onboard(OnboardJob),
}

impl Job {
    pub fn job_type(&self) -> JobType {
        match self {
            Job::RecordSms(_) => JobType::RecordSms,
            Job::RecordEmail(_) => JobType::RecordEmail,
            Job::RecordCall(_) => JobType::RecordCall,
            Job::Onboard(_) => JobType::Onboard,
        }
    }

    pub fn business_id(&self) -> i64 {
        match self {
            Job::RecordSms(b) | Job::RecordEmail(b) => b.business_id,
            Job::RecordCall(c) => c.business_id,
            Job::Onboard(o) => o.data.business_id,
        }
    }
}
