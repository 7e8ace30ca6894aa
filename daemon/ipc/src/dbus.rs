//! The D-Bus face of the control API: `org.migrated.Manager1` at `/org/migrated/Manager1`, on
//! the system bus (system service) or the session bus (user instance).
//!
//! | member | signature | what |
//! |---|---|---|
//! | `Call(request)` | `s` → `s` | any control request as JSON ([`crate::Request`]), answered as on the socket ([`crate::Response`] as JSON, errors included); `migratectl --bus` sends every command this way; the Cockpit page reads the throughput history (`{"request":"throughput","job":ID}`) and the CSV report (`{"request":"report_csv","batch":NAME}`) through it |
//! | `CreateJob(spec)` | `s` → `s` | creates a job from its spec as JSON (the [`migrated_core::JobSpec`] fields, secrets inline); returns the id |
//! | `TestJob(spec)` | `s` → `s` | checks both endpoints (connect, TLS, login, folders); the checks as JSON |
//! | `ListJobs()` | → `a(sssttt)` | id, name, status, messages done, messages total, failed (every field: `Call` with `{"request":"list"}`) |
//! | `ListPage(after, limit)` | `su` → `(ss)` | one page of at most `limit` (1 to 5,000) jobs after the cursor `after` (empty: from the start), oldest first: the [`crate::JobSummary`]s as JSON, and the next page's cursor (empty: the list is complete) |
//! | `Status(job)` | `s` → `s` | the job in detail as JSON ([`crate::JobDetail`]) |
//! | `Pause(job)`, `Resume(job)`, `Cancel(job)`, `Delete(job)`, `Reset(job)` | `s` → `s` | the status after the action |
//! | `Delta(job, source_secret, destination_secret)` | `sss` → `s` | runs again; empty secrets keep the stored ones |
//! | `FinalDelta(job, source_secret, destination_secret)` | `sss` → `s` | the final delta (cutover): credentials erased when it completes |
//! | `Events(job, after)` | `st` → `a(ttss)` | sequence, unix time, level, message |
//! | `SetPriority(job, priority)` | `su` → `s` | the job's status |
//! | `SetTags(job, add, remove)` | `sasas` → `as` | the job's tags after the change |
//! | `SetLimits(max_jobs, max_connections_per_host)` | `xx` → `(uuu)` | -1 keeps a value; max jobs, per host, running |
//! | `CreateBatch(name, template, csv)` | `sss` → `s` | template as a JSON job spec; every CSV problem in the error |
//! | `ListBatches()` | → `s` | JSON list of batch summaries |
//! | `Plugins()` | → `s` | JSON: `plugins` loaded (name, version, ABI, kinds, settings) and `rejected` files with the reason |
//! | `BatchStatus(name)` | `s` → `s` | JSON: the batch and its jobs |
//! | `BatchAction(name, action)` | `ss` → `s` | Pause, Resume, Cancel, Delete, Delta or Reset on every job; JSON results |
//! | `Alerts(batch, job, level)` | `sss` → `s` | JSON list of alerts ([`crate::AlertRow`]), oldest first; an empty string does not filter; level `good` or `bad` |
//! | `ClearAlert(id)` | `s` → `t` | clears one alert; how many were cleared |
//! | `ClearAlerts()` | → `t` | clears every alert; how many were cleared |
//! | property `JobCount`, `RunningCount` | `u` | jobs in the store, jobs running |
//! | property `Version` | `s` | the daemon's version |
//! | signal `Progress` | `ssttttss` | id, status, messages done/total, bytes done/total, current folder, name |
//! | signal `JobEvent` | `ssts` | id, level, sequence, message |
//! | signal `Alert` | `ssssss` | alert id, job id, level (`good`/`bad`), kind, message, what to do |
//!
//! Errors are `org.migrated.Error.{NotFound,Conflict,Invalid,Denied,Internal}` with the same
//! messages as on the socket.

/// Bus name.
pub const BUS_NAME: &str = "org.migrated.Manager1";
/// Object path.
pub const OBJECT_PATH: &str = "/org/migrated/Manager1";

/// The request that `Alerts(batch, job, level)` stands for: an empty string does not filter,
/// a level is `good` or `bad`. The daemon's interface answers the member with it; a client
/// that builds the request itself (over `Call`) gets the same filters.
///
/// # Errors
///
/// A level that is neither, named, with what to give instead.
pub fn alerts_request(batch: String, job: String, level: &str) -> Result<crate::Request, String> {
    let level = match level {
        "" => None,
        "good" => Some(crate::AlertLevel::Good),
        "bad" => Some(crate::AlertLevel::Bad),
        other => {
            return Err(format!(
                "level {other:?}: give good, bad or an empty string"
            ));
        }
    };
    let some = |s: String| (!s.is_empty()).then_some(s);
    Ok(crate::Request::Alerts {
        batch: some(batch),
        job: some(job),
        level,
    })
}

/// Client side of `org.migrated.Manager1`.
#[zbus::proxy(
    interface = "org.migrated.Manager1",
    default_service = "org.migrated.Manager1",
    default_path = "/org/migrated/Manager1"
)]
pub trait Manager {
    /// Any request as JSON; the response as JSON.
    fn call(&self, request: &str) -> zbus::Result<String>;
    /// The final delta (credentials erased when it completes).
    fn final_delta(
        &self,
        job: &str,
        source_secret: &str,
        destination_secret: &str,
    ) -> zbus::Result<String>;
    /// Creates a job from its JSON spec; returns the id.
    fn create_job(&self, spec: &str) -> zbus::Result<String>;
    /// Checks both endpoints of a JSON spec; the checks as JSON ([`crate::CheckRow`]s).
    fn test_job(&self, spec: &str) -> zbus::Result<String>;
    /// `(id, name, status, done, total, failed)` of every job.
    fn list_jobs(&self) -> zbus::Result<Vec<(String, String, String, u64, u64, u64)>>;
    /// One page of jobs after a cursor (empty: the start): the summaries as JSON and the next
    /// cursor (empty: the end).
    fn list_page(&self, after: &str, limit: u32) -> zbus::Result<(String, String)>;
    /// The job in detail, as JSON.
    fn status(&self, job: &str) -> zbus::Result<String>;
    /// Pauses a job.
    fn pause(&self, job: &str) -> zbus::Result<String>;
    /// Resumes a job.
    fn resume(&self, job: &str) -> zbus::Result<String>;
    /// Cancels a job.
    fn cancel(&self, job: &str) -> zbus::Result<String>;
    /// Deletes a job and its data.
    fn delete(&self, job: &str) -> zbus::Result<String>;
    /// Forgets what a job copied.
    fn reset(&self, job: &str) -> zbus::Result<String>;
    /// Runs a job again (empty secrets keep the stored ones).
    fn delta(
        &self,
        job: &str,
        source_secret: &str,
        destination_secret: &str,
    ) -> zbus::Result<String>;
    /// Events after a sequence number.
    fn events(&self, job: &str, after: u64) -> zbus::Result<Vec<(u64, u64, String, String)>>;
    /// Changes a job's priority.
    fn set_priority(&self, job: &str, priority: u32) -> zbus::Result<String>;
    /// Adds and removes a job's tags; returns them.
    fn set_tags(&self, job: &str, add: &[&str], remove: &[&str]) -> zbus::Result<Vec<String>>;
    /// Reads and changes the limits (-1 keeps a value).
    fn set_limits(
        &self,
        max_jobs: i64,
        max_connections_per_host: i64,
    ) -> zbus::Result<(u32, u32, u32)>;
    /// Creates a batch.
    fn create_batch(&self, name: &str, template: &str, csv: &str) -> zbus::Result<String>;
    /// Every batch, JSON.
    fn list_batches(&self) -> zbus::Result<String>;
    /// The plugins loaded and the files skipped, JSON.
    fn plugins(&self) -> zbus::Result<String>;
    /// A batch and its jobs, JSON.
    fn batch_status(&self, name: &str) -> zbus::Result<String>;
    /// An action on every job of a batch; the results, JSON.
    fn batch_action(&self, name: &str, action: &str) -> zbus::Result<String>;
    /// Alerts as JSON; empty strings do not filter.
    fn alerts(&self, batch: &str, job: &str, level: &str) -> zbus::Result<String>;
    /// Clears one alert.
    fn clear_alert(&self, id: &str) -> zbus::Result<u64>;
    /// Clears every alert.
    fn clear_alerts(&self) -> zbus::Result<u64>;
    /// Jobs in the store (read when asked: no change signal).
    #[zbus(property(emits_changed_signal = "false"))]
    fn job_count(&self) -> zbus::Result<u32>;
    /// Jobs running (read when asked: no change signal).
    #[zbus(property(emits_changed_signal = "false"))]
    fn running_count(&self) -> zbus::Result<u32>;
    /// Daemon version.
    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> zbus::Result<String>;
    /// Progress of a job.
    #[allow(clippy::too_many_arguments)]
    #[zbus(signal)]
    fn progress(
        &self,
        id: &str,
        status: &str,
        items_done: u64,
        items_total: u64,
        bytes_done: u64,
        bytes_total: u64,
        folder: &str,
        name: &str,
    ) -> zbus::Result<()>;
    /// An alert raised.
    #[zbus(signal)]
    fn alert(
        &self,
        id: &str,
        job: &str,
        level: &str,
        kind: &str,
        message: &str,
        what_to_do: &str,
    ) -> zbus::Result<()>;
    /// An event of a job.
    #[zbus(signal)]
    fn job_event(&self, id: &str, level: &str, seq: u64, message: &str) -> zbus::Result<()>;
}

#[cfg(test)]
mod tests {
    use super::alerts_request;
    use crate::{AlertLevel, Request};

    #[test]
    fn alerts_arguments_filter_only_when_given_and_a_bad_level_is_named() {
        let r = alerts_request(String::new(), "j1".into(), "bad").unwrap();
        assert!(
            matches!(&r, Request::Alerts { batch: None, job: Some(j), level: Some(AlertLevel::Bad) } if j == "j1"),
            "{r:?}"
        );
        let r = alerts_request("wave".into(), String::new(), "").unwrap();
        assert!(
            matches!(&r, Request::Alerts { batch: Some(b), job: None, level: None } if b == "wave"),
            "{r:?}"
        );
        assert_eq!(
            alerts_request(String::new(), String::new(), "ugly").unwrap_err(),
            "level \"ugly\": give good, bad or an empty string"
        );
    }
}
