//! Credentials after the first copy, as a migration of many days needs them: given again to
//! one job (`migratectl credentials JOB`) or to a whole batch from its CSV in one step
//! (`batch credentials NAME --csv FILE`), and cleared on one side (`credentials clear JOB
//! --source|--destination`), which puts the job in Waiting for credentials, as MigrationWiz
//! does. A job waiting for credentials is queued as soon as both sides have them.

use migrated_core::{JobStatus, Secret};
use migrated_ipc::{ControlError, ErrorKind, Response};

use super::Manager;
use super::requests::Reply;

impl Manager {
    /// Gives a job the secrets given (either side or both); its status after.
    pub(super) async fn set_credentials(
        &mut self,
        id: &str,
        source: Option<Secret>,
        destination: Option<Secret>,
    ) -> Result<JobStatus, ControlError> {
        if source.is_none() && destination.is_none() {
            return Err(ControlError::new(
                ErrorKind::Invalid,
                "no credentials given: give the source's, the destination's or both",
            ));
        }
        let mut sides = Vec::new();
        if let Some(e) = self.jobs.get_mut(id) {
            if let Some(s) = source {
                e.record.spec.source.set_login_secret(s);
                sides.push("source");
            }
            if let Some(s) = destination {
                e.record.spec.destination.set_login_secret(s);
                sides.push("destination");
            }
        }
        self.persist(id).await;
        self.event(
            id,
            "info",
            format!("Credentials given again for the {}.", sides.join(" and ")),
        )
        .await;
        Ok(self.queue_if_ready(id).await)
    }

    /// Erases one side's credentials (or both): the job waits for them. Refused while a run
    /// is in progress (it logged in already): pause it first.
    pub(super) async fn clear_credentials(
        &mut self,
        id: &str,
        source: bool,
        destination: bool,
    ) -> Result<JobStatus, ControlError> {
        if !source && !destination {
            return Err(ControlError::new(
                ErrorKind::Invalid,
                "say which side: --source, --destination or both",
            ));
        }
        let status = self.jobs[id].record.status;
        if status.is_running() {
            return Err(ControlError::new(
                ErrorKind::Conflict,
                "a run is in progress and has logged in already: pause the job first (migratectl pause), then clear its credentials",
            ));
        }
        let name = self.jobs[id].record.spec.name.clone();
        if let Some(e) = self.jobs.get_mut(id) {
            if source {
                e.record.spec.source.erase_secrets();
            }
            if destination {
                e.record.spec.destination.erase_secrets();
            }
        }
        self.persist(id).await;
        let sides = match (source, destination) {
            (true, true) => "source and destination",
            (true, false) => "source",
            _ => "destination",
        };
        self.event(
            id,
            "warning",
            format!(
                "The {sides} credentials were cleared: the job waits for credentials (`migratectl credentials {name}` gives them)."
            ),
        ).await;
        if status != JobStatus::Cancelled {
            self.set_status(id, JobStatus::WaitingForCredentials).await;
        }
        Ok(self.jobs[id].record.status)
    }

    /// Gives a batch's jobs their credentials again from a CSV in the batch's format, rows
    /// matched to jobs by EmailAddress; `source` serves rows without a Password (an
    /// administrator's login), `destination` rows without DestinationPassword.
    /// Every CSV problem is reported at once and nothing changes; a row naming no job of the
    /// batch is refused in its result.
    pub(super) async fn batch_credentials(
        &mut self,
        name: &str,
        source: Option<Secret>,
        destination: Option<Secret>,
        csv: &str,
    ) -> Reply {
        let members: Vec<&String> = self
            .jobs
            .iter()
            .filter(|(_, e)| e.record.batch.as_deref() == Some(name))
            .map(|(id, _)| id)
            .collect();
        let Some(first) = members.first() else {
            return Err(ControlError::new(
                ErrorKind::NotFound,
                format!("no batch named {name:?} (migratectl batch list shows them)"),
            ));
        };
        let shared = self.jobs[*first].record.spec.source.shared_login();
        let rows = migrated_core::batch::parse_batch_with(csv, shared).map_err(|problems| {
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            ControlError::new(ErrorKind::Invalid, lines.join("\n"))
        })?;
        let mut results = Vec::with_capacity(rows.len());
        for row in rows {
            let job = format!("{name}/{}", row.email);
            let Some(id) = self
                .jobs
                .iter()
                .find(|(_, e)| e.record.spec.name == job)
                .map(|(id, _)| id.clone())
            else {
                results.push((
                    job,
                    Err(format!(
                        "row {}: {} is not a mailbox of batch {name}",
                        row.row, row.email
                    )),
                ));
                continue;
            };
            if let Some(e) = self.jobs.get_mut(&id) {
                if let Some(p) = row.source_password {
                    e.record.spec.source.use_own_password(p);
                } else if let Some(s) = &source {
                    e.record.spec.source.set_login_secret(s.clone());
                }
                if let Some(p) = row.destination_password {
                    e.record.spec.destination.use_own_password(p);
                } else if let Some(s) = &destination {
                    e.record.spec.destination.set_login_secret(s.clone());
                }
            }
            self.persist(&id).await;
            self.event(
                &id,
                "info",
                format!(
                    "Credentials given again from the batch's CSV (row {}).",
                    row.row
                ),
            )
            .await;
            let status = self.queue_if_ready(&id).await;
            if self.jobs[&id].record.has_credentials() {
                results.push((job, Ok(status)));
            } else {
                results.push((
                    job,
                    Err(format!(
                        "row {}: credentials still missing: add a DestinationPassword column, or give the batch's template (--template) with its password files",
                        row.row
                    )),
                ));
            }
        }
        Ok(Response::BatchDone { results })
    }

    /// A job waiting for credentials that has both sides' now is queued; its status.
    pub(super) async fn queue_if_ready(&mut self, id: &str) -> JobStatus {
        let e = &self.jobs[id];
        if e.record.status == JobStatus::WaitingForCredentials && e.record.has_credentials() {
            self.set_status(id, JobStatus::Queued).await;
        }
        self.jobs[id].record.status
    }
}
