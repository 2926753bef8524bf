//! Inbound email as each provider posts it, read into one [`ReceivedEmail`]: SendGrid's
//! Inbound Parse and Mailgun's routes (multipart or URL-encoded forms), Postmark's inbound
//! JSON. Their authentication is checked by the route before anything here runs (Mailgun's
//! signature is in the form: [`Form::field`] reads it).
use base64::Engine;
use chrono::{DateTime, Utc};
use entities::inbound_email::{InboundFile, ReceivedEmail};
use entities::types::Provider;
use serde_json::Value;

/// One attachment, at most (the outbound limit).
pub const MAX_FILE_BYTES: usize = 10 << 20;

/// A posted form: its text fields and its files.
#[derive(Debug, Default)]
pub struct Form {
    pub fields: Vec<(String, String)>,
    pub files: Vec<(String, InboundFile, usize)>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Unreadable {
    /// Not a form or JSON of the provider's shape: 422.
    Invalid(String),
    /// A file over [`MAX_FILE_BYTES`]: 413.
    TooLarge(String),
}

impl Form {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// A multipart/form-data or application/x-www-form-urlencoded body.
    pub async fn read(content_type: Option<&str>, body: &[u8]) -> Result<Form, Unreadable> {
        let invalid = |e: &dyn std::fmt::Display| Unreadable::Invalid(e.to_string());
        let kind: mime::Mime = content_type
            .ok_or_else(|| Unreadable::Invalid("no Content-Type".into()))?
            .parse()
            .map_err(|e| invalid(&e))?;
        if kind.essence_str() == "application/x-www-form-urlencoded" {
            let fields = serde_urlencoded::from_bytes(body).map_err(|e| invalid(&e))?;
            return Ok(Form {
                fields,
                files: vec![],
            });
        }
        if kind.essence_str() != "multipart/form-data" {
            return Err(Unreadable::Invalid(
                "expected multipart/form-data or application/x-www-form-urlencoded".into(),
            ));
        }
        let boundary = multer::parse_boundary(kind.as_ref()).map_err(|e| invalid(&e))?;
        let bytes = bytes::Bytes::copy_from_slice(body);
        let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(bytes) });
        let mut multipart = multer::Multipart::new(stream, boundary);
        let mut form = Form::default();
        while let Some(field) = multipart.next_field().await.map_err(|e| invalid(&e))? {
            let name = field.name().unwrap_or_default().to_owned();
            let file_name = field.file_name().map(str::to_owned);
            let content_type = field.content_type().map(|m| m.to_string());
            let data = field.bytes().await.map_err(|e| invalid(&e))?;
            match file_name {
                Some(filename) => {
                    if data.len() > MAX_FILE_BYTES {
                        return Err(Unreadable::TooLarge(format!(
                            "attachment {filename:?} is over {} MB",
                            MAX_FILE_BYTES >> 20
                        )));
                    }
                    let file = InboundFile {
                        filename,
                        content_type: content_type
                            .unwrap_or_else(|| "application/octet-stream".into()),
                        content: base64::engine::general_purpose::STANDARD.encode(&data),
                    };
                    form.files.push((name, file, data.len()));
                }
                None => form
                    .fields
                    .push((name, String::from_utf8_lossy(&data).into_owned())),
            }
        }
        Ok(form)
    }
}

/// `Name <addr>` (or a bare address) → (lower-case address, name).
pub fn address(text: &str) -> Option<(String, Option<String>)> {
    let text = text.trim();
    let (addr, name) = match (text.rfind('<'), text.rfind('>')) {
        (Some(open), Some(close)) if open < close => {
            let name = text[..open].trim().trim_matches('"').trim();
            (
                &text[open + 1..close],
                (!name.is_empty()).then(|| name.to_owned()),
            )
        }
        _ => (text, None),
    };
    let addr = addr.trim().to_ascii_lowercase();
    (addr.contains('@') && !addr.contains(char::is_whitespace)).then_some((addr, name))
}

/// The addresses of a list (`a@x, "B, C" <b@y>`): commas inside quotes or `<>` do not split.
pub fn addresses(text: &str) -> Vec<String> {
    let (mut parts, mut current, mut quoted, mut angled) = (vec![], String::new(), false, false);
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' => angled = true,
            '>' => angled = false,
            ',' if !quoted && !angled => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
        .iter()
        .filter_map(|p| address(p))
        .map(|(a, _)| a)
        .collect()
}

/// A raw header block's value for `name` (unfolded; the first occurrence).
pub fn header(block: &str, name: &str) -> Option<String> {
    let mut value: Option<String> = None;
    for line in block.lines() {
        if let Some(v) = value.as_mut() {
            if line.starts_with([' ', '\t']) {
                v.push(' ');
                v.push_str(line.trim());
                continue;
            }
            break;
        }
        if let Some((n, v)) = line.split_once(':')
            && n.trim().eq_ignore_ascii_case(name)
        {
            value = Some(v.trim().to_owned());
        }
    }
    value.filter(|v| !v.is_empty())
}

fn recipients(lists: &[Option<&str>]) -> Vec<String> {
    let mut all: Vec<String> = vec![];
    for list in lists.iter().flatten() {
        for a in addresses(list) {
            if !all.contains(&a) {
                all.push(a);
            }
        }
    }
    all
}

fn sender(from: Option<&str>) -> Result<(String, Option<String>), Unreadable> {
    from.and_then(address)
        .ok_or_else(|| Unreadable::Invalid("no sender address (from)".into()))
}

fn nonempty(s: Option<&str>) -> Option<String> {
    s.map(str::to_owned).filter(|s| !s.trim().is_empty())
}

/// SendGrid Inbound Parse (the default, parsed form: not "raw").
pub fn sendgrid(form: &Form, now: DateTime<Utc>) -> Result<ReceivedEmail, Unreadable> {
    let headers = form.field("headers").unwrap_or("");
    let (from, from_name) = sender(form.field("from"))?;
    let envelope: Value = form
        .field("envelope")
        .and_then(|e| serde_json::from_str(e).ok())
        .unwrap_or_default();
    let envelope_to: Vec<&str> = envelope["to"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let envelope_to = envelope_to.join(",");
    Ok(ReceivedEmail {
        provider: Some(Provider::Sendgrid),
        from,
        from_name,
        to: recipients(&[form.field("to"), form.field("cc"), Some(&envelope_to)]),
        subject: nonempty(form.field("subject")),
        text: nonempty(form.field("text")),
        html: nonempty(form.field("html")),
        message_id: header(headers, "Message-ID"),
        in_reply_to: header(headers, "In-Reply-To"),
        references: header(headers, "References"),
        attachments: form.files.iter().map(|(_, f, _)| f.clone()).collect(),
        received_at: now,
    })
}

/// A Mailgun route's forward (its signature checked by the caller).
pub fn mailgun(form: &Form, now: DateTime<Utc>) -> Result<ReceivedEmail, Unreadable> {
    let (from, from_name) = sender(form.field("from").or(form.field("sender")))?;
    // message-headers: a JSON list of [name, value] pairs, the fallback for each header.
    let listed: Vec<(String, String)> = form
        .field("message-headers")
        .and_then(|h| serde_json::from_str(h).ok())
        .unwrap_or_default();
    let head = |name: &str| {
        form.field(name).map(str::to_owned).or_else(|| {
            listed
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        })
    };
    Ok(ReceivedEmail {
        provider: Some(Provider::Mailgun),
        from,
        from_name,
        to: recipients(&[
            form.field("recipient"),
            head("To").as_deref(),
            head("Cc").as_deref(),
        ]),
        subject: nonempty(form.field("subject")),
        text: nonempty(form.field("body-plain")),
        html: nonempty(form.field("body-html")),
        message_id: head("Message-Id"),
        in_reply_to: head("In-Reply-To"),
        references: head("References"),
        attachments: form.files.iter().map(|(_, f, _)| f.clone()).collect(),
        received_at: form
            .field("timestamp")
            .and_then(|t| t.parse::<i64>().ok())
            .and_then(|t| DateTime::from_timestamp(t, 0))
            .unwrap_or(now),
    })
}

/// Postmark's inbound webhook JSON.
pub fn postmark(v: &Value, now: DateTime<Utc>) -> Result<ReceivedEmail, Unreadable> {
    let s = |key: &str| v.get(key).and_then(Value::as_str);
    let from = v["FromFull"]["Email"]
        .as_str()
        .map(|e| format!("{} <{e}>", v["FromFull"]["Name"].as_str().unwrap_or("")))
        .or(s("From").map(str::to_owned));
    let (from, from_name) = sender(from.as_deref())?;
    let full = |key: &str| -> String {
        v[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x["Email"].as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    let (to_full, cc_full) = (full("ToFull"), full("CcFull"));
    let headers: Vec<(&str, &str)> = v["Headers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|h| Some((h["Name"].as_str()?, h["Value"].as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    let head = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_string())
    };
    let mut attachments = vec![];
    for a in v["Attachments"].as_array().into_iter().flatten() {
        let content = a["Content"].as_str().unwrap_or("");
        let filename = a["Name"].as_str().unwrap_or("attachment").to_owned();
        let size = base64::engine::general_purpose::STANDARD
            .decode(content)
            .map_err(|e| Unreadable::Invalid(format!("attachment {filename:?}: {e}")))?
            .len();
        if size > MAX_FILE_BYTES {
            return Err(Unreadable::TooLarge(format!(
                "attachment {filename:?} is over {} MB",
                MAX_FILE_BYTES >> 20
            )));
        }
        attachments.push(InboundFile {
            filename,
            content_type: a["ContentType"]
                .as_str()
                .unwrap_or("application/octet-stream")
                .to_owned(),
            content: content.to_owned(),
        });
    }
    Ok(ReceivedEmail {
        provider: Some(Provider::Postmark),
        from,
        from_name,
        to: recipients(&[
            Some(&to_full),
            Some(&cc_full),
            s("OriginalRecipient"),
            s("To"),
        ]),
        subject: nonempty(s("Subject")),
        text: nonempty(s("TextBody")),
        html: nonempty(s("HtmlBody")),
        message_id: head("Message-ID"),
        in_reply_to: head("In-Reply-To"),
        references: head("References"),
        attachments,
        received_at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_headers_are_read_as_mail_writes_them() {
        assert_eq!(
            address("\"Hopper, Grace\" <Grace@Example.com>"),
            Some(("grace@example.com".into(), Some("Hopper, Grace".into())))
        );
        assert_eq!(
            address("grace@example.com"),
            Some(("grace@example.com".into(), None))
        );
        assert_eq!(address("not an address"), None);
        assert_eq!(
            addresses("\"Spa, Downtown\" <downtown@example.com>, reply+1.2.ab@in.example"),
            vec!["downtown@example.com", "reply+1.2.ab@in.example"]
        );
        let block = "Received: by x\nMessage-ID: <a@b>\nReferences: <1@x>\n <2@y>\nSubject: hi\n";
        assert_eq!(header(block, "message-id").as_deref(), Some("<a@b>"));
        assert_eq!(header(block, "References").as_deref(), Some("<1@x> <2@y>"));
        assert_eq!(header(block, "In-Reply-To"), None);
    }
}
