//! Which messages a job copies: the `[filter]` section of a job file or batch template. A
//! message the filter leaves out is not copied and is reported as excluded, with the rule that
//! excluded it, so an administrator can tell a filtered message from a lost one.
//!
//! ```toml
//! [filter]
//! since = "2024-01-01"        # received on or after this day (UTC)
//! before = "2025-01-01"       # received before this day (UTC)
//! date_from = "received"      # or "header": the Date: header instead of INTERNALDATE
//! min_size = 0                # bytes
//! max_size = 10_000_000       # bytes
//! include_flags = ["\\Flagged"]   # only messages with one of these flags or keywords
//! exclude_flags = ["\\Deleted"]   # never messages with one of these
//! ```
//!
//! Every rule is optional; a message must pass all of them. Dates are days in UTC (`YYYY-MM-DD`)
//! or instants (`YYYY-MM-DDTHH:MM:SSZ`). A message without a `Date:` header is judged by its
//! INTERNALDATE under `date_from = "header"`. Flags compare without regard to case.
//!
//! Changing the filter of a job that already ran is safe: the next delta lists every folder
//! whole (not only what changed since), copies what the new filter lets in that the ledger does
//! not hold, and leaves what an earlier filter let in where it is.

use serde::{Deserialize, Serialize};

use crate::message::MessageMeta;

/// The `[filter]` section as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// Only messages received on or after this day or instant (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Only messages received before this day or instant (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Which date `since` and `before` look at: `received` (INTERNALDATE, default) or `header`
    /// (the `Date:` header, INTERNALDATE when a message has none).
    #[serde(default, skip_serializing_if = "DateFrom::is_received")]
    pub date_from: DateFrom,
    /// Only messages of at least this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_size: Option<u64>,
    /// Only messages of at most this many bytes (the job's `max_message_size` applies too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
    /// Only messages with at least one of these flags or keywords.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_flags: Vec<String>,
    /// Never messages with one of these flags or keywords.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_flags: Vec<String>,
}

impl FilterSpec {
    /// Whether the section sets nothing (every message passes).
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// Which date of a message the date rules look at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DateFrom {
    /// The INTERNALDATE: when the server received the message.
    #[default]
    Received,
    /// The `Date:` header: when the sender says it was written.
    Header,
}

impl DateFrom {
    fn is_received(&self) -> bool {
        *self == Self::Received
    }
}

/// A [`FilterSpec`] checked and ready to judge messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFilter {
    spec: FilterSpec,
    since: Option<i64>,
    before: Option<i64>,
    include: Vec<String>,
    exclude: Vec<String>,
}

impl MessageFilter {
    /// Checks a `[filter]` section.
    ///
    /// # Errors
    ///
    /// A message naming the field (`[filter] since: ...`) and what it accepts.
    pub fn compile(spec: &FilterSpec) -> Result<Self, String> {
        let date = |field: &str, v: &Option<String>| -> Result<Option<i64>, String> {
            v.as_deref()
                .map(|t| {
                    parse_day_or_instant(t).ok_or_else(|| {
                        format!(
                            "[filter] {field}: {t:?} is not a date; write a day as \"YYYY-MM-DD\" \
                             or an instant as \"YYYY-MM-DDTHH:MM:SSZ\" (UTC), in quotes"
                        )
                    })
                })
                .transpose()
        };
        let since = date("since", &spec.since)?;
        let before = date("before", &spec.before)?;
        if let (Some(s), Some(b)) = (since, before)
            && s >= b
        {
            return Err(format!(
                "[filter] before: {:?} is not after since = {:?}: no message could pass",
                spec.before.as_deref().unwrap_or_default(),
                spec.since.as_deref().unwrap_or_default()
            ));
        }
        if let (Some(min), Some(max)) = (spec.min_size, spec.max_size)
            && min > max
        {
            return Err(format!(
                "[filter] max_size: {max} is below min_size = {min}: no message could pass"
            ));
        }
        let flags = |field: &str, list: &[String]| -> Result<Vec<String>, String> {
            list.iter()
                .map(|f| {
                    let ok = !f.is_empty()
                        && f.chars()
                            .all(|c| c.is_ascii_graphic() && !"(){%*\"]".contains(c))
                        && (!f.starts_with('\\') || f.len() > 1);
                    if ok {
                        Ok(f.to_ascii_lowercase())
                    } else {
                        Err(format!(
                            "[filter] {field}: {f:?} is not an IMAP flag or keyword \
                             (\"\\\\Seen\", \"\\\\Flagged\", \"\\\\Deleted\", \"$Label1\", ...)"
                        ))
                    }
                })
                .collect()
        };
        Ok(Self {
            spec: spec.clone(),
            since,
            before,
            include: flags("include_flags", &spec.include_flags)?,
            exclude: flags("exclude_flags", &spec.exclude_flags)?,
        })
    }

    /// Whether every message passes.
    pub fn is_empty(&self) -> bool {
        self.spec.is_empty()
    }

    /// A fingerprint of the rules, kept with each folder's checkpoint: a delta after a change
    /// lists the folder whole. `None` for an empty filter (as before filters existed).
    pub fn fingerprint(&self) -> Option<u64> {
        if self.is_empty() {
            return None;
        }
        let s = &self.spec;
        let text = format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            self.since,
            self.before,
            s.date_from,
            s.min_size,
            s.max_size,
            self.include,
            self.exclude
        );
        let mut h = crate::message::Fnv64::default();
        h.write(text.as_bytes());
        Some(h.0)
    }

    /// Why the filter leaves a message out, naming the rule; `None` if it passes.
    pub fn excludes(&self, m: &MessageMeta) -> Option<String> {
        let s = &self.spec;
        let size = u64::from(m.size);
        if let Some(min) = s.min_size
            && size < min
        {
            return Some(format!(
                "filtered out by [filter] min_size = {min} ({size} bytes)"
            ));
        }
        if let Some(max) = s.max_size
            && size > max
        {
            return Some(format!(
                "filtered out by [filter] max_size = {max} ({size} bytes)"
            ));
        }
        let has = |f: &String| m.flags.as_slice().iter().any(|x| x.eq_ignore_ascii_case(f));
        if let Some(f) = self.exclude.iter().find(|f| has(f)) {
            let shown = s
                .exclude_flags
                .iter()
                .find(|x| x.eq_ignore_ascii_case(f))
                .unwrap_or(f);
            return Some(format!(
                "filtered out by [filter] exclude_flags ({shown} is set)"
            ));
        }
        if !self.include.is_empty() && !self.include.iter().any(has) {
            return Some(format!(
                "filtered out by [filter] include_flags (none of {} is set)",
                s.include_flags.join(", ")
            ));
        }
        if self.since.is_some() || self.before.is_some() {
            let received = parse_internal_date(&m.internal_date);
            let (when, which) = match (s.date_from, m.date) {
                (DateFrom::Header, Some(d)) => (Some(d), "Date: header"),
                _ => (received, "received"),
            };
            // A date the server sent that cannot be read is not a reason to drop mail.
            let when = when?;
            if let (Some(since), Some(text)) = (self.since, &s.since)
                && when < since
            {
                return Some(format!(
                    "filtered out by [filter] since = {text:?} ({which} {})",
                    format_instant(when)
                ));
            }
            if let (Some(before), Some(text)) = (self.before, &s.before)
                && when >= before
            {
                return Some(format!(
                    "filtered out by [filter] before = {text:?} ({which} {})",
                    format_instant(when)
                ));
            }
        }
        None
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count (the inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM:SSZ` as seconds since the epoch.
fn parse_day_or_instant(text: &str) -> Option<i64> {
    let (day, time) = match text.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t.strip_suffix('Z').unwrap_or(t))),
        None => (text, None),
    };
    let mut parts = day.split('-');
    let num = |p: Option<&str>, len: usize| -> Option<i64> {
        p.filter(|p| p.len() == len && p.bytes().all(|b| b.is_ascii_digit()))?
            .parse()
            .ok()
    };
    let (y, m, d) = (
        num(parts.next(), 4)?,
        num(parts.next(), 2)?,
        num(parts.next(), 2)?,
    );
    if parts.next().is_some() || !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let mut secs = days_from_civil(y, m, d) * 86_400;
    if let Some(t) = time {
        let mut hms = t.split(':');
        let (h, mi, s) = (
            num(hms.next(), 2)?,
            num(hms.next(), 2)?,
            num(hms.next(), 2)?,
        );
        if hms.next().is_some() || h > 23 || mi > 59 || s > 60 {
            return None;
        }
        secs += h * 3600 + mi * 60 + s;
    }
    Some(secs)
}

/// An IMAP INTERNALDATE (`17-Jul-1996 02:44:25 -0700`, the day may have one digit) as seconds
/// since the epoch; `None` if it cannot be read.
pub fn parse_internal_date(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date, rest) = text.split_once(' ')?;
    let (time, zone) = rest.trim().split_once(' ')?;
    let mut dp = date.trim().split('-');
    let d: i64 = dp.next()?.trim().parse().ok()?;
    let month = dp.next()?;
    let y: i64 = dp.next()?.parse().ok()?;
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let m = MONTHS.iter().position(|x| x.eq_ignore_ascii_case(month))? as i64 + 1;
    if d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let mut tp = time.split(':');
    let h: i64 = tp.next()?.parse().ok()?;
    let mi: i64 = tp.next()?.parse().ok()?;
    let s: i64 = tp.next()?.parse().ok()?;
    let zone = zone.trim();
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let z: i64 = zone.get(1..5)?.parse().ok()?;
    let offset = sign * ((z / 100) * 3600 + (z % 100) * 60);
    Some(days_from_civil(y, m, d) * 86_400 + h * 3600 + mi * 60 + s - offset)
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM UTC`, for reasons in reports.
fn format_instant(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        s / 3600,
        (s % 3600) / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Flags;

    fn msg(size: u32, date: &str, flags: &[&str]) -> MessageMeta {
        MessageMeta {
            uid: 1,
            size,
            flags: Flags::new(flags),
            internal_date: date.into(),
            message_id: None,
            subject: None,
            modseq: None,
            content_key: None,
            date: None,
        }
    }

    fn filter(spec: FilterSpec) -> MessageFilter {
        MessageFilter::compile(&spec).unwrap()
    }

    #[test]
    fn internal_dates_are_read_with_their_zone() {
        assert_eq!(parse_internal_date("01-Jan-1970 00:00:00 +0000"), Some(0));
        assert_eq!(parse_internal_date(" 1-Jan-1970 01:00:00 +0100"), Some(0));
        assert_eq!(
            parse_internal_date("17-Jul-1996 02:44:25 -0700"),
            Some(837_596_665)
        );
        assert_eq!(parse_internal_date("31-Feb-2020 00:00:00 +0000"), None);
        assert_eq!(parse_day_or_instant("2024-02-29"), Some(1_709_164_800));
        assert_eq!(parse_day_or_instant("2023-02-29"), None);
        assert_eq!(
            parse_day_or_instant("2024-02-29T01:00:00Z"),
            Some(1_709_168_400)
        );
        assert_eq!(format_instant(837_596_665), "1996-07-17 09:44 UTC");
    }

    #[test]
    fn date_rules_name_the_rule_and_the_date() {
        let f = filter(FilterSpec {
            since: Some("2020-01-01".into()),
            before: Some("2021-01-01".into()),
            ..FilterSpec::default()
        });
        assert_eq!(
            f.excludes(&msg(10, "15-Jun-2020 10:00:00 +0000", &[])),
            None
        );
        assert_eq!(
            f.excludes(&msg(10, "31-Dec-2019 23:00:00 -0200", &[])),
            None,
            "01:00 UTC on 1 January is inside"
        );
        assert_eq!(
            f.excludes(&msg(10, "31-Dec-2019 23:00:00 +0000", &[]))
                .unwrap(),
            "filtered out by [filter] since = \"2020-01-01\" (received 2019-12-31 23:00 UTC)"
        );
        assert_eq!(
            f.excludes(&msg(10, "01-Jan-2021 00:00:00 +0000", &[]))
                .unwrap(),
            "filtered out by [filter] before = \"2021-01-01\" (received 2021-01-01 00:00 UTC)"
        );
    }

    #[test]
    fn the_header_date_is_used_when_asked_and_present() {
        let f = filter(FilterSpec {
            since: Some("2020-01-01".into()),
            date_from: DateFrom::Header,
            ..FilterSpec::default()
        });
        let mut m = msg(10, "15-Jun-2020 10:00:00 +0000", &[]);
        assert_eq!(f.excludes(&m), None, "no Date: header: the INTERNALDATE");
        m.date = Some(0);
        assert_eq!(
            f.excludes(&m).unwrap(),
            "filtered out by [filter] since = \"2020-01-01\" (Date: header 1970-01-01 00:00 UTC)"
        );
    }

    #[test]
    fn size_and_flag_rules_name_the_rule() {
        let f = filter(FilterSpec {
            min_size: Some(100),
            max_size: Some(1000),
            exclude_flags: vec!["\\Deleted".into()],
            ..FilterSpec::default()
        });
        let d = "01-Jan-2020 00:00:00 +0000";
        assert_eq!(f.excludes(&msg(500, d, &["\\Seen"])), None);
        assert_eq!(
            f.excludes(&msg(99, d, &[])).unwrap(),
            "filtered out by [filter] min_size = 100 (99 bytes)"
        );
        assert_eq!(
            f.excludes(&msg(1001, d, &[])).unwrap(),
            "filtered out by [filter] max_size = 1000 (1001 bytes)"
        );
        assert_eq!(
            f.excludes(&msg(500, d, &["\\deleted"])).unwrap(),
            "filtered out by [filter] exclude_flags (\\Deleted is set)"
        );
        let only = filter(FilterSpec {
            include_flags: vec!["\\Flagged".into(), "$Work".into()],
            ..FilterSpec::default()
        });
        assert_eq!(only.excludes(&msg(5, d, &["$work"])), None);
        assert_eq!(
            only.excludes(&msg(5, d, &["\\Seen"])).unwrap(),
            "filtered out by [filter] include_flags (none of \\Flagged, $Work is set)"
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let err = |spec: FilterSpec| MessageFilter::compile(&spec).unwrap_err();
        assert!(
            err(FilterSpec {
                since: Some("2024-13-01".into()),
                ..FilterSpec::default()
            })
            .starts_with("[filter] since: \"2024-13-01\" is not a date")
        );
        assert!(
            err(FilterSpec {
                since: Some("2024-01-01".into()),
                before: Some("2023-01-01".into()),
                ..FilterSpec::default()
            })
            .starts_with("[filter] before: \"2023-01-01\" is not after since")
        );
        assert!(
            err(FilterSpec {
                min_size: Some(10),
                max_size: Some(5),
                ..FilterSpec::default()
            })
            .starts_with("[filter] max_size: 5 is below min_size = 10")
        );
        assert!(
            err(FilterSpec {
                exclude_flags: vec!["not a flag".into()],
                ..FilterSpec::default()
            })
            .starts_with("[filter] exclude_flags: \"not a flag\" is not an IMAP flag")
        );
    }

    #[test]
    fn the_fingerprint_follows_the_rules() {
        assert_eq!(MessageFilter::default().fingerprint(), None);
        let a = filter(FilterSpec {
            min_size: Some(1),
            ..FilterSpec::default()
        });
        let b = filter(FilterSpec {
            min_size: Some(2),
            ..FilterSpec::default()
        });
        assert!(a.fingerprint().is_some());
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), a.clone().fingerprint());
    }
}
