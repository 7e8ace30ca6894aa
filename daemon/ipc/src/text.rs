//! Text both binaries print the same way: the per-folder table and clock times.

use std::fmt::Write;

use migrated_core::FolderReport;

/// `HH:MM:SS` of a unix time (UTC).
pub fn clock(unix: u64) -> String {
    let s = unix % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
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
            "{:<36} {:<36} {:>8} {:>8} {:>8} {:>8} {:>6}{}",
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
                .unwrap_or_default()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn clock_times_wrap_at_midnight() {
        assert_eq!(super::clock(1_704_067_200 + 9 * 3600 + 61), "09:01:01");
    }
}
