//! A job's settings shown and edited (`migratectl show JOB`, `migratectl edit JOB`): shown
//! without any secret (only whether each is set), and replaced from the next run by an
//! edited job file that passes the same checks as a new job, or refused with the job
//! unchanged. Secrets the edit does not give are kept.

use migrated_core::{JobSpec, JobStatus};
use migrated_ipc::{ControlError, ErrorKind};

use super::Manager;

/// Which secrets of a side are set: `(field, set)`.
pub(crate) fn secrets_of(side: &str, e: &migrated_core::EndpointSpec) -> Vec<(String, bool)> {
    let mut out = vec![(format!("{side}.password"), e.password.is_some())];
    if e.is_admin_login() {
        out.push((format!("{side}.admin_password"), e.admin_password.is_some()));
    }
    if e.oauth2.is_some() {
        out.push((format!("{side}.oauth2"), e.login_secret().is_some()));
    }
    out
}

impl Manager {
    /// The job's settings without secrets, and which secrets are set.
    pub(super) fn show(&self, id: &str) -> (JobSpec, Vec<(String, bool)>) {
        let spec = &self.jobs[id].record.spec;
        let mut secrets = secrets_of("source", &spec.source);
        secrets.extend(secrets_of("destination", &spec.destination));
        let mut shown = spec.clone();
        shown.source.erase_secrets();
        shown.destination.erase_secrets();
        (shown, secrets)
    }

    /// Replaces a job's settings from its next run; its status. The edit keeps the secrets it
    /// does not give and the job's batch; it is checked as a new job is.
    pub(super) async fn edit(
        &mut self,
        id: &str,
        mut spec: JobSpec,
    ) -> Result<JobStatus, ControlError> {
        let place = format!("job {:?}", self.jobs[id].record.spec.name);
        let old = &self.jobs[id].record.spec;
        if spec.name != old.name
            && self
                .jobs
                .iter()
                .any(|(other, e)| other != id && e.record.spec.name == spec.name)
        {
            return Err(ControlError::new(
                ErrorKind::Conflict,
                format!(
                    "{place}: name: a job named {:?} exists already; the job is unchanged",
                    spec.name
                ),
            ));
        }
        for (new, old) in [
            (&mut spec.source, &old.source),
            (&mut spec.destination, &old.destination),
        ] {
            if new.login_secret().is_none()
                && let Some(s) = old.login_secret()
            {
                new.set_login_secret(s.clone());
            }
        }
        self.apply_endpoints(&mut spec).map_err(|e| {
            ControlError::new(
                e.kind,
                format!("{place}: {}; the job is unchanged", e.message),
            )
        })?;
        self.check_spec(&spec, &place).map_err(|e| {
            ControlError::new(e.kind, format!("{}; the job is unchanged", e.message))
        })?;
        let running = self.jobs[id].stop.is_some();
        if let Some(e) = self.jobs.get_mut(id) {
            e.record.spec = spec;
            // Its schedule may have changed: the next pass looks at it again.
            e.window_closed_until = None;
        }
        self.persist(id).await;
        let when = if running {
            "the run in progress goes on with the old ones; the new settings apply from the next run"
        } else {
            "the new settings apply from the next run"
        };
        self.event(id, "info", format!("Settings edited: {when}."))
            .await;
        Ok(self.queue_if_ready(id).await)
    }
}
