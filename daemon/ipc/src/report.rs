//! The report of jobs as an administrator's spreadsheet reads it: the totals of a batch (or of
//! every job) and the CSV report, one row per folder, per excluded, refused, missing or removed
//! message. One implementation for `migratectl report --format csv` and the daemon's
//! [`crate::Request::ReportCsv`] (the Cockpit page's download), so both give the same bytes.

use crate::JobDetail;
use crate::protocol::JobSummary;

/// The status words of a job in reports.
pub fn status_label(s: &JobSummary) -> String {
    s.status
        .map_or_else(|| "unknown".to_owned(), |s| s.to_string())
}

/// What a batch (or every job) comes to, for the first lines of a report.
#[derive(Debug, Default)]
pub struct Totals {
    /// Jobs in the report.
    pub mailboxes: usize,
    /// `(status, mailboxes)`, in the order first seen.
    pub by_status: Vec<(String, usize)>,
    /// Messages on the destination from any run (copied now or before, by the ledger).
    pub migrated: u64,
    /// Messages copied by each mailbox's last run.
    pub copied: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Messages excluded by the last runs.
    pub excluded: u64,
    /// Messages refused by the last runs.
    pub failed: u64,
    /// Seconds of the last runs, added up.
    pub duration: f64,
}

impl Totals {
    /// The totals of these jobs.
    pub fn of(details: &[JobDetail]) -> Self {
        let mut t = Self {
            mailboxes: details.len(),
            ..Self::default()
        };
        for d in details {
            let status = status_label(&d.summary);
            match t.by_status.iter_mut().find(|(s, _)| *s == status) {
                Some((_, n)) => *n += 1,
                None => t.by_status.push((status, 1)),
            }
            t.migrated += d
                .folders
                .iter()
                .map(|f| f.copied + f.already_copied)
                .sum::<u64>();
            t.copied += d.summary.items_done;
            t.bytes += d.summary.bytes_done;
            t.excluded += d.summary.excluded;
            t.failed += d.summary.failed;
            t.duration += d.duration_secs;
        }
        t
    }

    /// `N Status, M Status`.
    pub fn statuses(&self) -> String {
        self.by_status
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The duration and average speed of the last runs.
    pub fn speed(&self) -> String {
        let avg = if self.duration > 0.0 {
            self.bytes as f64 / 1e6 / self.duration
        } else {
            0.0
        };
        format!("duration {:.1} s, average {avg:.2} MB/s", self.duration)
    }

    /// The totals as the table report's first lines.
    pub fn text(&self) -> String {
        format!(
            "Totals: {} mailboxes ({})\n  messages migrated {}; copied by the last runs {} ({:.1} MB); excluded {}; refused {}\n  {} (the last runs)\n",
            self.mailboxes,
            self.statuses(),
            self.migrated,
            self.copied,
            self.bytes as f64 / 1e6,
            self.excluded,
            self.failed,
            self.speed()
        )
    }
}

/// The columns of the CSV report, in order.
pub const CSV_COLUMNS: [&str; 19] = [
    "record",
    "job",
    "status",
    "folder",
    "destination",
    "messages",
    "copied",
    "already_copied",
    "excluded",
    "failed",
    "uid",
    "size",
    "message_id",
    "reason",
    "subject",
    "removed",
    "source_removed",
    "dest_uid",
    "date",
];

/// One CSV row: its cells by column name, the others empty.
fn row(cells: &[(&str, String)]) -> Vec<String> {
    CSV_COLUMNS
        .iter()
        .map(|c| {
            cells
                .iter()
                .find(|(name, _)| name == c)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        })
        .collect()
}

/// The cells of a message row (excluded, refused, missing): where it is and why.
fn item_cells(i: &migrated_core::ItemRow) -> [(&'static str, String); 6] {
    [
        ("folder", i.folder.clone()),
        ("uid", i.uid.to_string()),
        ("size", i.size.to_string()),
        ("message_id", i.message_id.clone().unwrap_or_default()),
        ("reason", i.reason.clone()),
        ("subject", i.subject.clone().unwrap_or_default()),
    ]
}

/// The CSV report of these jobs: the totals row, then for each job a row per folder, per
/// excluded and refused message, per folder verified and message missing, and per message
/// removed (`sync_deletions`, `source_after_copy`; the first ones of each folder, the folder
/// row's `removed` and `source_removed` count them all).
///
/// # Errors
///
/// None in practice (it writes to memory); a CSV error is passed on.
pub fn csv(details: &[JobDetail]) -> Result<String, csv::Error> {
    let totals = Totals::of(details);
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(CSV_COLUMNS)?;
    let n = |v: u64| v.to_string();
    // The totals first: `messages` migrated, `copied` by the last runs (`size` their bytes).
    w.write_record(row(&[
        ("record", "totals".into()),
        ("job", format!("{} mailboxes", totals.mailboxes)),
        ("status", totals.statuses()),
        ("messages", n(totals.migrated)),
        ("copied", n(totals.copied)),
        ("excluded", n(totals.excluded)),
        ("failed", n(totals.failed)),
        ("size", n(totals.bytes)),
        ("reason", totals.speed()),
    ]))?;
    for d in details {
        let s = &d.summary;
        let status = status_label(s);
        let job = |kind: &str| {
            vec![
                ("record", kind.to_owned()),
                ("job", s.name.clone()),
                ("status", status.clone()),
            ]
        };
        for f in &d.folders {
            let mut cells = job("folder");
            cells.extend([
                ("folder", f.source.clone()),
                ("destination", f.destination.clone()),
                ("messages", n(f.messages)),
                ("copied", n(f.copied)),
                ("already_copied", n(f.already_copied)),
                ("excluded", n(f.excluded)),
                ("failed", n(f.failed)),
                ("reason", f.error.clone().unwrap_or_default()),
                ("removed", n(f.removed)),
                ("source_removed", n(f.source_removed)),
            ]);
            w.write_record(row(&cells))?;
        }
        for (kind, items) in [("excluded", &d.excluded), ("failed", &d.failed)] {
            for i in items {
                let mut cells = job(kind);
                cells.extend(item_cells(i));
                w.write_record(row(&cells))?;
            }
        }
        // The verification: a row per folder (source count in `messages`, destination count in
        // `copied`), then a row per message missing on the destination.
        for v in &d.verification {
            let mut cells = job("verified");
            cells.extend([
                ("folder", v.source.clone()),
                ("destination", v.destination.clone()),
                ("messages", n(v.source_messages)),
                ("copied", n(v.destination_messages)),
                ("failed", v.missing.len().to_string()),
                ("size", n(v.source_bytes)),
                (
                    "reason",
                    format!(
                        "source {} messages, {} bytes; destination {} messages, {} bytes",
                        v.source_messages,
                        v.source_bytes,
                        v.destination_messages,
                        v.destination_bytes
                    ),
                ),
            ]);
            w.write_record(row(&cells))?;
            for i in &v.missing {
                let mut cells = job("missing");
                cells.push(("destination", v.destination.clone()));
                cells.extend(item_cells(i));
                w.write_record(row(&cells))?;
            }
        }
        // Removed messages: `uid` on the source, `dest_uid` on the destination, `date` the
        // INTERNALDATE, `reason` what was done.
        for r in &d.removed {
            let mut cells = job("removed");
            cells.extend([
                ("folder", r.folder.clone()),
                ("destination", r.destination.clone()),
                ("uid", r.uid.to_string()),
                ("size", n(r.size)),
                ("message_id", r.message_id.clone().unwrap_or_default()),
                ("reason", r.removal.label().to_owned()),
                ("dest_uid", r.dest_uid.to_string()),
                ("date", r.date.clone().unwrap_or_default()),
            ]);
            w.write_record(row(&cells))?;
        }
    }
    w.flush()?;
    let bytes = w
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use migrated_core::{FolderReport, Removal, RemovedRow};

    #[test]
    fn the_csv_report_has_a_row_per_removed_message_with_both_uids() {
        let detail = JobDetail {
            summary: JobSummary {
                name: "alice".into(),
                ..JobSummary::default()
            },
            folders: vec![FolderReport {
                source: "INBOX".into(),
                destination: "INBOX".into(),
                removed: 1,
                ..FolderReport::default()
            }],
            removed: vec![RemovedRow {
                folder: "INBOX".into(),
                destination: "INBOX".into(),
                uid: 4,
                dest_uid: 9,
                message_id: Some("<m4@x>".into()),
                size: 120,
                date: Some("01-Jun-2021 00:00:00 +0000".into()),
                removal: Removal::DestinationExpunged,
            }],
            ..JobDetail::default()
        };
        let text = csv(&[detail]).unwrap();
        let mut r = ::csv::Reader::from_reader(text.as_bytes());
        let head = r.headers().unwrap().clone();
        let col = |n: &str| head.iter().position(|h| h == n).unwrap();
        let rows: Vec<_> = r.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 3, "{text}");
        assert_eq!(&rows[1][col("removed")], "1");
        let removed = &rows[2];
        assert_eq!(&removed[col("record")], "removed");
        assert_eq!(
            (&removed[col("uid")], &removed[col("dest_uid")]),
            ("4", "9")
        );
        assert_eq!(&removed[col("message_id")], "<m4@x>");
        assert_eq!(&removed[col("date")], "01-Jun-2021 00:00:00 +0000");
    }
}
