//! Alerts kept with the jobs: raised beside the event that says the same, listed with
//! filters, cleared one by one or all at once, published to subscribers (and the `Alert`
//! signal) and handed to the mailer for the kinds mailed.

use migrated_ipc::{AlertLevel, AlertRow, ControlError, ErrorKind, Response};

use super::Manager;
use crate::alerts::AlertKind;
use crate::msg::Update;
use crate::record::now;

impl Manager {
    /// Raises an alert on a job, when its kind is shown: kept with the job (the oldest go
    /// beyond the maximum), published, and mailed when its kind is mailed.
    pub(super) async fn alert(
        &mut self,
        id: &str,
        kind: AlertKind,
        level: AlertLevel,
        message: String,
        what_to_do: String,
    ) {
        let settings = &self.settings.alerts;
        if !settings.shown.contains(&kind) || settings.max_per_job == 0 {
            return;
        }
        let mailed = settings.mailed.contains(&kind);
        let max = settings.max_per_job;
        let Some(entry) = self.jobs.get_mut(id) else {
            return;
        };
        let record = &mut entry.record;
        let row = AlertRow {
            id: format!("{id}:{}", record.next_alert),
            time: now(),
            job: id.to_owned(),
            job_name: record.spec.name.clone(),
            batch: record.batch.clone(),
            level,
            kind: kind.as_str().to_owned(),
            message,
            what_to_do,
        };
        record.next_alert += 1;
        record.alerts.push(row.clone());
        let over = record.alerts.len().saturating_sub(max);
        record.alerts.drain(..over);
        let _ = self.updates.send(Update {
            job: record.summary(),
            events: Vec::new(),
            alerts: vec![row.clone()],
        });
        self.persist(id).await;
        if mailed && let Some(mailer) = &self.settings.alerts.mailer {
            let _ = mailer.send(row);
        }
    }

    /// The alerts, oldest first, of a batch, a job, a level (each filter given).
    pub(super) fn alerts(
        &mut self,
        batch: Option<&str>,
        job: Option<&str>,
        level: Option<AlertLevel>,
    ) -> Result<Response, ControlError> {
        let job = job.map(|j| self.find(j)).transpose()?;
        if let Some(b) = batch {
            self.batch(b)?;
        }
        let mut alerts: Vec<AlertRow> = self
            .jobs
            .values()
            .filter(|e| job.as_deref().is_none_or(|j| e.record.id == j))
            .filter(|e| batch.is_none_or(|b| e.record.batch.as_deref() == Some(b)))
            .flat_map(|e| &e.record.alerts)
            .filter(|a| level.is_none_or(|l| a.level == l))
            .cloned()
            .collect();
        alerts.sort_by(|a, b| (a.time, &a.id).cmp(&(b.time, &b.id)));
        Ok(Response::Alerts { alerts })
    }

    /// Clears one alert by id, or every alert.
    pub(super) async fn clear_alerts(
        &mut self,
        id: Option<&str>,
    ) -> Result<Response, ControlError> {
        let Some(alert) = id else {
            let ids: Vec<String> = self
                .jobs
                .iter()
                .filter(|(_, e)| !e.record.alerts.is_empty())
                .map(|(k, _)| k.clone())
                .collect();
            let mut count = 0;
            for job in &ids {
                if let Some(e) = self.jobs.get_mut(job) {
                    count += e.record.alerts.len() as u64;
                    e.record.alerts.clear();
                }
                self.persist(job).await;
            }
            return Ok(Response::Cleared { count });
        };
        let not_found = || {
            ControlError::new(
                ErrorKind::NotFound,
                format!("no alert {alert:?} (`migratectl alerts` lists them with their ids)"),
            )
        };
        let job = alert.rsplit_once(':').ok_or_else(not_found)?.0.to_owned();
        let entry = self.jobs.get_mut(&job).ok_or_else(not_found)?;
        let before = entry.record.alerts.len();
        entry.record.alerts.retain(|a| a.id != alert);
        if entry.record.alerts.len() == before {
            return Err(not_found());
        }
        self.persist(&job).await;
        Ok(Response::Cleared { count: 1 })
    }
}
