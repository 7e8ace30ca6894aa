//! The report of jobs as an administrator's spreadsheet reads it: the totals of a batch (or of
//! every job) and the CSV report, one row per folder, per excluded, refused, missing or removed
//! message. One implementation for `migratectl report --format csv` and the daemon's
//! [`crate::Request::ReportCsv`] (the Cockpit page's download), so both give the same bytes.
//!
//! The JSON report (`migratectl report --format json`, [`json`]) is an object of format
//! [`JSON_FORMAT`]: `{"format": 2, "totals": {..}, "jobs": [..]}`, the totals the same
//! [`Totals`] the table and the CSV lead with. `report --merge` reads it and the bare array of
//! jobs the previous releases wrote ([`read_json`]), and merges the shards' reports ([`merge`]).

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

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

    /// The average speed of the last runs, MB (10^6 bytes) per second; 0 when they took no time.
    pub fn average_mb_per_sec(&self) -> f64 {
        if self.duration > 0.0 {
            self.bytes as f64 / 1e6 / self.duration
        } else {
            0.0
        }
    }

    /// The duration and average speed of the last runs.
    pub fn speed(&self) -> String {
        format!(
            "duration {:.1} s, average {:.2} MB/s",
            self.duration,
            self.average_mb_per_sec()
        )
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

/// The totals as the JSON report's `totals` object (the names of the JSON report, for `jq`):
///
/// ```json
/// { "mailboxes": 3, "by_status": { "Completed": 2, "Failed": 1 },
///   "migrated": 1200, "copied": 1150, "copied_bytes": 9000000, "excluded": 4, "failed": 1,
///   "duration_secs": 61.5, "average_mb_per_sec": 0.15 }
/// ```
///
/// `by_status` keeps the order the statuses were first seen in, as the table's first line.
impl Serialize for Totals {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// `(status, mailboxes)` pairs as one object.
        struct ByStatus<'a>(&'a [(String, usize)]);
        impl Serialize for ByStatus<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(self.0.len()))?;
                for (status, n) in self.0 {
                    map.serialize_entry(status, n)?;
                }
                map.end()
            }
        }
        /// The object's fields, in order.
        #[derive(Serialize)]
        struct View<'a> {
            mailboxes: usize,
            by_status: ByStatus<'a>,
            migrated: u64,
            copied: u64,
            copied_bytes: u64,
            excluded: u64,
            failed: u64,
            duration_secs: f64,
            average_mb_per_sec: f64,
        }
        View {
            mailboxes: self.mailboxes,
            by_status: ByStatus(&self.by_status),
            migrated: self.migrated,
            copied: self.copied,
            copied_bytes: self.bytes,
            excluded: self.excluded,
            failed: self.failed,
            duration_secs: self.duration,
            average_mb_per_sec: self.average_mb_per_sec(),
        }
        .serialize(serializer)
    }
}

/// The version of the JSON report's shape, its `format` field. 1 was the bare array of jobs
/// (before the totals); a reader refuses a later one it does not know.
pub const JSON_FORMAT: u64 = 2;

/// The JSON report: the format, the totals, the jobs.
#[derive(Debug, Serialize)]
struct JsonReport<'a> {
    /// [`JSON_FORMAT`].
    format: u64,
    /// [`Totals::of`] the jobs.
    totals: Totals,
    /// Each job's detail: summary, folders, excluded, refused and removed messages, verification.
    jobs: &'a [JobDetail],
}

/// The JSON report of these jobs (pretty-printed): `{"format": 2, "totals": {..}, "jobs": [..]}`.
///
/// # Errors
///
/// None in practice (it writes to memory); a serialisation error is passed on.
pub fn json(details: &[JobDetail]) -> serde_json::Result<String> {
    serde_json::to_string_pretty(&JsonReport {
        format: JSON_FORMAT,
        totals: Totals::of(details),
        jobs: details,
    })
}

/// Why a text is not a JSON report [`read_json`] reads.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Not JSON, or not the jobs of a report (serde's words name the line and column).
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// An object without a `format` number: written by something else.
    #[error(
        "an object without a `format` number, not one `migratectl report --format json` writes"
    )]
    NoFormat,
    /// A format this release does not know.
    #[error(
        "format {0}, which this migratectl does not read (it reads format {JSON_FORMAT} and the bare array of earlier releases): merge with the migratectl that wrote it, or a newer one"
    )]
    Format(u64),
}

/// The jobs of a JSON report: format [`JSON_FORMAT`] (`{"format": 2, "totals": .., "jobs": [..]}`)
/// or format 1, the bare array of jobs the previous releases wrote. The totals are not read:
/// whoever needs them computes them ([`Totals::of`]) over the jobs, merged or not.
///
/// # Errors
///
/// [`ReadError`]: not JSON, not a report's jobs, or a format this release does not know.
pub fn read_json(text: &str) -> Result<Vec<JobDetail>, ReadError> {
    /// Only the format, to choose how to read the rest.
    #[derive(serde::Deserialize)]
    struct Head {
        format: Option<u64>,
    }
    /// Format 2's jobs.
    #[derive(serde::Deserialize)]
    struct Versioned {
        jobs: Vec<JobDetail>,
    }
    // Format 1: the bare array.
    if text.trim_start().starts_with('[') {
        return Ok(serde_json::from_str(text)?);
    }
    match serde_json::from_str::<Head>(text)?.format {
        Some(JSON_FORMAT) => Ok(serde_json::from_str::<Versioned>(text)?.jobs),
        Some(n) => Err(ReadError::Format(n)),
        None => Err(ReadError::NoFormat),
    }
}

/// A mailbox found in two of the reports [`merge`] was given.
#[derive(Debug, thiserror::Error)]
#[error(
    "mailbox {mailbox} is in {first} and in {second}: each mailbox belongs to one shard (give every daemon the same batch file, or the same plan)"
)]
pub struct Duplicate {
    /// The job's name.
    pub mailbox: String,
    /// The report it was first found in.
    pub first: String,
    /// The report it was found in again.
    pub second: String,
}

/// The reports of the shards of one batch, each `(where it came from, its jobs)`, as one:
/// every mailbox once, sorted by name. Its totals are [`Totals::of`] the result.
///
/// # Errors
///
/// [`Duplicate`]: a mailbox in two reports (two shards copied it: they were not given the same
/// plan), naming both.
pub fn merge(
    reports: impl IntoIterator<Item = (String, Vec<JobDetail>)>,
) -> Result<Vec<JobDetail>, Duplicate> {
    let mut from: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut details = Vec::new();
    for (source, jobs) in reports {
        for d in jobs {
            if let Some(first) = from.get(&d.summary.name) {
                return Err(Duplicate {
                    mailbox: d.summary.name.clone(),
                    first: first.clone(),
                    second: source,
                });
            }
            from.insert(d.summary.name.clone(), source.clone());
            details.push(d);
        }
    }
    details.sort_by(|a, b| a.summary.name.cmp(&b.summary.name));
    Ok(details)
}

/// The columns of the CSV report, in order.
pub const CSV_COLUMNS: [&str; 20] = [
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
    "renamed",
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
                ("renamed", f.renamed.clone().unwrap_or_default()),
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
mod tests;
