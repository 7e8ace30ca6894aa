//! What a finished run or batch says: the verification's findings in the job's events, and
//! the report e-mailed to the addresses the jobs name (`notify`) when a job outside a batch,
//! or a batch's last mailbox, finishes.

use migrated_core::JobStatus;
use migrated_ipc::{AlertLevel, JobSummary};

use super::Manager;
use crate::alerts::AlertKind;
use crate::msg::Msg;
use crate::record::now;

impl Manager {
    /// Good news for a batch: when its last mailbox finishes, an event on every job of it and,
    /// when its jobs name addresses (`notify`), the batch's report by e-mail; a job outside a
    /// batch mails its own report.
    pub(super) async fn notify_finished(&mut self, id: &str) {
        let jobs = self.jobs.fresh();
        let record = &jobs.jobs()[id].record;
        let in_batch = record.batch.is_some();
        let (subject_name, members): (String, Vec<String>) = match &record.batch {
            Some(batch) => {
                // Counted in the jobs' index: a mailbox finishing costs nothing per member.
                if jobs.batch_unfinished(batch) > 0 {
                    return;
                }
                let members = jobs.batch(batch).into_iter().map(str::to_owned).collect();
                (format!("batch {batch}"), members)
            }
            None => (format!("job {}", record.spec.name), vec![id.to_owned()]),
        };
        let mut jobs: Vec<JobSummary> = members
            .iter()
            .map(|m| self.jobs[m].record.summary())
            .collect();
        jobs.sort_by(|a, b| a.name.cmp(&b.name));
        let count = |s: JobStatus| jobs.iter().filter(|j| j.status == Some(s)).count();
        let (ok, partly, failed, cancelled) = (
            count(JobStatus::Completed),
            count(JobStatus::CompletedWithErrors),
            count(JobStatus::Failed),
            count(JobStatus::Cancelled),
        );
        let subject = format!(
            "migrated: {subject_name} finished: {ok} completed, {partly} with errors, {failed} failed, {cancelled} cancelled"
        );
        if in_batch {
            let level = if failed + partly > 0 {
                "warning"
            } else {
                "info"
            };
            let what = if failed + partly > 0 {
                " `migratectl report --batch` lists every refused message and error with what to do."
            } else {
                ""
            };
            for m in &members {
                self.event(m, level, format!("Batch finished: {ok} completed, {partly} with errors, {failed} failed, {cancelled} cancelled.{what}")).await;
            }
            // One alert for the batch, on the mailbox that finished it.
            let batch = self.jobs[id].record.batch.clone().unwrap_or_default();
            let (alert_level, todo) = if failed + partly > 0 {
                (
                    AlertLevel::Bad,
                    format!(
                        "`migratectl report --batch {batch}` lists every refused message and error with what to do"
                    ),
                )
            } else {
                (AlertLevel::Good, String::new())
            };
            self.alert(
                id,
                AlertKind::BatchFinished,
                alert_level,
                format!("Batch {batch} finished: {ok} completed, {partly} with errors, {failed} failed, {cancelled} cancelled."),
                todo,
            ).await;
        }
        let mut to: Vec<String> = members
            .iter()
            .flat_map(|m| self.jobs[m].record.spec.notify.clone())
            .collect();
        to.sort();
        to.dedup();
        if to.is_empty() {
            return;
        }
        let Some(smtp) = self.settings.smtp.clone() else {
            self.event(
                id,
                "warning",
                format!(
                    "No report e-mailed to {}: the daemon has no --smtp-server.",
                    to.join(", ")
                ),
            )
            .await;
            return;
        };
        let mut body = format!("{subject}\n\n");
        body.push_str(&format!(
            "{:<28} {:<22} {:>20} {:>8}  ERROR\n",
            "MAILBOX", "STATUS", "MESSAGES", "FAILED"
        ));
        for j in &jobs {
            body.push_str(&format!(
                "{:<28} {:<22} {:>20} {:>8}  {}\n",
                j.name,
                j.status.map(|s| s.label()).unwrap_or(""),
                format!("{}/{}", j.items_done, j.items_total),
                j.failed,
                j.error.as_deref().unwrap_or("")
            ));
        }
        body.push_str(
            "\nEvery refused or excluded message, with the server's words: migratectl report",
        );
        match &self.jobs[id].record.batch {
            Some(batch) => body.push_str(&format!(" --batch {batch}\n")),
            None => body.push_str(&format!(" {}\n", self.jobs[id].record.spec.name)),
        }
        let tx = self.tx.clone();
        let job = id.to_owned();
        tokio::spawn(async move {
            let list = to.join(", ");
            let (level, message) = match smtp.send(to, subject, body).await {
                Ok(()) => ("info", format!("Report e-mailed to {list}.")),
                Err(e) => (
                    "warning",
                    format!(
                        "The report could not be e-mailed to {list}: {e}. Check --smtp-server and the SMTP credentials; `migratectl report` shows the same report."
                    ),
                ),
            };
            let _ = tx.send(Msg::Notice {
                id: job,
                level,
                message,
            });
        });
    }

    /// Keeps a run's verification and says in the events (and journal) what it found.
    pub(super) async fn verified(&mut self, id: &str, rows: Vec<migrated_core::VerifyRow>) {
        let missing: usize = rows
            .iter()
            .flat_map(|r| &r.missing)
            .filter(|m| !m.reason.starts_with("excluded"))
            .count();
        let (level, message) = if missing == 0 {
            (
                "info",
                format!(
                    "Verified: all {} folders are on the destination with every message that was not excluded.",
                    rows.len()
                ),
            )
        } else {
            let folders: Vec<String> = rows
                .iter()
                .filter(|r| r.missing.iter().any(|m| !m.reason.starts_with("excluded")))
                .map(|r| {
                    let n = r
                        .missing
                        .iter()
                        .filter(|m| !m.reason.starts_with("excluded"))
                        .count();
                    format!("{} ({n})", r.source)
                })
                .collect();
            (
                "warning",
                format!(
                    "Verified: {missing} messages are not on the destination, in {}. `migratectl report` lists each with the reason.",
                    folders.join(", ")
                ),
            )
        };
        if let Some(entry) = self.jobs.get_mut(id) {
            entry.record.run.verification = rows;
            entry.record.run.verified_at = Some(now());
        }
        self.event(id, level, message).await;
    }
}
