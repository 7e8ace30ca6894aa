//! Named endpoints in the loop: kept sealed in the store (setting `endpoints`), applied to
//! the jobs that name one when they are created or edited and again each time they are queued
//! for a run (so an edited endpoint applies from each job's next run), and never deleted while
//! a job uses them. Their limits are kept by the scheduler ([`crate::scheduler`]).

use migrated_core::{JobSpec, NamedEndpoint};
use migrated_ipc::{ControlError, EndpointRow, ErrorKind, Response};

use super::Manager;
use super::requests::Reply;

impl Manager {
    /// Fills in the connection of each side that names an endpoint.
    ///
    /// # Errors
    ///
    /// An endpoint that does not exist, named with the side.
    pub(super) fn apply_endpoints(&self, spec: &mut JobSpec) -> Result<(), ControlError> {
        for (side, e) in [
            ("source", &mut spec.source),
            ("destination", &mut spec.destination),
        ] {
            let Some(name) = e.endpoint.clone() else {
                continue;
            };
            let Some(named) = self.endpoints.get(&name) else {
                return Err(ControlError::new(
                    ErrorKind::Invalid,
                    format!(
                        "[{side}] endpoint: no endpoint named {name:?} (migratectl endpoint list shows them)"
                    ),
                ));
            };
            named.apply(e);
        }
        Ok(())
    }

    /// The mailboxes of a pre-flight: a batch's rows with its template, or the template as one
    /// job, their endpoints applied as a run would.
    ///
    /// # Errors
    ///
    /// Every CSV problem at once, a row without a destination password, an unknown endpoint.
    pub(super) fn preflight_mailboxes(
        &self,
        mut template: JobSpec,
        csv: Option<String>,
    ) -> Result<Vec<crate::control::preflight::Mailbox>, ControlError> {
        use crate::control::preflight::Mailbox;
        self.apply_endpoints(&mut template)?;
        let Some(csv) = csv else {
            return Ok(vec![Mailbox {
                spec: template,
                shared_destination: false,
            }]);
        };
        let name = "preflight";
        let (members, problems) = super::intake::batch_specs(name, &template, &csv)?;
        if !problems.is_empty() {
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            return Err(ControlError::new(ErrorKind::Invalid, lines.join("\n")));
        }
        Ok(members
            .into_iter()
            .map(|m| {
                let mut spec = m.spec;
                // The mailbox as the CSV names it, without the placeholder batch name.
                spec.name = spec.name[name.len() + 1..].to_owned();
                Mailbox {
                    spec,
                    shared_destination: m.shared_destination,
                }
            })
            .collect())
    }

    /// Applies the endpoints again to a job about to be queued (an edit since its last run).
    pub(super) fn refresh_endpoints(&mut self, id: &str) {
        let Some(e) = self.jobs.get(id) else { return };
        if e.record.spec.source.endpoint.is_none() && e.record.spec.destination.endpoint.is_none() {
            return;
        }
        let mut spec = e.record.spec.clone();
        if self.apply_endpoints(&mut spec).is_ok()
            && let Some(e) = self.jobs.get_mut(id)
        {
            e.record.spec = spec;
            // Its schedule may have changed: the next pass looks at it again.
            e.window_closed_until = None;
        }
    }

    fn endpoint_row(&self, named: &NamedEndpoint) -> EndpointRow {
        let mut endpoint = named.clone();
        let admin_secret = endpoint.connection.login_secret().is_some();
        endpoint.connection.erase_secrets();
        let mut jobs: Vec<String> = self
            .jobs
            .values()
            .filter(|e| uses(&e.record.spec, &named.name))
            .map(|e| e.record.spec.name.clone())
            .collect();
        jobs.sort();
        let running = self
            .jobs
            .values()
            .filter(|e| e.stop.is_some() && uses(&e.record.spec, &named.name))
            .count();
        EndpointRow {
            endpoint,
            admin_secret,
            jobs,
            running,
        }
    }

    /// `endpoint create` (or with `replace`, a change applied from each job's next run).
    pub(super) async fn endpoint_create(&mut self, named: NamedEndpoint, replace: bool) -> Reply {
        named
            .validate()
            .map_err(|m| ControlError::new(ErrorKind::Invalid, m))?;
        let exists = self.endpoints.contains_key(&named.name);
        if exists && !replace {
            return Err(ControlError::new(
                ErrorKind::Conflict,
                format!(
                    "an endpoint named {:?} exists already: `migratectl endpoint create --replace` changes it",
                    named.name
                ),
            ));
        }
        let name = named.name.clone();
        self.endpoints.insert(name.clone(), named);
        self.save_endpoints().await?;
        let users: Vec<String> = self
            .jobs
            .iter()
            .filter(|(_, e)| uses(&e.record.spec, &name))
            .map(|(id, _)| id.clone())
            .collect();
        for id in users {
            self.refresh_endpoints(&id);
            self.persist(&id).await;
            self.event(
                &id,
                "info",
                format!("Endpoint {name} changed: the new settings apply from the next run."),
            )
            .await;
        }
        tracing::info!(endpoint = %name, replaced = exists, "Endpoint saved.");
        Ok(Response::Endpoints {
            endpoints: vec![self.endpoint_row(&self.endpoints[&name])],
        })
    }

    /// `endpoint list` and `endpoint show NAME`.
    pub(super) fn endpoint_list(&self, name: Option<&str>) -> Reply {
        let rows: Vec<EndpointRow> = self
            .endpoints
            .values()
            .filter(|e| name.is_none_or(|n| n == e.name))
            .map(|e| self.endpoint_row(e))
            .collect();
        if let Some(n) = name
            && rows.is_empty()
        {
            return Err(no_endpoint(n));
        }
        Ok(Response::Endpoints { endpoints: rows })
    }

    /// `endpoint delete NAME`: refused while jobs use it, naming them.
    pub(super) async fn endpoint_delete(&mut self, name: &str) -> Reply {
        let Some(named) = self.endpoints.get(name) else {
            return Err(no_endpoint(name));
        };
        let row = self.endpoint_row(named);
        if !row.jobs.is_empty() {
            return Err(ControlError::new(
                ErrorKind::Conflict,
                format!(
                    "endpoint {name} is used by {}: delete those jobs or point them at another endpoint (migratectl edit) first",
                    row.jobs.join(", ")
                ),
            ));
        }
        self.endpoints.remove(name);
        self.save_endpoints().await?;
        tracing::info!(endpoint = %name, "Endpoint deleted.");
        Ok(Response::Endpoints {
            endpoints: vec![row],
        })
    }

    async fn save_endpoints(&mut self) -> Result<(), ControlError> {
        let all: Vec<NamedEndpoint> = self.endpoints.values().cloned().collect();
        let written = self.journal.save_setting("endpoints", all).await;
        if let Err(failed) = written {
            let message = format!("the endpoints could not be saved: {}", failed.error);
            self.outage(failed.outage).await;
            return Err(ControlError::new(ErrorKind::Internal, message));
        }
        Ok(())
    }
}

/// Whether a job names the endpoint on either side.
pub(crate) fn uses(spec: &JobSpec, name: &str) -> bool {
    spec.source.endpoint.as_deref() == Some(name)
        || spec.destination.endpoint.as_deref() == Some(name)
}

fn no_endpoint(name: &str) -> ControlError {
    ControlError::new(
        ErrorKind::NotFound,
        format!("no endpoint named {name:?} (migratectl endpoint list shows them)"),
    )
}
