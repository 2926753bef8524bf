//! What a business may send from. Many businesses share omega and often one provider
//! account, so a From the request names is checked against what the onboarding data says the
//! business owns: by the ingress before it queues (422) and by the worker again before it
//! sends (the data may have changed in between).
//!
//! - A number: one of its locations' numbers. A number that no location holds is allowed
//!   only through the business's own Twilio account (not the shared one), where Twilio itself
//!   refuses numbers that are not on that account; a number another business's location holds
//!   never is.
//! - An address: one of its locations' addresses, its own email account's sender, or any
//!   address on a domain it owns (`email_domains`, or its own email account's domain).
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::query::json_strings;
use crate::{Result, business, location};

/// Whether `business_id` may send SMS from `number`, given the location that holds the
/// number (if any) and whether it sends through its own Twilio account. Err: why not.
pub fn number_verdict(
    business_id: i64,
    holder: Option<&location::Model>,
    own_twilio_account: bool,
) -> Result<(), &'static str> {
    match holder {
        Some(l) if l.business_id == business_id => Ok(()),
        Some(_) => Err("this number belongs to another business"),
        None if own_twilio_account => Ok(()),
        None => Err("this number is not one of the business's locations' numbers"),
    }
}

/// Whether `business_id` may send email from `address`. `own_sender` is its own email
/// account's sender address, if it has one. Err: why not.
pub async fn address_verdict(
    db: &impl ConnectionTrait,
    business_id: i64,
    address: &str,
    own_sender: Option<&str>,
) -> Result<Result<(), &'static str>> {
    let address = address.trim().to_ascii_lowercase();
    let domain_of = |a: &str| a.rsplit_once('@').map(|(_, d)| d.to_owned());
    let Some(domain) = domain_of(&address) else {
        return Ok(Err("this is not an email address"));
    };
    if let Some(own) = own_sender.map(str::to_ascii_lowercase)
        && (own == address || domain_of(&own).as_deref() == Some(domain.as_str()))
    {
        return Ok(Ok(()));
    }
    let owned = business::Entity::find_by_id(business_id)
        .one(db)
        .await?
        .map(|b| json_strings(&b.email_domains))
        .unwrap_or_default();
    if owned.iter().any(|d| d.eq_ignore_ascii_case(&domain)) {
        return Ok(Ok(()));
    }
    let locations = location::Entity::find()
        .filter(location::Column::BusinessId.eq(business_id))
        .filter(location::Column::Email.is_not_null())
        .all(db)
        .await?;
    if locations
        .iter()
        .filter_map(|l| l.email.as_deref())
        .any(|e| e.trim().eq_ignore_ascii_case(&address))
    {
        return Ok(Ok(()));
    }
    Ok(Err(
        "this address is not one of the business's: use a location's address or one on a domain it owns",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(business_id: i64) -> location::Model {
        location::Model {
            business_id,
            id: 1,
            name: "Main".into(),
            phone_number: Some("+14155550100".into()),
            email: None,
            timezone: None,
            updated_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn numbers_belong_to_one_business() {
        assert!(number_verdict(1, Some(&at(1)), false).is_ok());
        assert!(number_verdict(1, Some(&at(2)), false).is_err());
        assert!(number_verdict(1, Some(&at(2)), true).is_err());
        assert!(number_verdict(1, None, false).is_err());
        assert!(number_verdict(1, None, true).is_ok());
    }
}
