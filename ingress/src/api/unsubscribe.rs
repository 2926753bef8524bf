//! One-click unsubscribe (RFC 8058): `POST /unsubscribe/{token}` is what a mailbox provider
//! calls when its user presses "unsubscribe" (no key: the token is the credential);
//! `GET` is the page a person reaches from the link, whose button posts. A GET never
//! unsubscribes by itself: link scanners and prefetchers follow every link.
use std::sync::Arc;

use chrono::Utc;
use entities::unsubscribe::{self, Subscriber};
use poem_openapi::param::Path;
use poem_openapi::payload::Html;
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(ApiResponse)]
pub enum UnsubscribeResponse {
    /// The confirmation page (GET) or the unsubscribed page (POST).
    #[oai(status = 200)]
    Ok(Html<String>),
    /// Not a link omega issued, or its business is gone.
    #[oai(status = 404)]
    NotFound(Html<String>),
}

pub struct UnsubscribeApi {
    pub state: Arc<AppState>,
}

#[OpenApi]
impl UnsubscribeApi {
    /// Unsubscribe page
    ///
    /// The page an email's unsubscribe link opens: it names the business and the address
    /// (partly hidden) and has a button that posts to this URL. Changes nothing.
    #[oai(path = "/unsubscribe/:token", method = "get", tag = "ApiTags::Email")]
    async fn page(&self, token: Path<String>) -> Result<UnsubscribeResponse, ApiError> {
        let Some(who) = self.state.settings.unsubscribe.open(&token.0) else {
            return Ok(not_found());
        };
        let Some((business, opted_out)) = unsubscribe::describe(&self.state.db, &who).await? else {
            return Ok(not_found());
        };
        let text = if opted_out {
            format!(
                "<p>{} is unsubscribed from {}'s emails.</p>",
                masked(&who),
                escape(&business)
            )
        } else {
            format!(
                "<p>Stop emails from {} to {}?</p>\
                 <form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" \
                 value=\"One-Click\"><button type=\"submit\">Unsubscribe</button></form>",
                escape(&business),
                masked(&who)
            )
        };
        Ok(UnsubscribeResponse::Ok(page("Unsubscribe", &text)))
    }

    /// Unsubscribe (one click)
    ///
    /// RFC 8058: opts the address the email went to out of the business's email, recorded
    /// like a bounce (the address's consent and the client's); later sends to it are
    /// refused. Needs no key (the token is the credential) and takes any body (mailbox
    /// providers send `List-Unsubscribe=One-Click`). Idempotent: 200 again, the first
    /// opt-out's time kept.
    #[oai(path = "/unsubscribe/:token", method = "post", tag = "ApiTags::Email")]
    async fn unsubscribe(&self, token: Path<String>) -> Result<UnsubscribeResponse, ApiError> {
        let Some(who) = self.state.settings.unsubscribe.open(&token.0) else {
            return Ok(not_found());
        };
        if !unsubscribe::unsubscribe(&self.state.db, &who, Utc::now()).await? {
            return Ok(not_found());
        }
        tracing::info!(
            business_id = who.business_id,
            client_id = who.client_id,
            "unsubscribed from email by one-click link"
        );
        let text = format!(
            "<p>Unsubscribed: {} will get no more emails at this address.</p>",
            masked(&who)
        );
        Ok(UnsubscribeResponse::Ok(page("Unsubscribed", &text)))
    }
}

fn not_found() -> UnsubscribeResponse {
    UnsubscribeResponse::NotFound(page(
        "Link not valid",
        "<p>This unsubscribe link is not valid. Use the link of a recent email.</p>",
    ))
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><meta name=\"robots\" \
         content=\"noindex\"><title>{title}</title></head><body><h1>{title}</h1>{body}</body>\
         </html>"
    ))
}

/// The address with most of its mailbox hidden: whoever the email was forwarded to does not
/// learn it from the page.
fn masked(who: &Subscriber) -> String {
    let (local, domain) = who.address.rsplit_once('@').unwrap_or((&who.address, ""));
    let first: String = local.chars().take(1).collect();
    escape(&format!("{first}***@{domain}"))
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_hide_the_mailbox_and_escape_names() {
        let who = Subscriber {
            business_id: 1,
            client_id: 2,
            address: "grace@example.com".into(),
        };
        assert_eq!(masked(&who), "g***@example.com");
        assert_eq!(
            escape("Tom & Jerry's <Spa>"),
            "Tom &amp; Jerry&#39;s &lt;Spa&gt;"
        );
    }
}
