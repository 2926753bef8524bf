//! Quiet hours: the local hours in which a business's marketing-like messages are not sent
//! (US rules allow marketing texts 8 a.m.–9 p.m. in the recipient's time; CASL and carrier
//! codes say the same). Pure functions of the clock and the zone, so tests cover midnight and
//! daylight-saving changes without waiting.
use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// A daily quiet period, `start` to `end` local time; it spans midnight when `start > end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuietHours {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

/// `HH:MM`, 00:00 to 23:59.
pub fn parse_time(s: &str) -> Option<NaiveTime> {
    let t = NaiveTime::parse_from_str(s, "%H:%M").ok()?;
    (s.len() == 5).then_some(t)
}

/// The form `parse_time` reads.
pub fn format_time(t: NaiveTime) -> String {
    t.format("%H:%M").to_string()
}

impl QuietHours {
    /// None unless both times are `HH:MM` and differ.
    pub fn parse(start: &str, end: &str) -> Option<QuietHours> {
        let (start, end) = (parse_time(start)?, parse_time(end)?);
        (start != end).then_some(QuietHours { start, end })
    }

    /// If `now` falls in a quiet period in `tz`, the instant the period ends (when the message
    /// may go); None when it may go now.
    pub fn hold_until(&self, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&tz).naive_local();
        let (date, time) = (local.date(), local.time());
        let spans_midnight = self.start > self.end;
        let inside = if spans_midnight {
            time >= self.start || time < self.end
        } else {
            time >= self.start && time < self.end
        };
        if !inside {
            return None;
        }
        // The end is later today, unless the period began today and ends tomorrow.
        let end_date = if spans_midnight && time >= self.start {
            date.succ_opt()?
        } else {
            date
        };
        Some(instant(tz, end_date.and_time(self.end)))
    }
}

/// A local wall time as an instant. A time the clock skips (spring forward) becomes the first
/// moment after the gap; a time that happens twice (fall back), its first occurrence.
fn instant(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let mut probe = local;
    // Gaps are at most a few hours; step forward a minute at a time to the first valid one.
    for _ in 0..(24 * 60) {
        match tz.from_local_datetime(&probe) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                return t.with_timezone(&Utc);
            }
            LocalResult::None => probe += Duration::minutes(1),
        }
    }
    Utc.from_utc_datetime(&local)
}

/// The zone a location sends in: its own, else its business's, else UTC (a name omega does
/// not know counts as none).
pub fn zone(location: Option<&str>, business: Option<&str>) -> Tz {
    location
        .and_then(|z| z.parse().ok())
        .or_else(|| business.and_then(|z| z.parse().ok()))
        .unwrap_or(Tz::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn evenings() -> QuietHours {
        QuietHours::parse("21:00", "08:00").unwrap()
    }

    #[test]
    fn times_are_hh_mm_and_a_period_is_not_empty() {
        assert!(QuietHours::parse("21:00", "08:00").is_some());
        assert!(QuietHours::parse("9:00", "08:00").is_none());
        assert!(QuietHours::parse("24:00", "08:00").is_none());
        assert!(QuietHours::parse("21:00", "21:00").is_none());
        assert!(QuietHours::parse("21:00:00", "08:00").is_none());
    }

    #[test]
    fn a_period_across_midnight() {
        let ny = chrono_tz::America::New_York;
        let q = evenings();
        // 23:30 EST: held to 08:00 EST the next day.
        assert_eq!(
            q.hold_until(ny, utc("2026-12-04T04:30:00Z")),
            Some(utc("2026-12-04T13:00:00Z"))
        );
        // 07:59 EST: to 08:00 the same day; 08:00 and 20:59 go; 21:00 is held.
        assert_eq!(
            q.hold_until(ny, utc("2026-12-04T12:59:00Z")),
            Some(utc("2026-12-04T13:00:00Z"))
        );
        assert_eq!(q.hold_until(ny, utc("2026-12-04T13:00:00Z")), None);
        assert_eq!(q.hold_until(ny, utc("2026-12-05T01:59:00Z")), None);
        assert_eq!(
            q.hold_until(ny, utc("2026-12-05T02:00:00Z")),
            Some(utc("2026-12-05T13:00:00Z"))
        );
    }

    #[test]
    fn a_period_within_a_day() {
        let q = QuietHours::parse("12:00", "13:00").unwrap();
        let london = chrono_tz::Europe::London;
        assert_eq!(
            q.hold_until(london, utc("2026-12-03T12:30:00Z")),
            Some(utc("2026-12-03T13:00:00Z"))
        );
        assert_eq!(q.hold_until(london, utc("2026-12-03T13:30:00Z")), None);
        assert_eq!(q.hold_until(london, utc("2026-12-03T11:59:00Z")), None);
    }

    #[test]
    fn the_end_is_local_across_daylight_saving_changes() {
        let ny = chrono_tz::America::New_York;
        // The night the clocks go forward (2026-03-08, 02:00 EST -> 03:00 EDT): 22:00 EST
        // is held to 08:00 EDT, which is 12:00Z, not 13:00Z.
        assert_eq!(
            evenings().hold_until(ny, utc("2026-03-08T03:00:00Z")),
            Some(utc("2026-03-08T12:00:00Z"))
        );
        // An end the clock skips (02:30 that night) is the first moment after the gap.
        let q = QuietHours::parse("22:00", "02:30").unwrap();
        assert_eq!(
            q.hold_until(ny, utc("2026-03-08T06:00:00Z")),
            Some(utc("2026-03-08T07:00:00Z"))
        );
        // The night they go back (2026-11-01, 01:00-02:00 twice): an end at 01:30 is the
        // first 01:30 (EDT).
        let q = QuietHours::parse("21:00", "01:30").unwrap();
        assert_eq!(
            q.hold_until(ny, utc("2026-11-01T03:00:00Z")),
            Some(utc("2026-11-01T05:30:00Z"))
        );
        // Sydney's clocks go back on 2026-04-05 (03:00 AEDT -> 02:00 AEST): 08:00 is AEST.
        let sydney = chrono_tz::Australia::Sydney;
        assert_eq!(
            evenings().hold_until(sydney, utc("2026-04-04T12:00:00Z")),
            Some(utc("2026-04-04T22:00:00Z"))
        );
    }

    #[test]
    fn half_hour_zones_and_fallbacks() {
        let kolkata = chrono_tz::Asia::Kolkata;
        // 21:30 IST: held to 08:00 IST, 02:30Z.
        assert_eq!(
            evenings().hold_until(kolkata, utc("2026-12-03T16:00:00Z")),
            Some(utc("2026-12-04T02:30:00Z"))
        );
        assert_eq!(zone(Some("Asia/Kolkata"), Some("UTC")), kolkata);
        assert_eq!(
            zone(Some("Mars/Olympus"), Some("America/New_York")),
            chrono_tz::America::New_York
        );
        assert_eq!(zone(None, Some("nowhere")), Tz::UTC);
    }
}
