//! The control API as the manager answers it: one handler per request, each returning the
//! reply or a [`ControlError`] that names what to do. The transports turn errors into
//! [`Response::Error`]; nothing here decodes a reply back into a result.

use migrated_ipc::{
    BatchSummary, ControlError, ErrorKind, EventRow, JobSummary, JobThroughput, MAX_PAGE,
    PluginRow, PluginSetting, RejectedPlugin, Request, Response,
};

use super::Manager;

/// A request's answer.
pub(super) type Reply = Result<Response, ControlError>;

/// Whether a request only reads: answering it changes no job, limit or setting, so no
/// scheduler pass follows it (a `Status` or a list page costs the same with 50,000 jobs
/// queued as with ten).
pub(super) fn reads_only(request: &Request) -> bool {
    match request {
        Request::List { .. }
        | Request::Status { .. }
        | Request::Events { .. }
        | Request::ListBatches
        | Request::Plugins
        | Request::BatchStatus { .. }
        | Request::Show { .. }
        | Request::EndpointList
        | Request::EndpointShow { .. }
        | Request::Alerts { .. } => true,
        Request::Limits {
            max_jobs,
            max_connections_per_host,
        } => max_jobs.is_none() && max_connections_per_host.is_none(),
        _ => false,
    }
}

impl Manager {
    pub(super) async fn handle(&mut self, request: Request) -> Reply {
        match request {
            Request::Hello { .. }
            | Request::Subscribe { .. }
            | Request::Test { .. }
            | Request::Preflight { .. } => Err(ControlError::new(
                ErrorKind::Invalid,
                "hello and subscribe are the transport's; test and preflight run on tasks of their own",
            )),
            Request::Create { spec } => self
                .create(*spec, None)
                .await
                .map(|id| Response::Created { id }),
            Request::CreateBatch {
                name,
                template,
                csv,
            } => self
                .create_batch(name, *template, &csv)
                .await
                .map(|id| Response::Created { id }),
            Request::Plugins => Ok(self.plugins()),
            Request::Alerts { batch, job, level } => {
                self.alerts(batch.as_deref(), job.as_deref(), level)
            }
            Request::ClearAlerts { id } => self.clear_alerts(id.as_deref()).await,
            Request::ListBatches => Ok(Response::Batches {
                batches: self.batches(),
            }),
            Request::SetPriority { job, priority } => {
                let id = self.find(&job)?;
                let status = self.set_priority(&id, priority).await;
                Ok(Response::Done { status })
            }
            Request::SetTags { job, add, remove } => {
                let id = self.find(&job)?;
                self.set_tags(&id, add, &remove).await?;
                Ok(Response::Job {
                    job: Box::new(self.jobs[&id].record.detail(Vec::new())),
                })
            }
            Request::Limits {
                max_jobs,
                max_connections_per_host,
            } => self.limits(max_jobs, max_connections_per_host),
            Request::BatchStatus { name } => {
                let batch = self.batch(&name)?;
                let mut jobs: Vec<JobSummary> = self
                    .jobs
                    .values()
                    .filter(|e| e.record.batch.as_deref() == Some(name.as_str()))
                    .map(|e| e.record.summary())
                    .collect();
                jobs.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(Response::BatchJobs { batch, jobs })
            }
            Request::ActBatch { name, action } => {
                let ids = self.batch_members(&name)?;
                let mut results = Vec::with_capacity(ids.len());
                for (job, id) in ids {
                    let r = self.act(&id, action).await;
                    results.push((job, r.map_err(|e| e.message)));
                }
                Ok(Response::BatchDone { results })
            }
            Request::List { after, limit } => self.list(after.as_deref(), limit),
            Request::Status { job } => {
                let id = self.find(&job)?;
                let events = self.events(&id, 0).await;
                let recent = events[events.len().saturating_sub(20)..].to_vec();
                Ok(Response::Job {
                    job: Box::new(self.jobs[&id].record.detail(recent)),
                })
            }
            Request::ReportCsv { job, batch } => {
                let details = self.report_details(job.as_deref(), batch.as_deref())?;
                let csv = migrated_ipc::report::csv(&details).map_err(|e| {
                    ControlError::new(ErrorKind::Internal, format!("the CSV report: {e}"))
                })?;
                Ok(Response::Report { csv })
            }
            Request::Throughput { job } => {
                let ids = match job {
                    Some(job) => vec![self.find(&job)?],
                    None => self.ordered_ids(),
                };
                let now = crate::throughput::now();
                let jobs = ids
                    .iter()
                    .map(|id| {
                        let e = &self.jobs[id];
                        JobThroughput {
                            id: id.clone(),
                            name: e.record.spec.name.clone(),
                            samples: e.throughput.samples(now),
                        }
                    })
                    .collect();
                Ok(Response::Throughput { jobs })
            }
            Request::Events { job, after } => {
                let id = self.find(&job)?;
                Ok(Response::Events {
                    events: self.events(&id, after).await,
                })
            }
            Request::Act { job, action } => {
                let id = self.find(&job)?;
                self.act(&id, action)
                    .await
                    .map(|status| Response::Done { status })
            }
            Request::DeltaBatch { name, final_run } => {
                let ids = self.batch_members(&name)?;
                let mut results = Vec::with_capacity(ids.len());
                for (job, id) in ids {
                    let r = self.delta(&id, None, None, final_run).await;
                    results.push((job, r.map_err(|e| e.message)));
                }
                Ok(Response::BatchDone { results })
            }
            Request::SetCredentials {
                job,
                source_secret,
                destination_secret,
            } => {
                let id = self.find(&job)?;
                self.set_credentials(&id, source_secret, destination_secret)
                    .await
                    .map(|status| Response::Done { status })
            }
            Request::ClearCredentials {
                job,
                source,
                destination,
            } => {
                let id = self.find(&job)?;
                self.clear_credentials(&id, source, destination)
                    .await
                    .map(|status| Response::Done { status })
            }
            Request::BatchCredentials {
                name,
                source_secret,
                destination_secret,
                csv,
            } => {
                self.batch_credentials(&name, source_secret, destination_secret, &csv)
                    .await
            }
            Request::EndpointCreate { endpoint, replace } => {
                self.endpoint_create(*endpoint, replace).await
            }
            Request::EndpointList => self.endpoint_list(None),
            Request::EndpointShow { name } => self.endpoint_list(Some(&name)),
            Request::EndpointDelete { name } => self.endpoint_delete(&name).await,
            Request::Show { job } => {
                let id = self.find(&job)?;
                let (spec, secrets) = self.show(&id);
                Ok(Response::Settings {
                    spec: Box::new(spec),
                    secrets,
                })
            }
            Request::Edit { job, spec } => {
                let id = self.find(&job)?;
                self.edit(&id, *spec)
                    .await
                    .map(|status| Response::Done { status })
            }
            Request::Delta {
                job,
                source_secret,
                destination_secret,
                final_run,
            } => {
                let id = self.find(&job)?;
                self.delta(&id, source_secret, destination_secret, final_run)
                    .await
                    .map(|status| Response::Done { status })
            }
        }
    }

    /// Every job's id, oldest first (as `list` gives them).
    fn ordered_ids(&mut self) -> Vec<String> {
        self.jobs
            .fresh()
            .oldest_first()
            .map(|(_, id)| id.to_owned())
            .collect()
    }

    /// The jobs of a report in the order `migratectl report` takes them: the one job, a
    /// batch's by name, or every job oldest first.
    fn report_details(
        &mut self,
        job: Option<&str>,
        batch: Option<&str>,
    ) -> Result<Vec<migrated_ipc::JobDetail>, ControlError> {
        let ids: Vec<String> = match (job, batch) {
            (Some(job), _) => vec![self.find(job)?],
            (None, Some(name)) => {
                self.batch(name)?;
                let mut jobs: Vec<(String, String)> = self
                    .jobs
                    .iter()
                    .filter(|(_, e)| e.record.batch.as_deref() == Some(name))
                    .map(|(id, e)| (e.record.spec.name.clone(), id.clone()))
                    .collect();
                jobs.sort();
                jobs.into_iter().map(|(_, id)| id).collect()
            }
            (None, None) => self.ordered_ids(),
        };
        Ok(ids
            .iter()
            .map(|id| self.jobs[id].record.detail(Vec::new()))
            .collect())
    }

    /// The jobs, oldest first (by creation time, then id): all of them, or with a `limit` one
    /// page after the cursor `after`. A page costs its own jobs (read from the jobs' index by
    /// creation), so a 50,000-job list read in pages never builds one giant reply.
    fn list(&mut self, after: Option<&str>, limit: Option<usize>) -> Reply {
        let problems: Vec<String> = self
            .dropin_problems
            .iter()
            .map(|(_, m)| m.clone())
            .collect();
        let index = self.jobs.fresh();
        let jobs = index.jobs();
        let Some(limit) = limit else {
            if after.is_some() {
                return Err(ControlError::new(
                    ErrorKind::Invalid,
                    "a list cursor (after) needs a page size (limit)",
                ));
            }
            let jobs: Vec<JobSummary> = index
                .oldest_first()
                .map(|(_, id)| jobs[id].record.summary())
                .collect();
            return Ok(Response::Jobs {
                jobs,
                problems,
                next: None,
            });
        };
        if limit == 0 || limit > MAX_PAGE {
            return Err(ControlError::new(
                ErrorKind::Invalid,
                format!("a list page holds 1 to {MAX_PAGE} jobs (limit), not {limit}"),
            ));
        }
        let after = after.map(read_cursor).transpose()?;
        let mut keys: Vec<(u64, &str)> = match after {
            Some(cursor) => index.after(cursor).take(limit + 1).collect(),
            None => index.oldest_first().take(limit + 1).collect(),
        };
        let more = keys.len() > limit;
        keys.truncate(limit);
        let next = more
            .then(|| keys.last().map(|(created, id)| format!("{created}/{id}")))
            .flatten();
        let jobs = keys
            .iter()
            .map(|(_, id)| jobs[*id].record.summary())
            .collect();
        Ok(Response::Jobs {
            jobs,
            problems,
            next,
        })
    }

    /// `(job name, id)` of every job of a batch, by name.
    fn batch_members(&mut self, name: &str) -> Result<Vec<(String, String)>, ControlError> {
        let jobs = self.jobs.fresh();
        let mut ids: Vec<(String, String)> = jobs
            .batch(name)
            .into_iter()
            .map(|id| (jobs.jobs()[id].record.spec.name.clone(), id.to_owned()))
            .collect();
        if ids.is_empty() {
            return Err(no_batch(name));
        }
        ids.sort();
        Ok(ids)
    }

    async fn events(&self, id: &str, after: u64) -> Vec<EventRow> {
        self.journal.events(id, after).await
    }

    /// Changes the daemon-wide limits (those given), and says what they are now.
    fn limits(&mut self, max_jobs: Option<usize>, per_host: Option<usize>) -> Reply {
        if let Some(n) = per_host {
            self.settings.max_connections_per_host = n;
            tracing::info!(
                max_connections_per_host = n,
                "Per-host connection limit changed."
            );
        }
        if let Some(n) = max_jobs {
            if n == 0 {
                return Err(ControlError::new(
                    ErrorKind::Invalid,
                    "max_jobs must be at least 1 (pause jobs to stop them)",
                ));
            }
            self.settings.max_jobs = n;
            tracing::info!(max_jobs = n, "Global job limit changed.");
        }
        Ok(Response::Limits {
            max_jobs: self.settings.max_jobs,
            max_connections_per_host: self.settings.max_connections_per_host,
            running: self.running(),
        })
    }

    /// One batch with its counts.
    pub(super) fn batch(&self, name: &str) -> Result<BatchSummary, ControlError> {
        self.batches()
            .into_iter()
            .find(|b| b.name == name)
            .ok_or_else(|| no_batch(name))
    }

    /// Every batch with its counts, by name.
    fn batches(&self) -> Vec<BatchSummary> {
        let mut by_name: std::collections::BTreeMap<String, BatchSummary> = Default::default();
        for e in self.jobs.values() {
            let Some(name) = &e.record.batch else {
                continue;
            };
            let b = by_name.entry(name.clone()).or_insert_with(|| BatchSummary {
                name: name.clone(),
                ..Default::default()
            });
            b.jobs += 1;
            b.items_done += e.record.run.items_done;
            b.items_total += e.record.run.items_total;
            b.failed += e.record.run.failed.len() as u64;
            let label = e.record.status.label().to_owned();
            match b.statuses.iter_mut().find(|(l, _)| *l == label) {
                Some((_, n)) => *n += 1,
                None => b.statuses.push((label, 1)),
            }
        }
        by_name.into_values().collect()
    }

    /// The plugins loaded and the files skipped.
    fn plugins(&self) -> Response {
        let p = &self.settings.plugins;
        Response::Plugins {
            plugins: p
                .loaded
                .iter()
                .map(|plugin| {
                    let info = plugin.info();
                    PluginRow {
                        name: info.name.clone(),
                        version: info.version.clone(),
                        abi: plugin.abi().to_string(),
                        kinds: info.kinds.iter().map(ToString::to_string).collect(),
                        description: info.description.clone(),
                        path: plugin.path().display().to_string(),
                        settings: info
                            .settings
                            .iter()
                            .map(|s| PluginSetting {
                                name: s.name.clone(),
                                kind: s.kind.to_string(),
                                default: s.default.clone(),
                                help: s.help.clone(),
                            })
                            .collect(),
                    }
                })
                .collect(),
            rejected: p
                .rejected
                .iter()
                .map(|r| RejectedPlugin {
                    path: r.path.display().to_string(),
                    reason: r.reason.clone(),
                })
                .collect(),
        }
    }
}

/// `(created, id)` from a list cursor (`CREATED/ID`, as [`Manager::list`] makes them).
fn read_cursor(cursor: &str) -> Result<(u64, &str), ControlError> {
    cursor
        .split_once('/')
        .and_then(|(created, id)| Some((created.parse().ok()?, id)))
        .ok_or_else(|| {
            ControlError::new(
                ErrorKind::Invalid,
                format!(
                    "list cursor {cursor:?} is not one this daemon gave (a page's `next`): list again from the start"
                ),
            )
        })
}

fn no_batch(name: &str) -> ControlError {
    ControlError::new(
        ErrorKind::NotFound,
        format!("no batch named {name:?} (migratectl batch list shows them)"),
    )
}
