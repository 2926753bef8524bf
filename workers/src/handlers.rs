//! Job handlers: decode the payload, do the work through `entities`, and say whether a
//! failure is worth retrying.
use std::sync::Arc;

use apalis::prelude::Data;
use entities::onboard;
use entities::status::Applied;
use jobs::{Delivery, Inbound, Job, JobError};
use tracing::Instrument;

use crate::Ctx;

use crate::outcome::{job_error, retried_until_recorded};

/// How long a status report about no recorded message is retried: a provider callback can
/// overtake the send it reports on, but not by this much.
pub const UNKNOWN_REPORT_GRACE: std::time::Duration = std::time::Duration::from_secs(120);

/// Reports about messages not recorded: retried (the whole job; the others are duplicates
/// then) within the grace period, then dropped with a count and a log line. Never buried:
/// one bogus report must not fill the dead-letter store.
fn unknown_reports(ctx: &Ctx, d: &Delivery, unknown: usize) -> Result<(), JobError> {
    let age_ms = chrono::Utc::now().timestamp_millis() - d.envelope.enqueued_at;
    let in_grace = age_ms < UNKNOWN_REPORT_GRACE.as_millis() as i64;
    if in_grace && !ctx.policy.exhausted(d.attempt) {
        return Err(JobError::Transient(format!(
            "{unknown} report(s) about messages not recorded (yet)"
        )));
    }
    metrics::counter!("omega_status_reports_dropped_total").increment(unknown as u64);
    tracing::warn!(
        unknown,
        age_ms,
        "dropped status reports about messages omega has not recorded"
    );
    Ok(())
}

/// Handles one delivery of any job type.
pub async fn handle(d: Arc<Delivery>, ctx: Data<Arc<Ctx>>) -> Result<(), JobError> {
    let env = &d.envelope;
    let span = tracing::info_span!(
        "job",
        job_type = %env.job_type,
        job_id = %env.id,
        request_id = env.request_id.as_deref().unwrap_or(""),
        trace_id = env.trace_id.as_deref().unwrap_or(""),
        attempt = d.attempt,
    );
    async {
        let job = serde_json::from_str::<Job>(env.payload.get()).map_err(|e| {
            JobError::Permanent(format!("undecodable {} payload: {e}", env.job_type))
        })?;
        if job.job_type() != env.job_type {
            return Err(JobError::Permanent(format!(
                "a {} payload on the {} queue",
                job.job_type(),
                env.job_type
            )));
        }
        match job {
            Job::RecordSms(batch) | Job::RecordEmail(batch) => {
                let outcome = entities::record::record_batch(&ctx.db, &batch)
                    .await
                    .map_err(job_error)?;
                tracing::info!(
                    recorded = outcome.recorded,
                    duplicates = outcome.duplicates,
                    "recorded messages"
                );
            }
            Job::SendSms(job) | Job::SendEmail(job) => {
                crate::send::handle(&ctx, Arc::new(job), d.attempt).await?
            }
            Job::RecordCall(call) => {
                let recorded = entities::calls::record_call(&ctx.db, &call)
                    .await
                    .map_err(job_error)?;
                tracing::info!(recorded, "recorded a call");
            }
            Job::UpdateStatus(updates) => {
                // Every report of the job goes into the shared batch; the job fails (and is
                // retried whole: applied reports are duplicates then) if any report does.
                let applied = futures::future::join_all(
                    updates
                        .reports
                        .into_iter()
                        .map(|report| ctx.batches.status.submit(report)),
                )
                .await;
                let advanced = applied
                    .iter()
                    .filter(|a| matches!(a, Ok(Some(Applied::Advanced))))
                    .count();
                let unknown = applied.iter().filter(|a| matches!(a, Ok(None))).count();
                tracing::info!(reports = applied.len(), advanced, unknown, "status reports");
                if let Some(Err(e)) = applied.into_iter().find(Result::is_err) {
                    return Err(e);
                }
                if unknown > 0 {
                    unknown_reports(&ctx, &d, unknown)?;
                }
            }
            Job::ProcessInbound(inbound) => process_inbound(&ctx, &inbound).await?,
            Job::DeliverWebhook(job) => crate::webhooks::deliver(&ctx, &job, d.attempt).await?,
            Job::Onboard(job) => {
                if let Err(e) = onboard::apply(&ctx.db, &job.request_id, &job.data).await {
                    let error = job_error(e);
                    let last =
                        matches!(error, JobError::Permanent(_)) || ctx.policy.exhausted(d.attempt);
                    let status = if last {
                        onboard::FAILED
                    } else {
                        onboard::QUEUED
                    };
                    if let Err(e) = onboard::set_run_status(
                        &ctx.db,
                        &job.request_id,
                        status,
                        Some(error.to_string()),
                    )
                    .await
                    {
                        tracing::warn!(error = %e, "could not record the onboarding failure");
                    }
                    return Err(error);
                }
                tracing::info!(
                    locations = job.data.locations.len(),
                    staff = job.data.staff.len(),
                    clients = job.data.clients.len(),
                    "onboarded business"
                );
            }
        }
        Ok(())
    }
    .instrument(span)
    .await
}

async fn process_inbound(ctx: &Ctx, inbound: &Inbound) -> Result<(), JobError> {
    match inbound {
        Inbound::Sms(sms) => {
            let received = entities::inbound::receive_sms(&ctx.db, sms)
                .await
                .map_err(job_error)?;
            tracing::info!(
                recorded = received.recorded,
                keyword = ?received.keyword,
                "inbound SMS"
            );
            if let Some(answer) = received.help_answer {
                // Queued again on a re-run: the send finds it recorded, and sent if it was.
                let request_id = answer.batch.request_id.clone();
                ctx.producer
                    .enqueue(&[jobs::Job::SendSms(answer)], &request_id, None)
                    .await
                    .map_err(|e| JobError::Transient(format!("queueing the HELP answer: {e}")))?;
            }
        }
        Inbound::Email(email) => {
            let recorded = entities::inbound_email::receive(&ctx.db, email)
                .await
                .map_err(job_error)?;
            tracing::info!(recorded, business_id = email.business_id, "inbound email");
        }
        Inbound::Message(m) => {
            let recorded = entities::inbound::process_message(&ctx.db, m)
                .await
                .map_err(job_error)?;
            tracing::info!(recorded, channel = %m.channel, "processed message");
        }
        Inbound::VoiceStatus(v) => {
            // A callback without the client's number waits for the TwiML's RecordCall.
            entities::calls::apply_voice_status(&ctx.db, v)
                .await
                .map_err(retried_until_recorded)?;
            tracing::info!(call_status = %v.call_status, "voice status");
        }
    }
    Ok(())
}
