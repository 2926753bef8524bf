//! Quiet hours at send time: a message of a category the business holds back is not sent
//! inside its quiet hours, in the sending location's zone; it waits, `scheduled`, for their
//! end. The rules are read at most once per [`LOOKUP_TTL`] per business and location, so a
//! change of settings applies within that time.
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use entities::cache::{LOOKUP_MAX, LOOKUP_TTL, TtlCache};
use entities::outbound::SendJob;
use entities::quiet::QuietHours;
use entities::types::MessageCategory;
use sea_orm::{DatabaseConnection, EntityTrait};

type Rule = Option<(QuietHours, Tz, Vec<MessageCategory>)>;

pub struct QuietRules {
    rules: TtlCache<(i64, Option<i64>), Rule>,
}

impl Default for QuietRules {
    fn default() -> Self {
        QuietRules {
            rules: TtlCache::new(LOOKUP_TTL, LOOKUP_MAX),
        }
    }
}

impl QuietRules {
    /// When the job's message may go, if not now.
    pub async fn hold_until(
        &self,
        db: &DatabaseConnection,
        job: &SendJob,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, entities::Error> {
        let (business_id, location_id) = (job.batch.business_id, job.batch.location_id);
        let rule = self
            .rules
            .get_or_load(
                &(business_id, location_id),
                load(db, business_id, location_id),
            )
            .await?;
        Ok(rule.and_then(|(quiet, zone, categories)| {
            let held = job.batch.category.is_some_and(|c| categories.contains(&c));
            held.then(|| quiet.hold_until(zone, now)).flatten()
        }))
    }
}

async fn load(
    db: &DatabaseConnection,
    business_id: i64,
    location_id: Option<i64>,
) -> Result<Rule, entities::Error> {
    let settings = entities::settings::get(db, business_id).await?;
    let Some(quiet) = settings.quiet_hours else {
        return Ok(None);
    };
    let business = entities::business::Entity::find_by_id(business_id)
        .one(db)
        .await?;
    let location = match location_id {
        Some(id) => {
            entities::location::Entity::find_by_id((business_id, id))
                .one(db)
                .await?
        }
        None => None,
    };
    let zone = entities::quiet::zone(
        location.and_then(|l| l.timezone).as_deref(),
        business.map(|b| b.timezone).as_deref(),
    );
    Ok(Some((quiet, zone, settings.quiet_categories)))
}
