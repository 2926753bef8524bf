//! The typed job payloads. Each job type has its own queue (stream or table partition).
use entities::calls::{CallRecord, VoiceStatus};
use entities::inbound::{InboundSms, ProcessedMessage};
use entities::inbound_email::InboundEmail;
use entities::onboard::Onboarding;
use entities::outbound::SendJob;
use entities::record::RecordBatch;
use entities::status::StatusReport;
use entities::webhooks::DeliverWebhook;
use serde::{Deserialize, Serialize};

/// Declares the job types once, so that the list every worker and every statistic iterates
/// over (`ALL`) can never miss one.
macro_rules! job_types {
    ($($variant:ident => $name:literal),+ $(,)?) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum JobType {
            $($variant),+
        }

        impl JobType {
            pub const ALL: &'static [JobType] = &[$(JobType::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(JobType::$variant => $name),+
                }
            }
        }
    };
}

job_types! {
    RecordSms => "record_sms",
    RecordEmail => "record_email",
    RecordCall => "record_call",
    SendSms => "send_sms",
    SendEmail => "send_email",
    UpdateStatus => "update_status",
    ProcessInbound => "process_inbound",
    Onboard => "onboard",
    DeliverWebhook => "deliver_webhook",
}

impl JobType {
    pub fn parse(s: &str) -> Option<JobType> {
        JobType::ALL.iter().copied().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for JobType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The status reports of one request (or one provider callback), applied in order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusUpdates {
    /// None when the reports came from a provider before omega knew the business (SendGrid
    /// events carry only omega's message id).
    pub business_id: Option<i64>,
    pub reports: Vec<StatusReport>,
}

/// What providers (and `/messages/process`) hand omega, recorded by a worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Inbound {
    Sms(InboundSms),
    Email(InboundEmail),
    Message(ProcessedMessage),
    VoiceStatus(VoiceStatus),
}

impl Inbound {
    pub fn business_id(&self) -> i64 {
        match self {
            Inbound::Sms(s) => s.business_id,
            Inbound::Email(e) => e.business_id,
            Inbound::Message(m) => m.business_id,
            Inbound::VoiceStatus(v) => v.call.business_id,
        }
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
    SendSms(SendJob),
    SendEmail(SendJob),
    UpdateStatus(StatusUpdates),
    ProcessInbound(Inbound),
    Onboard(OnboardJob),
    DeliverWebhook(DeliverWebhook),
}

impl Job {
    pub fn job_type(&self) -> JobType {
        match self {
            Job::RecordSms(_) => JobType::RecordSms,
            Job::RecordEmail(_) => JobType::RecordEmail,
            Job::RecordCall(_) => JobType::RecordCall,
            Job::SendSms(_) => JobType::SendSms,
            Job::SendEmail(_) => JobType::SendEmail,
            Job::UpdateStatus(_) => JobType::UpdateStatus,
            Job::ProcessInbound(_) => JobType::ProcessInbound,
            Job::Onboard(_) => JobType::Onboard,
            Job::DeliverWebhook(_) => JobType::DeliverWebhook,
        }
    }

    pub fn business_id(&self) -> Option<i64> {
        Some(match self {
            Job::RecordSms(b) | Job::RecordEmail(b) => b.business_id,
            Job::RecordCall(c) => c.business_id,
            Job::SendSms(s) | Job::SendEmail(s) => s.batch.business_id,
            Job::UpdateStatus(u) => return u.business_id,
            Job::ProcessInbound(i) => i.business_id(),
            Job::Onboard(o) => o.data.business_id,
            Job::DeliverWebhook(w) => w.business_id,
        })
    }
}
