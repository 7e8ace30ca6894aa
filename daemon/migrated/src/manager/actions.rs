//! What an administrator does to a job: pause, resume, cancel, delete, reset, delta, and its
//! priority and tags. The job status state machine in core says which actions a status
//! allows; here they are applied (a running job stops at its next checkpoint first).

use migrated_core::{Action, JobStatus, Secret};
use migrated_ipc::{ControlError, ErrorKind};

use super::Manager;
use crate::record::RunReport;

impl Manager {
    /// Applies an action; the job's status after it.
    pub(super) async fn act(
        &mut self,
        id: &str,
        action: Action,
    ) -> Result<JobStatus, ControlError> {
        let status = self.jobs[id].record.status;
        if status == JobStatus::WaitingForStore && action == Action::Resume {
            // Try the store now rather than at the next retry.
            return match self.try_store().await {
                Ok(()) => Ok(self.jobs[id].record.status),
                Err(fault) => Err(ControlError::new(
                    ErrorKind::Internal,
                    format!(
                        "the job store at {} still cannot be written ({fault}); the job continues by itself once it can",
                        self.journal.path()
                    ),
                )),
            };
        }
        let next = status
            .apply(action)
            .map_err(|e| ControlError::new(ErrorKind::Conflict, e.to_string()))?;
        match action {
            Action::Delete => {
                if let Err(failed) = self.journal.delete_job(id).await {
                    self.outage(failed.outage).await;
                    return Err(ControlError::new(
                        ErrorKind::Internal,
                        format!("the job could not be deleted: {}", failed.error),
                    ));
                }
                let removed = self.jobs.remove(id);
                if let Some(e) = &removed {
                    self.consume_dropin(&e.record).await;
                }
                let name = removed.map(|e| e.record.spec.name).unwrap_or_default();
                tracing::info!(job_id = %id, job = %name, "Job deleted with all its data.");
                return Ok(status);
            }
            Action::Reset => {
                if let Err(failed) = self.journal.reset_job(id).await {
                    self.outage(failed.outage).await;
                    return Err(ControlError::new(
                        ErrorKind::Internal,
                        format!("the job could not be reset: {}", failed.error),
                    ));
                }
                if let Some(e) = self.jobs.get_mut(id) {
                    e.record.finished = None;
                    e.record.run = RunReport::default();
                }
                self.event(
                    id,
                    "warning",
                    "Reset: the ledger is cleared; the next run copies everything again.".into(),
                )
                .await;
            }
            Action::Cancel if next == JobStatus::Stopping => {
                if let Some(e) = self.jobs.get_mut(id) {
                    e.record.cancel_requested = true;
                }
                self.stop_run(id);
            }
            Action::Pause if next == JobStatus::Stopping => self.stop_run(id),
            _ => {}
        }
        self.set_status(id, next).await;
        if next == JobStatus::Queued && !self.jobs[id].record.has_credentials() {
            self.set_status(id, JobStatus::WaitingForCredentials).await;
        }
        Ok(self.jobs[id].record.status)
    }

    /// Queues a delta run (the final one if asked), with credentials given again if they were
    /// erased at completion.
    pub(super) async fn delta(
        &mut self,
        id: &str,
        source: Option<Secret>,
        destination: Option<Secret>,
        final_run: bool,
    ) -> Result<JobStatus, ControlError> {
        let status = self.jobs[id].record.status;
        if final_run && status == JobStatus::Queued {
            // A delta is queued already (a recurring one, say): it becomes the final one.
            if let Some(e) = self.jobs.get_mut(id) {
                e.record.final_delta = true;
            }
            self.persist(id).await;
            self.event(id, "info", "Final delta requested: the queued run is the final one; credentials are erased when it completes.".into()).await;
            return Ok(status);
        }
        let next = if status == JobStatus::WaitingForCredentials {
            JobStatus::Queued
        } else {
            status
                .apply(Action::Delta)
                .map_err(|e| ControlError::new(ErrorKind::Conflict, e.to_string()))?
        };
        if let Some(e) = self.jobs.get_mut(id) {
            // A side that logs in as an administrator is given the administrator's password.
            if let Some(s) = source {
                e.record.spec.source.set_login_secret(s);
            }
            if let Some(s) = destination {
                e.record.spec.destination.set_login_secret(s);
            }
            e.record.cancel_requested = false;
            e.record.finished = None;
            e.record.final_delta = final_run;
        }
        if final_run {
            self.event(id, "info", "Final delta requested: no recurring delta after it; credentials are erased when it completes.".into()).await;
        }
        self.persist(id).await;
        self.set_status(id, next).await;
        if !self.jobs[id].record.has_credentials() {
            self.set_status(id, JobStatus::WaitingForCredentials).await;
            return Err(ControlError::new(
                ErrorKind::Conflict,
                "the job's credentials were erased at completion: give them again (migratectl delta asks for them)",
            ));
        }
        Ok(self.jobs[id].record.status)
    }

    /// Sets a job's priority (lower numbers start first); its status.
    pub(super) async fn set_priority(&mut self, id: &str, priority: u32) -> JobStatus {
        if let Some(e) = self.jobs.get_mut(id) {
            e.record.spec.priority = priority;
        }
        self.persist(id).await;
        self.event(id, "info", format!("Priority set to {priority}."))
            .await;
        self.jobs[id].record.status
    }

    /// Adds and removes tags (checked first: a bad one changes nothing).
    pub(super) async fn set_tags(
        &mut self,
        id: &str,
        add: Vec<String>,
        remove: &[String],
    ) -> Result<(), ControlError> {
        if let Some(bad) = add
            .iter()
            .find_map(|t| migrated_core::spec::check_tag(t).err())
        {
            return Err(ControlError::new(ErrorKind::Invalid, bad));
        }
        if let Some(e) = self.jobs.get_mut(id) {
            let tags = &mut e.record.spec.tags;
            tags.retain(|t| !remove.contains(t));
            for t in add {
                if !tags.contains(&t) {
                    tags.push(t);
                }
            }
            tags.sort();
        }
        self.persist(id).await;
        let tags = self.jobs[id].record.spec.tags.join(", ");
        self.event(id, "info", format!("Tags: {tags}.")).await;
        Ok(())
    }
}
