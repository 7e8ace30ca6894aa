//! What the loop does on its own: start queued jobs ([`crate::scheduler`]), pause runs whose
//! window ended and queue recurring deltas, delete expired jobs ([`crate::retention`]), and
//! make the jobs follow the drop-in directory ([`crate::dropin::reconcile`]). The decisions are
//! made there; here they are applied and said.

use migrated_core::{Action, JobStatus};
use migrated_ipc::text::clock;

use super::Manager;
use crate::dropin::reconcile::{Change, Known, reconcile};
use crate::record::{JobRecord, now};
use crate::retention::{self, Kept};
use crate::scheduler::{self, Footprint, Limits, Start};

impl Manager {
    /// Starts queued jobs while slots are free.
    pub(super) async fn schedule(&mut self) {
        if self.shutting_down || self.journal.is_down() {
            return;
        }
        let per_host = self.settings.per_host();
        let shard = self.settings.shard;
        let limits = Limits {
            max_jobs: self.settings.max_jobs,
            max_connections_per_host: per_host,
        };
        // Every slot taken: nothing to look at (the pass must not cost more as the queue grows).
        if !scheduler::has_free_slot(self.running(), limits) {
            return;
        }
        let t = now();
        // Jobs whose window was found closed and has opened since go back to their lanes.
        for id in self.jobs.fresh().reopened(t) {
            if let Some(e) = self.jobs.get_mut(&id) {
                e.window_closed_until = None;
            }
        }
        let endpoints = &self.endpoints;
        let jobs = self.jobs.fresh();
        let running: Vec<Footprint> = jobs
            .running()
            .map(|id| Footprint::of(&jobs.jobs()[id].record, per_host, endpoints, shard))
            .collect();
        let decisions = scheduler::starts(
            jobs.lanes(),
            &running,
            limits,
            |class| Footprint::of_class(class, per_host, endpoints, shard),
            |id| {
                let schedule = &jobs.jobs()[id].record.spec.schedule;
                if schedule.allows(t) {
                    Ok(())
                } else {
                    Err(schedule.next_opening(t))
                }
            },
        );
        let mut refused = false;
        for decision in decisions {
            match decision {
                Start::Now(id) => {
                    if let Some(e) = self.jobs.get_mut(&id) {
                        e.window_noted = false;
                        e.window_closed_until = None;
                    }
                    self.start(&id).await;
                    // A job that could not start (its plugin is gone, say) failed and left
                    // its slot free.
                    refused |= self.jobs.get(&id).is_some_and(|e| e.stop.is_none());
                }
                Start::OutsideWindow { id, opens } => {
                    let Some(e) = self.jobs.get_mut(&id) else {
                        continue;
                    };
                    e.window_closed_until = Some(scheduler::closed_until(opens, t));
                    if e.window_noted {
                        continue;
                    }
                    e.window_noted = true;
                    let when = opens.map_or_else(
                        || "no window in the next 8 days".to_owned(),
                        |t| format!("at {} UTC", clock(t)),
                    );
                    self.event(
                        &id,
                        "info",
                        format!("Waiting for its schedule window: it opens {when}."),
                    )
                    .await;
                }
            }
        }
        if refused {
            Box::pin(self.schedule()).await;
        }
    }

    /// On every tick: stop runs whose schedule window ended (they go back to the queue), and
    /// queue the recurring deltas that are due.
    pub(super) async fn apply_schedules(&mut self) {
        let t = now();
        let jobs = self.jobs.fresh();
        let ending: Vec<String> = jobs
            .running()
            .filter(|id| {
                let e = &jobs.jobs()[*id];
                !e.window_stop && scheduler::window_ended(&e.record.spec.schedule, t)
            })
            .map(str::to_owned)
            .collect();
        for id in ending {
            if let Some(e) = self.jobs.get_mut(&id) {
                e.window_stop = true;
            }
            self.stop_run(&id);
            self.event(
                &id,
                "info",
                "Its schedule window ended: pausing at the next checkpoint.".into(),
            )
            .await;
        }
        let due = self.jobs.fresh().deltas_due(t);
        for id in due {
            self.event(
                &id,
                "info",
                "Recurring delta: copying what is new since the last run.".into(),
            )
            .await;
            if let Some(e) = self.jobs.get_mut(&id) {
                e.record.finished = None;
            }
            self.set_status(&id, JobStatus::Queued).await;
        }
    }

    /// Deletes jobs whose retention period is over.
    pub(super) async fn sweep(&mut self) {
        if self.journal.is_down() {
            return;
        }
        let t = now();
        let retention = self.settings.retention;
        // Only jobs finished a retention period ago or longer can have expired.
        let jobs = self.jobs.fresh();
        let kept = jobs
            .finished_by(t.saturating_sub(retention.as_secs()))
            .map(|(id, e)| Kept {
                id,
                finished: e.record.finished,
                running: e.stop.is_some(),
                syncs_pending: e.record.syncs_pending(),
            });
        for expired in retention::expired(kept, retention, t) {
            let id = expired.id;
            match self.journal.delete_job(&id).await {
                Ok(()) => {
                    let removed = self.jobs.remove(&id);
                    if let Some(e) = &removed {
                        self.consume_dropin(&e.record).await;
                    }
                    let name = removed.map(|e| e.record.spec.name).unwrap_or_default();
                    tracing::info!(job_id = %id, job = %name, reason = %expired.reason, "Job deleted: its retention period is over.");
                }
                Err(failed) => {
                    tracing::error!(job_id = %id, error = %failed.error, "Expired job could not be deleted.");
                    self.outage(failed.outage).await;
                }
            }
        }
    }

    /// Makes the jobs follow the drop-in directory: new files become jobs, changed files
    /// update their job's settings for its next run, removed files stop nothing unless the
    /// file said `on_remove = "cancel"`. A file with an error changes nothing and is reported
    /// (once per change) in the journal and in `migratectl list`.
    pub(super) async fn rescan(&mut self) {
        let Some(dir) = self.settings.jobs_dir.clone() else {
            return;
        };
        let found = crate::dropin::scan(&dir);
        let known: Vec<Known<'_>> = self
            .jobs
            .iter()
            .map(|(id, e)| Known {
                id,
                dropin: e.record.dropin.as_ref(),
                status: e.record.status,
                on_remove: e.record.spec.on_remove,
            })
            .collect();
        // The changes borrow the files found only: the jobs can be changed while applying them.
        let changes = reconcile(&found, &known, &self.dropin_consumed);
        drop(known);
        let mut problems = Vec::new();
        let place = |file: &str| format!("job file {}", dir.join(file).display());
        for change in changes {
            match change {
                Change::Problem { file, message } => {
                    self.note_problem(&mut problems, file, message.to_owned());
                }
                Change::CreateBatch {
                    file,
                    template,
                    csv,
                } => match self
                    .create_batch(template.name.clone(), template.clone(), csv)
                    .await
                {
                    Ok(batch) => {
                        let members: Vec<String> = self
                            .jobs
                            .iter()
                            .filter(|(_, e)| e.record.batch.as_deref() == Some(batch.as_str()))
                            .map(|(id, _)| id.clone())
                            .collect();
                        if members.is_empty() {
                            // A shard without a row of this batch: the file is done with
                            // here, and is not made again at every rescan.
                            self.mark_consumed((file.file.clone(), file.hash.clone()))
                                .await;
                        }
                        for id in members {
                            if let Some(e) = self.jobs.get_mut(&id) {
                                e.record.dropin = Some((file.file.clone(), file.hash.clone()));
                            }
                            self.persist(&id).await;
                        }
                        tracing::info!(file = %file.file, batch = %batch, "Batch created from a drop-in file.");
                    }
                    Err(e) => {
                        let message = format!("{}: {}", place(&file.file), e.message);
                        self.note_problem(&mut problems, &file.file, message);
                    }
                },
                Change::Create { file, spec } => match self.create(spec.clone(), None).await {
                    Ok(id) => {
                        if let Some(e) = self.jobs.get_mut(&id) {
                            e.record.dropin = Some((file.file.clone(), file.hash.clone()));
                        }
                        self.persist(&id).await;
                        self.event(
                            &id,
                            "info",
                            format!("Created from the job file {}.", file.file),
                        )
                        .await;
                    }
                    Err(e) => {
                        let message = format!("{}: {}", place(&file.file), e.message);
                        self.note_problem(&mut problems, &file.file, message);
                    }
                },
                Change::Update { id, file, spec } => {
                    let mut spec = spec.clone();
                    // The endpoints it names, now (an unknown name leaves the sides as written).
                    let _ = self.apply_endpoints(&mut spec);
                    if let Some(e) = self.jobs.get_mut(&id) {
                        // The file's settings, with the tags and priority set by migratectl.
                        e.record.spec =
                            crate::dropin::reconcile::updated_spec(&spec, &e.record.spec);
                        // Its schedule may have changed: the next pass looks at it again.
                        e.window_closed_until = None;
                        e.record.dropin = Some((file.file.clone(), file.hash.clone()));
                    }
                    self.persist(&id).await;
                    self.event(
                        &id,
                        "info",
                        format!(
                            "Job file {} changed: the new settings apply from the next run.",
                            file.file
                        ),
                    )
                    .await;
                }
                Change::Removed { id, file, cancel } => {
                    if let Some(e) = self.jobs.get_mut(&id) {
                        e.record.dropin = None;
                    }
                    self.persist(&id).await;
                    if cancel {
                        // Refused only if the status changed since: then it simply goes on.
                        let _ = self.act(&id, Action::Cancel).await;
                        self.event(
                            &id,
                            "info",
                            format!(
                                "Job file {file} removed: the job is cancelled, as the file asked."
                            ),
                        )
                        .await;
                    } else {
                        self.event(
                            &id,
                            "info",
                            format!(
                                "Job file {file} removed: the job goes on (migratectl delete removes it)."
                            ),
                        ).await;
                    }
                }
            }
        }
        self.dropin_problems = problems;
    }

    /// Remembers that a deleted job came from a drop-in file, so the file does not make it
    /// again.
    pub(super) async fn consume_dropin(&mut self, record: &JobRecord) {
        if let Some(d) = &record.dropin {
            self.mark_consumed(d.clone()).await;
        }
    }

    /// Remembers (in the store) that a drop-in file `(file, fingerprint)` is done with.
    async fn mark_consumed(&mut self, done: (String, String)) {
        if self.dropin_consumed.contains(&done) {
            return;
        }
        self.dropin_consumed.push(done);
        let written = self
            .journal
            .save_setting("dropin-consumed", self.dropin_consumed.clone())
            .await;
        if let Err(failed) = written {
            tracing::error!(error = %failed.error, "The list of consumed drop-in files could not be saved.");
            self.outage(failed.outage).await;
        }
    }

    /// Records a drop-in file's problem; logs it unless it was already known (once per change).
    fn note_problem(&self, problems: &mut Vec<(String, String)>, file: &str, message: String) {
        if !self
            .dropin_problems
            .iter()
            .any(|(f, m)| f == file && *m == message)
        {
            tracing::error!(file = %file, "{message}");
        }
        problems.push((file.to_owned(), message));
    }
}
