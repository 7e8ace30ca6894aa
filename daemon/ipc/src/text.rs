//! Text both binaries print the same way: the per-folder table and clock times.

use std::fmt::Write;

use migrated_core::FolderReport;

/// `HH:MM:SS` of a unix time (UTC).
pub fn clock(unix: u64) -> String {
    let s = unix % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
}

/// `YYYY-MM-DD HH:MM:SS` of a unix time (UTC).
pub fn date_time(unix: u64) -> String {
    // Days to a civil date (Howard Hinnant's algorithm), valid for every u64 time here.
    let z = (unix / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {}", clock(unix))
}

/// The per-folder table: names on both sides, messages, copied now, copied before, excluded,
/// failed, and the folder's error if any.
pub fn folder_table(rows: &[FolderReport]) -> String {
    let mut out = format!(
        "{:<36} {:<36} {:>8} {:>8} {:>8} {:>8} {:>6}\n",
        "SOURCE FOLDER", "DESTINATION", "MESSAGES", "COPIED", "BEFORE", "EXCLUDED", "FAILED"
    );
    for f in rows {
        let _ = writeln!(
            out,
            "{:<36} {:<36} {:>8} {:>8} {:>8} {:>8} {:>6}{}{}",
            f.source,
            f.destination,
            f.messages,
            f.copied,
            f.already_copied,
            f.excluded,
            f.failed,
            f.error
                .as_deref()
                .map(|e| format!("  error: {e}"))
                .unwrap_or_default(),
            f.renamed
                .as_deref()
                .map(|why| format!("  renamed: {why}"))
                .unwrap_or_default()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn date_times_are_civil_dates_in_utc() {
        assert_eq!(super::date_time(0), "1970-01-01 00:00:00");
        assert_eq!(super::date_time(951_825_600), "2000-02-29 12:00:00");
        assert_eq!(super::date_time(1_796_601_600), "2026-12-07 00:00:00");
    }

    #[test]
    fn clock_times_wrap_at_midnight() {
        assert_eq!(super::clock(1_704_067_200 + 9 * 3600 + 61), "09:01:01");
    }
}
