//! The SendSms / SendEmail handler: record (queued), check consent, dispatch, record the result.
//!
//! No double send. A message that already has a provider id, or is past `queued`, is not
//! dispatched again. The provider's answer is recorded in the settle batch (group-committed
//! with other sends), which may commit a few hundred milliseconds later under load; a worker
//! killed in between would leave the job to be delivered again and sent twice. So the
//! answer is also noted in the queue the moment it arrives (one small write,
//! [`jobs::JobQueue::note`], forgotten once the batch committed), and a re-delivered job
//! that finds its message's note records that answer instead of sending. (Marking messages
//! "dispatching" before the call instead would not tell a call that never reached the
//! provider from one it accepted, and providers have no idempotency key for messages to ask
//! about it.) What remains is the call itself: a worker killed while a provider call is in
//! flight, or between the answer and its note, cannot know whether it was accepted, and the
//! re-run sends again. Those calls are bounded by `OMEGA_WORKER_PROVIDER_CALLS` per process
//! (permits held only for the call), where hundreds of the batch's sends would otherwise
//! wait on the provider at once.
use std::sync::Arc;

use entities::outbound::{self, SendJob, Settlement};
use entities::status::{MessageRef, StatusReport};
use entities::types::{Channel, MessageStatus, Provider};
use jobs::JobError;

use crate::Ctx;
use crate::attachments::Unavailable;
use crate::providers::{Chosen, EmailOut, SendError, SmsOut};
use crate::steps::RecordedSend;

use crate::outcome::job_error;

/// Records that a message failed for good (no retry).
async fn fail(
    ctx: &Ctx,
    message_id: i64,
    provider: Provider,
    code: &str,
    reason: &str,
) -> Result<(), JobError> {
    ctx.batches
        .settle
        .submit(Settlement::failed(message_id, provider, code, reason))
        .await
}

pub async fn handle(ctx: &Ctx, job: Arc<SendJob>, attempt: u32) -> Result<(), JobError> {
    let Some(item) = job.batch.items.first() else {
        return Err(JobError::Permanent("a send job without its message".into()));
    };
    let RecordedSend {
        recorded,
        address_refusal,
    } = ctx.batches.record.submit(job.clone()).await?;
    let mut msg = recorded.message;
    let now = chrono::Utc::now();
    if msg.status == MessageStatus::Scheduled.as_str() {
        // Its time is kept in the queue, not here; consent and sender are checked when it
        // is released, at its time.
        if let Some(until) = msg.scheduled_at.filter(|&at| at > now) {
            return Err(JobError::NotDue { until });
        }
        if !ctx.batches.release.submit(msg.id).await? {
            tracing::info!(message_id = msg.id, "canceled before its time; not sending");
            return Ok(());
        }
        msg.status = MessageStatus::Queued.as_str().to_owned();
    }
    if msg.status == MessageStatus::Queued.as_str()
        && let Some(until) = ctx
            .quiet
            .hold_until(&ctx.db, &job, now)
            .await
            .map_err(job_error)?
    {
        // Inside the business's quiet hours: scheduled for their end.
        if entities::schedule::hold(&ctx.db, msg.id, until, now)
            .await
            .map_err(job_error)?
        {
            return Err(JobError::NotDue { until });
        }
        return Ok(());
    }
    if msg.provider_message_id.is_some() || msg.status != MessageStatus::Queued.as_str() {
        tracing::info!(message_id = msg.id, status = %msg.status, "already dispatched; not sending again");
        return Ok(());
    }
    if attempt > 1
        && let Some(settlement) = sent_before(ctx, msg.id).await
    {
        tracing::info!(
            message_id = msg.id,
            "accepted by the provider before a crash; recording it, not sending again"
        );
        return ctx.batches.settle.submit(settlement).await;
    }
    let channel = job.batch.channel;
    let provider = match ctx
        .providers
        .choose(channel, job.batch.provider, &ctx.db, job.batch.business_id)
        .await
        .map_err(job_error)?
    {
        Ok(p) => p,
        Err((kind, reason)) => {
            return fail(ctx, msg.id, kind, "provider_unavailable", &reason).await;
        }
    };
    // The client's own consent, then its address's (a number that texted STOP stays opted
    // out under every client row). The answer to HELP alone goes regardless.
    if !entities::help::is_answer(&job.batch)
        && let Some(reason) = outbound::refusal(&recorded.client, channel).or(address_refusal)
    {
        return fail(ctx, msg.id, provider.kind(), "opted_out", &reason).await;
    }
    if let Some(reason) = sender_refusal(ctx, &job, item.from.as_deref(), &provider).await? {
        return fail(ctx, msg.id, provider.kind(), "sender_not_allowed", reason).await;
    }
    let (from, result) = match channel {
        Channel::Sms => {
            let from = match &item.from {
                Some(f) => Some(f.clone()),
                None => location_number(ctx, &job).await?,
            };
            let Some(from) = from else {
                let reason =
                    "no From number: the location has no phone number and no from_number was given";
                return fail(ctx, msg.id, provider.kind(), "no_sender", reason).await;
            };
            let sms = SmsOut {
                from: &from,
                to: &item.to,
                body: &item.body,
                media_urls: &job.media_urls,
                status_callback: &format!("{}/twilio/sms/status", ctx.providers.public_url),
            };
            let result =
                provider_call(ctx, provider.send_sms(&ctx.providers.clients, &sms)).await?;
            (from, result)
        }
        _ => {
            let Some(from) = item.from.clone().or_else(|| provider.sender_address()) else {
                let reason =
                    "no sender address: give from_email or configure the business's email provider";
                return fail(ctx, msg.id, provider.kind(), "no_sender", reason).await;
            };
            let files = match ctx.attachments.files(&item.attachments).await {
                Ok(files) => files,
                Err(Unavailable::Permanent(why)) => {
                    return fail(ctx, msg.id, provider.kind(), "attachment_unavailable", &why)
                        .await;
                }
                Err(Unavailable::Transient(why)) => {
                    return retry_or_fail(ctx, msg.id, provider.kind(), attempt, why, None).await;
                }
            };
            let unsubscribe_url = unsubscribe_url(ctx, &job, recorded.client.id, &item.to);
            let domain = entities::threading::domain_of(&from).unwrap_or("omega.invalid");
            let message_id = ctx.providers.threading.message_id(msg.id, domain);
            let reply_to = match &job.reply_to {
                Some(r) => Some(r.clone()),
                None => reply_address(ctx, &job, msg.conversation_id).await?,
            };
            let thread = job.thread.as_ref();
            let email = EmailOut {
                omega_id: msg.id,
                message_id: &message_id,
                in_reply_to: thread.map(|t| t.in_reply_to.as_str()),
                references: thread.map(|t| t.references.as_str()),
                from: &from,
                from_name: job.from_name.as_deref(),
                reply_to: reply_to.as_deref(),
                to: &item.to,
                cc: &item.cc,
                bcc: &item.bcc,
                subject: item.subject.as_deref().unwrap_or("(no subject)"),
                text: (!item.body.is_empty()).then_some(item.body.as_str()),
                html: job.html.as_deref(),
                files: &files,
                unsubscribe_url: unsubscribe_url.as_deref(),
            };
            let result =
                provider_call(ctx, provider.send_email(&ctx.providers.clients, &email)).await?;
            (from, result)
        }
    };
    match result {
        Ok((accepted, follow_up)) => {
            let pid = accepted.provider_message_id.clone();
            let settlement =
                Settlement::sent(msg.id, provider.kind(), pid.clone(), accepted.status, &from);
            note_sent(ctx, &settlement).await;
            ctx.batches.settle.submit(settlement).await?;
            if let Some((status, code, reason)) = follow_up {
                // The sandbox reports delivery the way a provider callback would.
                let report = StatusReport {
                    message: MessageRef::Provider {
                        business_id: Some(msg.business_id),
                        provider: Some(Provider::Sandbox),
                        provider_message_id: pid,
                    },
                    status: Some(status),
                    error_code: code,
                    error_message: reason,
                    occurred_at: chrono::Utc::now(),
                    source: "provider".into(),
                    dedupe_key: format!("sandbox:{status}"),
                    opt_out: None,
                };
                if let Err(e) = ctx.batches.reports.submit((msg.business_id, report)).await {
                    tracing::warn!(error = %e, "could not queue the sandbox's status report");
                }
            }
            Ok(())
        }
        Err(SendError::Permanent { code, message }) => {
            fail(ctx, msg.id, provider.kind(), &code, &message).await
        }
        Err(SendError::Transient {
            message: error,
            retry_after,
        }) => retry_or_fail(ctx, msg.id, provider.kind(), attempt, error, retry_after).await,
    }
}

/// Makes a provider call under one of the process's permits (`OMEGA_WORKER_PROVIDER_CALLS`),
/// held for the call alone.
async fn provider_call<T>(
    ctx: &Ctx,
    call: impl std::future::Future<Output = T>,
) -> Result<T, JobError> {
    let _permit = ctx
        .provider_calls
        .acquire()
        .await
        .map_err(|_| JobError::Transient("the worker is stopping".into()))?;
    Ok(call.await)
}

/// The queue's key for the note of a message the provider accepted.
pub(crate) fn sent_note(message_id: i64) -> String {
    format!("sent:{message_id}")
}

/// Notes the provider's acceptance at once, before its settle batch commits (see the module
/// doc). A note that cannot be written is logged, not fatal: the message was sent, and its
/// settlement is still recorded by the batch.
async fn note_sent(ctx: &Ctx, settlement: &Settlement) {
    let written = match serde_json::to_string(settlement) {
        Ok(value) => ctx
            .producer
            .queue()
            .note(&sent_note(settlement.message_id), &value)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(error) = written {
        tracing::warn!(message_id = settlement.message_id, %error, "could not note a provider's acceptance");
    }
}

/// The provider's acceptance of this message, if an earlier delivery of its job noted it and
/// died before recording it. A note that cannot be read is treated as none (and logged).
async fn sent_before(ctx: &Ctx, message_id: i64) -> Option<Settlement> {
    match ctx.producer.queue().noted(&sent_note(message_id)).await {
        Ok(note) => note.and_then(|n| serde_json::from_str(&n).ok()),
        Err(error) => {
            tracing::warn!(message_id, %error, "could not read the note of an earlier send");
            None
        }
    }
}

/// A transient failure: retried, unless that was the last attempt (then failed for good).
async fn retry_or_fail(
    ctx: &Ctx,
    message_id: i64,
    provider: Provider,
    attempt: u32,
    error: String,
    retry_after: Option<std::time::Duration>,
) -> Result<(), JobError> {
    if ctx.policy.exhausted(attempt) {
        let reason = format!("gave up after {attempt} attempts: {error}");
        fail(ctx, message_id, provider, "retries_exhausted", &reason).await?;
    }
    Err(match retry_after {
        Some(after) => JobError::RetryAfter {
            after,
            reason: error,
        },
        None => JobError::Transient(error),
    })
}

/// Why the business may not send from the From its request named, if it may not: checked
/// again here because the data may have changed since the ingress accepted the request
/// ([`entities::senders`]). A From the worker takes itself (the location's number, the own
/// account's address) is the business's by construction.
async fn sender_refusal(
    ctx: &Ctx,
    job: &SendJob,
    from: Option<&str>,
    provider: &Chosen,
) -> Result<Option<&'static str>, JobError> {
    use entities::senders;
    let Some(from) = from else { return Ok(None) };
    let business_id = job.batch.business_id;
    let verdict = match job.batch.channel {
        Channel::Email => {
            let own = provider.sender_address();
            senders::address_verdict(&ctx.db, business_id, from, own.as_deref())
                .await
                .map_err(job_error)?
        }
        _ => {
            let holder = entities::calls::location_by_number(&ctx.db, from)
                .await
                .map_err(job_error)?;
            let shared = ctx.providers.twilio.as_ref().map(|t| &t.account_sid);
            let own = matches!(provider, Chosen::Twilio(c) if Some(&c.account_sid) != shared);
            senders::number_verdict(business_id, holder.as_ref(), own)
        }
    };
    Ok(verdict.err())
}

/// The one-click unsubscribe link of bulk email (campaign and automated, the mail Gmail's
/// and Yahoo's sender rules are about); none on transactional or conversation email.
fn unsubscribe_url(ctx: &Ctx, job: &SendJob, client_id: i64, to: &str) -> Option<String> {
    use entities::types::MessageCategory::{Automated, Campaign};
    use entities::unsubscribe::Subscriber;
    matches!(job.batch.category, Some(Campaign | Automated)).then(|| {
        let token = ctx.providers.unsubscribe.issue(&Subscriber {
            business_id: job.batch.business_id,
            client_id,
            address: to.to_owned(),
        });
        format!("{}/unsubscribe/{token}", ctx.providers.public_url)
    })
}

/// The sending location's number, if it has one.
async fn location_number(ctx: &Ctx, job: &SendJob) -> Result<Option<String>, JobError> {
    Ok(location_contact(ctx, job).await?.0)
}

async fn location_contact(
    ctx: &Ctx,
    job: &SendJob,
) -> Result<(Option<String>, Option<String>), JobError> {
    match job.batch.location_id {
        Some(l) => ctx
            .providers
            .location_contact(&ctx.db, job.batch.business_id, l)
            .await
            .map_err(job_error),
        None => Ok((None, None)),
    }
}

/// Where the client's reply should go when the request named no Reply-To: the
/// conversation's own address at omega's inbound domain, else the location's address
/// (whose mail the business reads, or routes to `/email/inbound`).
async fn reply_address(
    ctx: &Ctx,
    job: &SendJob,
    conversation: i64,
) -> Result<Option<String>, JobError> {
    if let Some(domain) = &ctx.providers.inbound_email_domain {
        let threading = &ctx.providers.threading;
        return Ok(Some(threading.reply_address(
            job.batch.business_id,
            conversation,
            domain,
        )));
    }
    Ok(location_contact(ctx, job).await?.1)
}
