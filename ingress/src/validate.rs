//! Request bodies: `ValidJson<T>` reads a JSON body (within a size limit), decodes it with
//! serde (so a wrong type names its exact path), then runs `T`'s own checks. Every problem is
//! reported at once as a 422 with FastAPI's `loc`/`msg`/`type`.
use poem::{FromRequest, Request, RequestBody};
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{BodyTooLarge, FieldError, ValidationFailed};

/// Checks a decoded request beyond its types; may normalise values (e.g. phone numbers).
pub trait Validate {
    /// The largest body accepted for this request type (bodies are only ever read through
    /// an extractor that enforces its limit).
    const MAX_BODY: usize = 4 << 20;
    fn validate(&mut self, c: &mut Checker);
}

/// Collects validation errors with the path they occurred at.
#[derive(Default)]
pub struct Checker {
    path: Vec<Value>,
    errors: Vec<FieldError>,
}

impl Checker {
    pub fn new(root: &str) -> Self {
        Checker {
            path: vec![root.into()],
            errors: Vec::new(),
        }
    }

    /// Runs `f` with `key` appended to the path.
    pub fn at<K: Into<Value>>(&mut self, key: K, f: impl FnOnce(&mut Checker)) {
        self.path.push(key.into());
        f(self);
        self.path.pop();
    }

    pub fn fail(&mut self, field: &str, msg: impl Into<String>, kind: &str) {
        let mut loc = self.path.clone();
        if !field.is_empty() {
            loc.push(field.into());
        }
        self.errors.push(FieldError {
            loc,
            msg: msg.into(),
            kind: kind.into(),
        });
    }

    pub fn into_result(self) -> Result<(), Vec<FieldError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }

    /// A string's length in characters within `min..=max`.
    pub fn length(&mut self, field: &str, value: &str, min: usize, max: usize) {
        let n = value.chars().count();
        if n < min {
            self.fail(
                field,
                format!("ensure this value has at least {min} characters"),
                "value_error.any_str.min_length",
            );
        } else if n > max {
            self.fail(
                field,
                format!("ensure this value has at most {max} characters"),
                "value_error.any_str.max_length",
            );
        }
    }

    pub fn count(&mut self, field: &str, n: usize, min: usize, max: usize) {
        if n < min {
            self.fail(
                field,
                format!("ensure this list has at least {min} items"),
                "value_error.list.min_items",
            );
        } else if n > max {
            self.fail(
                field,
                format!("ensure this list has at most {max} items"),
                "value_error.list.max_items",
            );
        }
    }

    /// An E.164 phone number, rewritten to its canonical form.
    pub fn phone(&mut self, field: &str, value: &mut String) {
        match normalize_phone(value) {
            Some(e164) => *value = e164,
            None => self.fail(
                field,
                "value is not a valid E.164 phone number",
                "value_error.phone",
            ),
        }
    }

    pub fn email(&mut self, field: &str, value: &str) {
        if !is_email(value) {
            self.fail(
                field,
                "value is not a valid email address",
                "value_error.email",
            );
        }
    }

    pub fn positive(&mut self, field: &str, value: i64) {
        if value < 0 {
            self.fail(
                field,
                "ensure this value is greater than or equal to 0",
                "value_error.number.not_ge",
            );
        }
    }
}

/// `+` and a number libphonenumber considers valid, as E.164.
pub fn normalize_phone(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if !raw.starts_with('+') {
        return None;
    }
    phone_memo::get_or_check(raw, |raw| {
        let number = phonenumber::parse(None, raw).ok()?;
        phonenumber::is_valid(&number)
            .then(|| number.format().mode(phonenumber::Mode::E164).to_string())
    })
}

/// Remembered answers of the phone number check. The check is a pure function, and an
/// expensive one on the hot path: the phonenumber crate runs every regex of its metadata
/// under one process-wide lock, so concurrent requests queue behind each other. A business
/// sends to the same client numbers again and again, so most checks are answered here.
mod phone_memo {
    use std::collections::HashMap;
    use std::sync::{LazyLock, RwLock};

    /// Bounded: when full, the whole map is dropped (cheaper than tracking recency).
    pub(super) const MAX_ENTRIES: usize = 8192;
    /// Longer input is checked every time (E.164 numbers are at most 16 characters, so such
    /// input is invalid anyway and not worth a slot).
    const MAX_KEY: usize = 32;

    type Memo = HashMap<Box<str>, Option<String>>;
    static MEMO: LazyLock<RwLock<Memo>> = LazyLock::new(Default::default);

    #[cfg(test)]
    pub(super) fn len() -> usize {
        MEMO.read().expect("phone memo poisoned").len()
    }

    pub fn get_or_check(raw: &str, check: impl FnOnce(&str) -> Option<String>) -> Option<String> {
        if raw.len() > MAX_KEY {
            return check(raw);
        }
        if let Some(known) = MEMO.read().expect("phone memo poisoned").get(raw) {
            return known.clone();
        }
        let answer = check(raw);
        let mut memo = MEMO.write().expect("phone memo poisoned");
        if memo.len() >= MAX_ENTRIES {
            memo.clear();
        }
        memo.insert(raw.into(), answer.clone());
        answer
    }
}

pub fn is_email(value: &str) -> bool {
    value.len() <= 254
        && email_address::EmailAddress::parse_with_options(
            value,
            email_address::Options::default()
                .without_display_text()
                .without_domain_literal(),
        )
        .is_ok_and(|e| e.domain().contains('.'))
}

/// A validated JSON body, with a hash of its bytes (for Idempotency-Key comparisons).
pub struct ValidJson<T> {
    pub value: T,
    pub body_hash: String,
}

impl<T: Type> Payload for ValidJson<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn check_content_type(content_type: &str) -> bool {
        matches!(content_type.parse::<mime::Mime>(), Ok(ct) if ct.type_() == "application"
            && (ct.subtype() == "json" || ct.suffix().is_some_and(|v| v == "json")))
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

/// The request body, at most `max` bytes: 413 beyond, 422 when it cannot be read.
pub async fn read_body(
    request: &Request,
    body: &mut RequestBody,
    max: usize,
) -> poem::Result<bytes::Bytes> {
    let body = poem::Body::from_request(request, body).await?;
    body.into_bytes_limit(max).await.map_err(|e| match e {
        poem::error::ReadBodyError::PayloadTooLarge => poem::Error::from(BodyTooLarge(max)),
        other => poem::Error::from(ValidationFailed(vec![FieldError {
            loc: vec!["body".into()],
            msg: format!("could not read the request body: {other}"),
            kind: "value_error".into(),
        }])),
    })
}

impl<T: Type + DeserializeOwned + Validate + Send> ParsePayload for ValidJson<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let bytes = read_body(request, body, T::MAX_BODY).await?;
        let body_hash = format!("{:x}", Sha256::digest(&bytes));
        let mut value: T = decode(&bytes).map_err(|e| ValidationFailed(vec![e]))?;
        let mut checker = Checker::new("body");
        value.validate(&mut checker);
        checker.into_result().map_err(ValidationFailed)?;
        Ok(ValidJson { value, body_hash })
    }
}

poem_openapi::impl_apirequest_for_payload!(ValidJson<T>, T: Type + DeserializeOwned + Validate + Send);

/// serde decoding with the failing path turned into a `loc`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FieldError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(FieldError {
            loc: vec!["body".into()],
            msg: "field required".into(),
            kind: "missing".into(),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|err| {
        let mut loc: Vec<Value> = vec!["body".into()];
        for seg in err.path().iter() {
            match seg {
                serde_path_to_error::Segment::Seq { index } => loc.push((*index).into()),
                serde_path_to_error::Segment::Map { key } => loc.push(key.clone().into()),
                serde_path_to_error::Segment::Enum { variant } => loc.push(variant.clone().into()),
                serde_path_to_error::Segment::Unknown => {}
            }
        }
        let inner = err.into_inner();
        let text = inner.to_string();
        // serde names a missing field in its message; FastAPI puts it at the end of `loc`.
        let (msg, kind) = if let Some(field) = text
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
        {
            loc.push(field.to_owned().into());
            ("field required".to_owned(), "missing")
        } else if (inner.is_syntax() || inner.is_eof())
            && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err()
        {
            // Broken JSON has no field to point at: the body as a whole is wrong.
            loc.truncate(1);
            (format!("invalid JSON: {text}"), "json_invalid")
        } else if text.starts_with("unknown variant") {
            (strip_position(&text), "enum")
        } else {
            (strip_position(&text), "type_error")
        };
        FieldError {
            loc,
            msg,
            kind: kind.into(),
        }
    })
}

fn strip_position(text: &str) -> String {
    match text.find(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_are_normalised_or_refused() {
        assert_eq!(
            normalize_phone("+1 415 555 2671").as_deref(),
            Some("+14155552671")
        );
        assert_eq!(
            normalize_phone("+15005550006").as_deref(),
            Some("+15005550006")
        );
        assert_eq!(normalize_phone("4155552671"), None);
        assert_eq!(normalize_phone("+1"), None);
        assert_eq!(normalize_phone("hello"), None);
    }

    #[test]
    fn remembered_phone_answers_match_fresh_ones_and_the_memo_stays_bounded() {
        let inputs = [
            "+1 415 555 2671",
            "+15005550006",
            "+1",
            "+44 20 7946 0958",
            "+99",
        ];
        let fresh: Vec<_> = inputs.iter().map(|p| normalize_phone(p)).collect();
        let again: Vec<_> = inputs.iter().map(|p| normalize_phone(p)).collect();
        assert_eq!(fresh, again);
        assert_eq!(fresh[3].as_deref(), Some("+442079460958"));
        assert_eq!(fresh[4], None);
        let mut checks = 0;
        for i in 0..(phone_memo::MAX_ENTRIES + 10) {
            let number = format!("+1415{i:07}");
            phone_memo::get_or_check(&number, |_| {
                checks += 1;
                None
            });
        }
        assert_eq!(checks, phone_memo::MAX_ENTRIES + 10);
        assert!(phone_memo::len() <= phone_memo::MAX_ENTRIES);
        let last = format!("+1415{:07}", phone_memo::MAX_ENTRIES + 9);
        let mut called = false;
        phone_memo::get_or_check(&last, |_| {
            called = true;
            None
        });
        assert!(!called, "the memo forgot an answer it had room for");
    }

    #[test]
    fn emails() {
        assert!(is_email("recipient@dev.concerto.ai"));
        assert!(!is_email("string"));
        assert!(!is_email("a@b"));
        assert!(!is_email("Name <a@b.com>"));
    }

    #[test]
    fn decode_errors_carry_their_path() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Item {
            client_id: i64,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Req {
            messages: Vec<Item>,
        }
        let e = decode::<Req>(br#"{"messages":[{"client_id":1},{"client_id":"x"}]}"#).unwrap_err();
        assert_eq!(
            e.loc,
            vec![
                Value::from("body"),
                "messages".into(),
                1.into(),
                "client_id".into()
            ]
        );
        assert_eq!(e.kind, "type_error");
        let e = decode::<Req>(br#"{"messages":[{}]}"#).unwrap_err();
        assert_eq!(
            e.loc,
            vec![
                Value::from("body"),
                "messages".into(),
                0.into(),
                "client_id".into()
            ]
        );
        assert_eq!(e.kind, "missing");
        let e = decode::<Req>(br#"{"messages":["#).unwrap_err();
        assert_eq!(e.kind, "json_invalid");
    }
}
