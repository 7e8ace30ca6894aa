//! Schedule windows: when a job may run. Pure functions of a unix time, so they are tested
//! without waiting for real hours.

use serde::{Deserialize, Serialize};

/// When a job may run, and whether it repeats.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Run only inside these windows; none: at any time. A running job pauses when its
    /// window ends and resumes when the next one opens.
    #[serde(default)]
    pub windows: Vec<WindowSpec>,
    /// Minutes east of UTC in which window times are written (default 0: UTC).
    #[serde(default)]
    pub utc_offset_minutes: i32,
    /// Run a delta this many hours after each completion, until a final delta
    /// (`migratectl delta --final`, `batch complete`). Credentials are kept until then.
    /// Batches sync every 24 hours unless their template says otherwise, as Exchange
    /// Online's do; 0 means no incremental syncs.
    #[serde(default)]
    pub delta_every_hours: Option<f64>,
}

/// One window: days of the week and a time range; `to` before `from` runs past midnight.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// `Mon` … `Sun`; empty: every day. For windows past midnight, the day they start.
    #[serde(default)]
    pub days: Vec<String>,
    /// Start, `HH:MM`.
    pub from: String,
    /// End, `HH:MM` (`24:00` allowed).
    pub to: String,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn minutes(hhmm: &str) -> Option<u32> {
    let (h, m) = hhmm.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

fn day_index(day: &str) -> Option<usize> {
    let d = day.trim().to_ascii_lowercase();
    DAYS.iter().position(|x| d.starts_with(x))
}

impl ScheduleSpec {
    /// Checks the windows and the interval.
    ///
    /// # Errors
    ///
    /// A message naming the window and field.
    pub fn validate(&self) -> Result<(), String> {
        for (i, w) in self.windows.iter().enumerate() {
            let place = format!("[[schedule.windows]] #{}", i + 1);
            for (field, v) in [("from", &w.from), ("to", &w.to)] {
                if minutes(v).is_none() {
                    return Err(format!("{place} {field}: {v:?} is not a time HH:MM"));
                }
            }
            if let Some(d) = w.days.iter().find(|d| day_index(d).is_none()) {
                return Err(format!(
                    "{place} days: {d:?} is not one of Mon, Tue, Wed, Thu, Fri, Sat, Sun"
                ));
            }
        }
        if let Some(h) = self.delta_every_hours
            && !(h >= 0.0 && h.is_finite())
        {
            return Err(format!(
                "[schedule] delta_every_hours: {h} is not a number of hours (0 for no incremental syncs)"
            ));
        }
        Ok(())
    }

    /// The hours between incremental syncs, if the job has them (0 means none).
    pub fn sync_interval_hours(&self) -> Option<f64> {
        self.delta_every_hours.filter(|h| *h > 0.0)
    }

    /// Whether the job may run at `unix` (seconds).
    pub fn allows(&self, unix: u64) -> bool {
        if self.windows.is_empty() {
            return true;
        }
        let local = unix as i64 + i64::from(self.utc_offset_minutes) * 60;
        let day = local.div_euclid(86_400);
        // 1970-01-01 was a Thursday (index 3).
        let weekday = (day + 3).rem_euclid(7) as usize;
        let minute = (local.rem_euclid(86_400) / 60) as u32;
        self.windows.iter().any(|w| {
            let (Some(from), Some(to)) = (minutes(&w.from), minutes(&w.to)) else {
                return false;
            };
            let on = |d: usize| w.days.is_empty() || w.days.iter().any(|x| day_index(x) == Some(d));
            if from < to {
                on(weekday) && (from..to).contains(&minute)
            } else {
                (on(weekday) && minute >= from) || (on((weekday + 6) % 7) && minute < to)
            }
        })
    }

    /// The next time, from `unix` on, at which the job may run (within 8 days), to the minute.
    pub fn next_opening(&self, unix: u64) -> Option<u64> {
        let start = unix - unix % 60;
        (0..8 * 24 * 60)
            .map(|m| start + m * 60)
            .find(|t| self.allows(*t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2024-01-01 was a Monday.
    const MONDAY: u64 = 1_704_067_200;

    fn at(day: u64, h: u64, m: u64) -> u64 {
        MONDAY + day * 86_400 + h * 3600 + m * 60
    }

    fn nights() -> ScheduleSpec {
        ScheduleSpec {
            windows: vec![WindowSpec {
                days: vec!["Mon".into(), "Tue".into()],
                from: "19:00".into(),
                to: "07:00".into(),
            }],
            ..ScheduleSpec::default()
        }
    }

    #[test]
    fn windows_past_midnight_belong_to_the_day_they_start() {
        let s = nights();
        assert!(!s.allows(at(0, 18, 59)));
        assert!(s.allows(at(0, 19, 0)));
        assert!(s.allows(at(1, 6, 59)), "Monday night into Tuesday");
        assert!(!s.allows(at(1, 7, 0)));
        assert!(s.allows(at(2, 3, 0)), "Tuesday night into Wednesday");
        assert!(!s.allows(at(3, 3, 0)), "no Wednesday night");
    }

    #[test]
    fn the_next_opening_is_found_and_offsets_apply() {
        let s = nights();
        assert_eq!(s.next_opening(at(0, 12, 0)), Some(at(0, 19, 0)));
        assert_eq!(
            s.next_opening(at(2, 8, 0)),
            Some(at(7, 19, 0)),
            "next Monday"
        );
        let mut cet = nights();
        cet.utc_offset_minutes = 60;
        assert!(cet.allows(at(0, 18, 0)), "19:00 at UTC+1 is 18:00 UTC");
        assert!(ScheduleSpec::default().allows(at(3, 3, 3)));
    }

    #[test]
    fn bad_windows_are_named() {
        let mut s = nights();
        s.windows[0].to = "25:00".into();
        assert_eq!(
            s.validate().unwrap_err(),
            "[[schedule.windows]] #1 to: \"25:00\" is not a time HH:MM"
        );
        s.windows[0].to = "07:00".into();
        s.windows[0].days = vec!["Someday".into()];
        assert!(
            s.validate()
                .unwrap_err()
                .contains("\"Someday\" is not one of")
        );
    }
}
