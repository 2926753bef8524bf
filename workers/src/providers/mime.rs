//! An email as one MIME message (lettre): what SMTP relays send and what Amazon SES takes
//! raw. The headers every provider carries are listed once, in [`headers`].
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};

use super::{EmailOut, ONE_CLICK, SendError};

fn invalid(what: &str, e: &dyn std::fmt::Display) -> SendError {
    SendError::Permanent {
        code: "invalid_message".into(),
        message: format!("{what}: {e}"),
    }
}

fn mailbox(name: Option<&str>, addr: &str) -> Result<Mailbox, SendError> {
    let address = addr.parse().map_err(|e| invalid("address", &e))?;
    Ok(Mailbox::new(name.map(str::to_owned), address))
}

/// `Name <address>`, quoted as RFC 5322 needs (the form Mailgun's and Postmark's `From`
/// take).
pub fn display_from(email: &EmailOut<'_>) -> String {
    mailbox(email.from_name, email.from)
        .map(|m| m.to_string())
        .unwrap_or_else(|_| email.from.to_owned())
}

/// The headers omega sets beyond the addresses and subject: its Message-ID, threading, and
/// RFC 8058's one-click unsubscribe.
pub fn headers(email: &EmailOut<'_>) -> Vec<(&'static str, String)> {
    let mut out = vec![("Message-ID", email.message_id.to_owned())];
    if let Some(id) = email.in_reply_to {
        out.push(("In-Reply-To", id.to_owned()));
    }
    if let Some(refs) = email.references {
        out.push(("References", refs.to_owned()));
    }
    if let Some(url) = email.unsubscribe_url {
        out.push(("List-Unsubscribe", format!("<{url}>")));
        out.push(("List-Unsubscribe-Post", ONE_CLICK.to_owned()));
    }
    out
}

/// The whole message, attachments included. Bcc is in the envelope only.
pub fn message(email: &EmailOut<'_>) -> Result<lettre::Message, SendError> {
    let mut builder = lettre::Message::builder()
        .from(mailbox(email.from_name, email.from)?)
        .to(mailbox(None, email.to)?)
        .subject(email.subject);
    if let Some(r) = email.reply_to {
        builder = builder.reply_to(mailbox(None, r)?);
    }
    for (name, value) in headers(email) {
        builder = builder.raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str(name),
            value,
        ));
    }
    for cc in email.cc {
        builder = builder.cc(mailbox(None, cc)?);
    }
    for bcc in email.bcc {
        builder = builder.bcc(mailbox(None, bcc)?);
    }
    let body = match (email.text, email.html) {
        (Some(t), Some(h)) => MultiPart::alternative_plain_html(t.to_owned(), h.to_owned()),
        (None, Some(h)) => MultiPart::mixed().singlepart(SinglePart::html(h.to_owned())),
        (t, None) => {
            MultiPart::mixed().singlepart(SinglePart::plain(t.unwrap_or_default().to_owned()))
        }
    };
    let mut mixed = MultiPart::mixed().multipart(body);
    for file in email.files {
        let kind = ContentType::parse(&file.content_type).unwrap_or_else(|_| {
            ContentType::parse("application/octet-stream").expect("a valid content type")
        });
        mixed =
            mixed.singlepart(Attachment::new(file.filename.clone()).body(file.bytes.clone(), kind));
    }
    builder.multipart(mixed).map_err(|e| invalid("message", &e))
}
