//! Twilio's side of the wire: request signatures (`X-Twilio-Signature`), form bodies that
//! keep every parameter, and TwiML built with an XML writer.
use base64::Engine;
use hmac::{Hmac, Mac};
use poem::{Request, RequestBody};
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use quick_xml::Writer;
use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use crate::error::{FieldError, ValidationFailed};

/// The largest webhook body accepted (Twilio's are a few kilobytes).
const MAX_BODY: usize = 64 << 10;

/// Base64(HMAC-SHA1(auth token, URL followed by every parameter's name and value, sorted by name)).
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac =
        Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `presented` is the signature of this request under `auth_token` (constant time).
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], presented: &str) -> bool {
    let expected = signature(auth_token, url, params);
    bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

/// A form-encoded Twilio request: every parameter in order, and the URL Twilio called
/// (`public_url` + path + query), for the signature.
pub struct TwilioForm {
    pub params: Vec<(String, String)>,
    pub path_and_query: String,
}

impl TwilioForm {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Payload for TwilioForm {
    const CONTENT_TYPE: &'static str = "application/x-www-form-urlencoded";

    fn check_content_type(content_type: &str) -> bool {
        matches!(content_type.parse::<mime::Mime>(), Ok(ct) if ct.essence_str() == Self::CONTENT_TYPE)
    }

    fn schema_ref() -> MetaSchemaRef {
        let mut schema = MetaSchema::new("object");
        schema.additional_properties = Some(Box::new(MetaSchemaRef::Inline(Box::new(
            MetaSchema::new("string"),
        ))));
        MetaSchemaRef::Inline(Box::new(schema))
    }

    fn register(_registry: &mut Registry) {}
}

impl ParsePayload for TwilioForm {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let bytes = crate::validate::read_body(request, body, MAX_BODY).await?;
        let params: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| invalid(format!("invalid form body: {e}")))?;
        let path_and_query = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        Ok(TwilioForm {
            params,
            path_and_query,
        })
    }
}

fn invalid(msg: String) -> poem::Error {
    ValidationFailed(vec![FieldError {
        loc: vec!["body".into()],
        msg,
        kind: "value_error".into(),
    }])
    .into()
}

poem_openapi::impl_apirequest_for_payload!(TwilioForm,);

/// One TwiML verb with its attributes and its content (text or nested verbs).
pub enum Verb {
    Say(String),
    Hangup,
    Dial {
        attrs: Vec<(&'static str, String)>,
        nouns: Vec<Noun>,
    },
}

pub enum Noun {
    Number {
        attrs: Vec<(&'static str, String)>,
        number: String,
    },
    Client(String),
}

fn element(
    w: &mut Writer<Vec<u8>>,
    name: &str,
    attrs: &[(&str, String)],
    text: Option<&str>,
) -> std::io::Result<()> {
    let mut start = BytesStart::new(name);
    for (k, v) in attrs {
        start.push_attribute((*k, v.as_str()));
    }
    match text {
        Some(t) => {
            w.write_event(Event::Start(start))?;
            w.write_event(Event::Text(BytesText::new(t)))?;
            w.write_event(Event::End(BytesEnd::new(name)))?;
        }
        None => w.write_event(Event::Empty(start))?,
    }
    Ok(())
}

/// `<?xml …?><Response>…</Response>`, every value escaped by the writer.
pub fn twiml(verbs: &[Verb]) -> String {
    let mut w = Writer::new(Vec::new());
    let write = |w: &mut Writer<Vec<u8>>| -> std::io::Result<()> {
        w.write_event(Event::Decl(quick_xml::events::BytesDecl::new(
            "1.0",
            Some("UTF-8"),
            None,
        )))?;
        w.write_event(Event::Start(BytesStart::new("Response")))?;
        for verb in verbs {
            match verb {
                Verb::Say(text) => element(w, "Say", &[], Some(text))?,
                Verb::Hangup => element(w, "Hangup", &[], None)?,
                Verb::Dial { attrs, nouns } => {
                    let mut start = BytesStart::new("Dial");
                    for (k, v) in attrs {
                        start.push_attribute((*k, v.as_str()));
                    }
                    w.write_event(Event::Start(start))?;
                    for noun in nouns {
                        match noun {
                            Noun::Number { attrs, number } => {
                                element(w, "Number", attrs, Some(number))?
                            }
                            Noun::Client(identity) => element(w, "Client", &[], Some(identity))?,
                        }
                    }
                    w.write_event(Event::End(BytesEnd::new("Dial")))?;
                }
            }
        }
        w.write_event(Event::End(BytesEnd::new("Response")))
    };
    write(&mut w).expect("writing XML to memory cannot fail");
    String::from_utf8(w.into_inner()).expect("the writer emits UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs_params() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675310"),
            ("Digits", "1234"),
            ("From", "+14158675310"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn matches_twilios_documented_example() {
        // Twilio's webhook security documentation: auth token 12345, this URL and these
        // parameters sign to this value.
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let mut params = docs_params();
        params.reverse();
        assert_eq!(
            signature("12345", url, &params),
            "GvWf1cFY/Q7PnoempGyD5oXAezc="
        );
        assert!(verify(
            "12345",
            url,
            &params,
            "GvWf1cFY/Q7PnoempGyD5oXAezc="
        ));
        assert!(!verify(
            "12346",
            url,
            &params,
            "GvWf1cFY/Q7PnoempGyD5oXAezc="
        ));
        assert!(!verify(
            "12345",
            "http://mycompany.com/myapp.php?foo=1&bar=2",
            &params,
            "GvWf1cFY/Q7PnoempGyD5oXAezc="
        ));
        params[0].1.push('9');
        assert!(!verify(
            "12345",
            url,
            &params,
            "GvWf1cFY/Q7PnoempGyD5oXAezc="
        ));
    }

    #[test]
    fn twiml_escapes_values() {
        let xml = twiml(&[Verb::Say("Tom & \"Jerry\" <3".into()), Verb::Hangup]);
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Say>Tom &amp; &quot;Jerry&quot; &lt;3</Say><Hangup/></Response>"
        );
        let xml = twiml(&[Verb::Dial {
            attrs: vec![("callerId", "+1415<5550100".into())],
            nouns: vec![Noun::Client("b1_s2".into())],
        }]);
        assert!(xml.contains("callerId=\"+1415&lt;5550100\""), "{xml}");
    }
}
