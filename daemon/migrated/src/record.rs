//! The job record the store keeps (sealed): the spec with its credentials until they are
//! erased, the status, and the report of the last run.

use migrated_core::{FolderReport, ItemRow, JobSpec, JobStatus, VerifyRow};
use migrated_ipc::{AlertRow, EventRow, JobDetail, JobSummary};
use serde::{Deserialize, Serialize};

/// The format of [`JobRecord`] this build writes.
///
/// - 0: records without a version (up to commit c6e85a1): their report rows were the control
///   API's (the same serde names as core's, per folder without `bytes` and `flags_updated`).
/// - 1: the report rows are core's ([`FolderReport`], [`ItemRow`], [`VerifyRow`]).
/// - 2: the record keeps the job's alerts (`alerts`, `next_alert`); a record of format 1 has
///   none. Format 2 is written so that a release of format 1, which would drop the alerts
///   when it writes the record back, refuses it instead.
/// - 3: the run keeps the messages it removed (`run.removed`); a record of format 2 has none.
///   Written as 3 so that a release of format 2 refuses it rather than drop the list.
///
/// A later format adds a step to [`JobRecord::upgrade`] and a store fixture of the release
/// before it (tests/fixtures/, tests/suite/store_upgrade.rs).
pub(crate) const RECORD_VERSION: u32 = 3;

/// What the store keeps of a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JobRecord {
    /// The record's format ([`RECORD_VERSION`] when written by this build; 0 when absent).
    #[serde(default)]
    pub version: u32,
    /// Generated id: the only job reference that appears in store keys.
    pub id: String,
    /// What the administrator asked for. Secrets are erased when the job completes.
    pub spec: JobSpec,
    /// Lifecycle status.
    pub status: JobStatus,
    /// Unix times.
    pub created: u64,
    /// Last status change.
    pub updated: u64,
    /// When it reached Completed, Completed with errors, Cancelled or Failed (retention counts
    /// from here); none while it is queued or waiting to run again.
    pub finished: Option<u64>,
    /// The last error, in the server's words.
    pub error: Option<String>,
    /// A cancel was asked while running: the run ends as Cancelled, not Stopped.
    pub cancel_requested: bool,
    /// The current or last run.
    pub run: RunReport,
    /// Next event sequence number.
    pub next_event: u64,
    /// The batch this job belongs to, if any.
    #[serde(default)]
    pub batch: Option<String>,
    /// The drop-in file this job comes from: `(file name, content fingerprint)`.
    #[serde(default)]
    pub dropin: Option<(String, String)>,
    /// The run in progress or last run was the final delta: no more recurring deltas, and the
    /// credentials are erased at its completion.
    #[serde(default)]
    pub final_delta: bool,
    /// It completed once: its runs now are incremental syncs (for endpoint limits).
    #[serde(default)]
    pub completed_once: bool,
    /// Its alerts not cleared yet, oldest first (at most `--alerts-per-job`): kept with the
    /// job so that retention sweeps them with it.
    #[serde(default)]
    pub alerts: Vec<AlertRow>,
    /// Number of the next alert (alert ids are `JOBID:N`).
    #[serde(default)]
    pub next_alert: u64,
}

/// Figures of the current or last run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct RunReport {
    pub source_connection: Option<String>,
    /// Unix time until which the server asked us to wait.
    pub throttled_until: Option<u64>,
    pub destination_connection: Option<String>,
    pub items_total: u64,
    pub items_done: u64,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub current_folder: Option<String>,
    pub folders: Vec<FolderReport>,
    pub excluded: Vec<ItemRow>,
    pub failed: Vec<ItemRow>,
    pub duration_secs: f64,
    /// The last verification (kept over runs that changed nothing).
    pub verification: Vec<VerifyRow>,
    pub verified_at: Option<u64>,
    /// Where the last mail run's time went, phase by phase.
    pub timings: Vec<migrated_core::PhaseTime>,
    /// The messages the run removed, the first of each folder and side
    /// ([`migrated_core::REMOVED_LISTED_PER_FOLDER`]).
    pub removed: Vec<migrated_core::RemovedRow>,
}

/// Seconds since the epoch: the wall clock the manager reads (schedule windows, recurring
/// deltas, retention, event times). The deciders take the time as an argument; the end-to-end
/// schedule test moves this clock from outside with libfaketime.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A record of a later release than this build: it is not read, so that nothing of it is lost
/// by writing it back in an older format.
#[derive(Debug)]
pub(crate) struct LaterRecord {
    id: String,
    found: u32,
}

impl std::fmt::Display for LaterRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "job {} was written by a later release of migrated (job record format {}; this build reads formats up to {RECORD_VERSION}): run that release again, or restore the store from a backup made before it ran",
            self.id, self.found
        )
    }
}

impl std::error::Error for LaterRecord {}

impl JobRecord {
    /// Brings a record read from the store to this build's format; whether it changed (and
    /// must be written back).
    ///
    /// # Errors
    ///
    /// [`LaterRecord`] for a record of a later format.
    pub(crate) fn upgrade(&mut self) -> Result<bool, LaterRecord> {
        match self.version {
            RECORD_VERSION => Ok(false),
            // 0 -> 1: the rows' new fields (`bytes`, `flags_updated`) read as 0 by their serde
            // defaults; nothing else changed shape. 1 -> 2: no alerts yet (serde defaults).
            // 2 -> 3: no removed messages listed (serde default).
            0..=2 => {
                self.version = RECORD_VERSION;
                Ok(true)
            }
            found => Err(LaterRecord {
                id: self.id.clone(),
                found,
            }),
        }
    }

    pub(crate) fn summary(&self) -> JobSummary {
        let side = |e: &migrated_core::EndpointSpec| format!("{}@{}", e.user, e.host);
        JobSummary {
            id: self.id.clone(),
            name: self.spec.name.clone(),
            status: Some(self.status),
            priority: self.spec.priority,
            tags: self.spec.tags.clone(),
            source: side(&self.spec.source),
            destination: side(&self.spec.destination),
            items_total: self.run.items_total,
            items_done: self.run.items_done,
            bytes_total: self.run.bytes_total,
            bytes_done: self.run.bytes_done,
            current_folder: self.run.current_folder.clone(),
            created: self.created,
            updated: self.updated,
            error: self.error.clone(),
            excluded: self.run.excluded.len() as u64,
            source_connection: self.run.source_connection.clone(),
            destination_connection: self.run.destination_connection.clone(),
            throttled_until: self.run.throttled_until,
            credentials: self.has_credentials(),
            failed: self.run.failed.len() as u64,
        }
    }

    pub(crate) fn detail(&self, events: Vec<EventRow>) -> JobDetail {
        JobDetail {
            summary: self.summary(),
            folders: self.run.folders.clone(),
            excluded: self.run.excluded.clone(),
            failed: self.run.failed.clone(),
            duration_secs: self.run.duration_secs,
            events,
            verification: self.run.verification.clone(),
            verified_at: self.run.verified_at,
            timings: self.run.timings.clone(),
            removed: self.run.removed.clone(),
            removed_listed_per_folder: migrated_core::REMOVED_LISTED_PER_FOLDER as u64,
        }
    }

    /// Erases the credentials (at completion): a finished job keeps no secret.
    pub(crate) fn erase_credentials(&mut self) {
        self.spec.source.erase_secrets();
        self.spec.destination.erase_secrets();
    }

    /// Whether completion erases the credentials: always, unless recurring deltas still need
    /// them (until the final delta).
    pub(crate) fn erase_at_completion(&self) -> bool {
        self.spec.schedule.sync_interval_hours().is_none() || self.final_delta
    }

    /// Whether recurring syncs are still to run: completed, with `delta_every_hours`, and no
    /// final delta yet. Such a job keeps its credentials and is not swept by retention.
    pub(crate) fn syncs_pending(&self) -> bool {
        matches!(
            self.status,
            JobStatus::Completed | JobStatus::CompletedWithErrors
        ) && !self.erase_at_completion()
    }

    /// Whether both sides have the secret they log in with (the user's, or the
    /// administrator's for a side with `admin_user`).
    pub(crate) fn has_credentials(&self) -> bool {
        self.spec.source.login_secret().is_some() && self.spec.destination.login_secret().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job record as the store kept it before `security` and `auth` became enums and the
    /// daemon was split (commit 80aae6d), written by that code with every field set.
    const RECORD_V0: &[u8] = include_bytes!("testdata/job-record-v0.msgpack");

    #[test]
    fn a_record_written_by_the_previous_release_reads_with_every_field() {
        let r: JobRecord = rmp_serde::from_slice(RECORD_V0).expect("the old record decodes");
        assert_eq!(
            (r.id.as_str(), r.status),
            ("j0123456789ab", JobStatus::Copying)
        );
        assert_eq!(r.spec.name, "alice@example.org");
        assert_eq!(r.spec.source.host, "old.example.org");
        assert_eq!(r.spec.source.port, Some(1143));
        assert_eq!(r.spec.source.security.as_str(), "starttls");
        assert_eq!(r.spec.source.auth.as_str(), "plain");
        assert_eq!(r.spec.destination.security.as_str(), "plain");
        assert_eq!(r.spec.destination.auth.as_str(), "login");
        assert_eq!(
            r.spec
                .source
                .password
                .as_ref()
                .map(migrated_core::Secret::expose),
            Some("source-secret-0")
        );
        assert!(r.has_credentials());
        assert_eq!(r.spec.tags, ["staff", "wave-1"]);
        assert_eq!(r.spec.limits.connections, 2);
        assert_eq!(r.spec.schedule.delta_every_hours, Some(24.0));
        assert_eq!(r.spec.folders.rename.len(), 1);
        assert_eq!((r.run.items_done, r.run.items_total), (400, 1000));
        assert_eq!(r.run.folders[0].copied, 400);
        assert_eq!(r.run.failed[0].reason, "NO [LIMIT] too big");
        assert_eq!(r.run.verification[0].missing.len(), 1);
        assert_eq!(r.next_event, 42);
        assert_eq!(r.batch.as_deref(), Some("staff"));
        assert_eq!(
            r.dropin,
            Some(("staff.toml".into(), "abcdef0123456789-120".into()))
        );
        assert_eq!(r.version, 0);
        let mut r = r;
        assert!(r.upgrade().expect("a format-0 record upgrades"));
        assert_eq!(r.version, RECORD_VERSION);
        assert!(!r.upgrade().unwrap(), "an upgraded record stays as it is");
        // It writes back in the current format and reads again the same.
        let again: JobRecord =
            rmp_serde::from_slice(&rmp_serde::to_vec_named(&r).unwrap()).unwrap();
        assert_eq!(again.spec.source.security, r.spec.source.security);
        assert_eq!(again.run.items_done, 400);
        assert_eq!(again.version, RECORD_VERSION);
    }

    #[test]
    fn a_record_of_format_1_reads_with_no_alerts_and_upgrades() {
        let mut r: JobRecord = rmp_serde::from_slice(RECORD_V0).unwrap();
        r.version = 1;
        // Format 1 as that release wrote it: no `alerts`, no `next_alert`.
        let mut v = serde_json::to_value(&r).unwrap();
        let map = v.as_object_mut().unwrap();
        assert!(map.remove("alerts").is_some() && map.remove("next_alert").is_some());
        let bytes = rmp_serde::to_vec_named(&v).unwrap();
        let mut r: JobRecord = rmp_serde::from_slice(&bytes).expect("a format-1 record decodes");
        assert!(r.alerts.is_empty());
        assert_eq!(r.next_alert, 0);
        assert_eq!(r.next_event, 42);
        assert!(r.upgrade().expect("a format-1 record upgrades"));
        assert_eq!(r.version, RECORD_VERSION);
    }

    #[test]
    fn a_record_of_format_2_reads_with_no_removed_messages_and_upgrades() {
        let mut r: JobRecord = rmp_serde::from_slice(RECORD_V0).unwrap();
        r.version = 2;
        // Format 2 as that release wrote it: no `run.removed`.
        let mut v = serde_json::to_value(&r).unwrap();
        let run = v["run"].as_object_mut().unwrap();
        assert!(run.remove("removed").is_some());
        let bytes = rmp_serde::to_vec_named(&v).unwrap();
        let mut r: JobRecord = rmp_serde::from_slice(&bytes).expect("a format-2 record decodes");
        assert!(r.run.removed.is_empty());
        assert_eq!(r.run.items_done, 400);
        assert!(r.upgrade().expect("a format-2 record upgrades"));
        assert_eq!(r.version, RECORD_VERSION);
        assert!(r.detail(Vec::new()).removed.is_empty());
    }

    #[test]
    fn a_record_of_a_later_format_is_refused_naming_the_job_and_both_formats() {
        let mut r: JobRecord = rmp_serde::from_slice(RECORD_V0).unwrap();
        r.version = RECORD_VERSION + 1;
        let err = r.upgrade().expect_err("refused").to_string();
        assert!(err.contains("job j0123456789ab"), "{err}");
        assert!(
            err.contains(&format!("format {}", RECORD_VERSION + 1)),
            "{err}"
        );
        assert!(err.contains("restore the store from a backup"), "{err}");
    }
}
