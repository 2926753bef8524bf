//! The enums of the API contract. Stored as their snake_case strings; with the `openapi`
//! feature they are also poem-openapi enums under the contract's schema names.
use serde::{Deserialize, Serialize};

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
        #[serde(rename_all = "snake_case")]
        #[cfg_attr(feature = "openapi", oai(rename_all = "snake_case"))]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = crate::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(crate::Error::Corrupt(format!(
                        "unknown {} value {other:?}", stringify!($name)
                    ))),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(Channel { Sms => "sms", Email => "email", Voice => "voice", Note => "note" });
string_enum!(
    /// Delivery status. Outbound order: initiated < queued < sending < sent <
    /// {delivered, undelivered, failed} < read.
    MessageStatus {
        Initiated => "initiated", Scheduled => "scheduled", Queued => "queued", Sending => "sending", Sent => "sent",
        Delivered => "delivered", Undelivered => "undelivered", Failed => "failed",
        Received => "received", Read => "read", Canceled => "canceled",
    }
);
string_enum!(UserType { Client => "client", Staff => "staff", System => "system" });
string_enum!(ClientType { Client => "client", Prospect => "prospect", Lead => "lead" });
string_enum!(ClientConversationStatus {
    Open => "open", Pending => "pending", Resolved => "resolved", Snoozed => "snoozed",
});
string_enum!(MessageCategory {
    Conversation => "conversation", Transactional => "transactional", Reminder => "reminder",
    Campaign => "campaign", Automated => "automated", System => "system",
});
string_enum!(NotificationType {
    NotificationOptIn => "notification_opt_in", AppointmentReminder => "appointment_reminder",
    AppointmentConfirmation => "appointment_confirmation",
    AppointmentCancellation => "appointment_cancellation", ClassReminder => "class_reminder",
    PurchaseReceipt => "purchase_receipt", MembershipExpiry => "membership_expiry",
    Marketing => "marketing", DirectMessage => "direct_message", Other => "other",
});
string_enum!(Provider {
    Twilio => "twilio", Sendgrid => "sendgrid", Mailgun => "mailgun", Ses => "ses",
    Postmark => "postmark", Smtp => "smtp", Sandbox => "sandbox", External => "external",
});
string_enum!(Direction { Inbound => "inbound", Outbound => "outbound" });
string_enum!(ExternalEmailProvider {
    Sendgrid => "sendgrid", Mailgun => "mailgun", Ses => "ses", Postmark => "postmark",
});

impl Provider {
    /// Whether omega sends email through it.
    pub fn sends_email(self) -> bool {
        matches!(
            self,
            Provider::Sendgrid
                | Provider::Mailgun
                | Provider::Ses
                | Provider::Postmark
                | Provider::Smtp
                | Provider::Sandbox
        )
    }
}

impl Channel {
    /// The channel's bit in `conversations.channels`.
    pub fn bit(self) -> i32 {
        match self {
            Channel::Sms => 1,
            Channel::Email => 2,
            Channel::Voice => 4,
            Channel::Note => 8,
        }
    }
}

impl MessageStatus {
    /// Position in the forward-only order; statuses of one rank are terminal alternatives.
    pub fn rank(self) -> u8 {
        match self {
            MessageStatus::Initiated => 0,
            // Waiting for its time (send_at, quiet hours); then queued, or canceled.
            MessageStatus::Scheduled => 1,
            MessageStatus::Queued => 2,
            MessageStatus::Sending => 3,
            MessageStatus::Sent => 4,
            MessageStatus::Received => 4,
            MessageStatus::Delivered | MessageStatus::Undelivered | MessageStatus::Failed => 5,
            MessageStatus::Canceled => 5,
            MessageStatus::Read => 6,
        }
    }
}

string_enum!(
    /// Which messages of a conversation's timeline to show.
    MessageFilterType {
        All => "all", Unread => "unread", Sms => "sms", Email => "email", Voice => "voice",
        Notes => "notes", Failed => "failed", Inbound => "inbound", Outbound => "outbound",
    }
);

string_enum!(AssignmentFilterType { All => "all", Mine => "mine", Unassigned => "unassigned", Assigned => "assigned" });
