//! Creating jobs and batches. Everything that can be checked without a network is checked
//! before anything is stored: a bad job or batch changes nothing and gets one error naming
//! the job (or row) and field; a batch reports every problem of every row at once.

use migrated_core::{JobSpec, JobStatus};
use migrated_ipc::{ControlError, ErrorKind};
use migrated_plugin_api::wire::Kind;

use super::{Entry, Manager};
use crate::job::{EndpointSpecExt, JobSpecExt};
use crate::record::{JobRecord, RunReport, now};

impl Manager {
    /// Checks a job's settings as far as they can be checked without a network (the same
    /// checks for a new job and an edited one).
    pub(super) fn check_spec(&self, spec: &JobSpec, place: &str) -> Result<(), ControlError> {
        let place = place.to_owned();
        // Validate everything that can be checked without a network, before storing anything.
        migrated_core::intake::validate(spec, &place)
            .map_err(|e| ControlError::new(ErrorKind::Invalid, e.to_string()))?;
        if let Err(e) = spec.copy_config(&place) {
            return Err(ControlError::new(ErrorKind::Invalid, format!("{e:#}")));
        }
        for (side, e) in [("source", &spec.source), ("destination", &spec.destination)] {
            for (field, given) in [
                ("password_file", e.password_file.is_some()),
                ("admin_password_file", e.admin_password_file.is_some()),
            ] {
                if given {
                    return Err(ControlError::new(
                        ErrorKind::Invalid,
                        format!(
                            "{place}: [{side}] {field}: the client reads the file and sends the secret; the daemon takes no paths"
                        ),
                    ));
                }
            }
        }
        let kind = match crate::job::source_kind(&spec.source, &self.settings.plugins, &place) {
            Ok(k) => k,
            Err(err) => return Err(ControlError::new(ErrorKind::Invalid, format!("{err:#}"))),
        };
        // Everything but the secrets, which may come later (`delta`) and are checked by the
        // first login.
        let later = crate::job::Credentials::Later;
        let plugins = &self.settings.plugins;
        let checked = match kind {
            Kind::Mail => crate::job::plugin_source(spec, plugins, &place, later)
                .and_then(|_| spec.destination.endpoint_for(&place, "destination", later))
                .map(|_| ()),
            Kind::Contacts => crate::job::contacts_sides(spec, plugins, &place, later).map(|_| ()),
        };
        if let Err(err) = checked {
            return Err(ControlError::new(ErrorKind::Invalid, format!("{err:#}")));
        }
        Ok(())
    }

    /// Creates one job per CSV row. Everything is validated first; a problem anywhere stores
    /// nothing and every problem is reported at once.
    pub(super) async fn create_batch(
        &mut self,
        name: String,
        mut template: JobSpec,
        csv: &str,
    ) -> Result<String, ControlError> {
        use migrated_core::batch::BatchProblem;
        // A batch syncs every 24 hours until it is completed, as Exchange Online's do (its
        // credentials are kept until then); `delta_every_hours = 0` in the template: no syncs.
        template.schedule.delta_every_hours.get_or_insert(24.0);
        self.apply_endpoints(&mut template)?;
        let mut problems = Vec::new();
        if name.trim().is_empty() || name.contains('/') {
            return Err(ControlError::new(
                ErrorKind::Invalid,
                "a batch needs a name without '/'",
            ));
        }
        if self.jobs.fresh().has_batch(&name) {
            problems.push(BatchProblem::Exists(name.clone()));
        }
        let (members, csv_problems) = batch_specs(&name, &template, csv)?;
        problems.extend(csv_problems);
        let rows = members.len();
        // A daemon running one shard validates every row (the same file is checked the same
        // way everywhere), then takes its own.
        let members: Vec<BatchMember> = match self.settings.shard {
            None => members,
            Some(shard) => {
                for m in &members {
                    if let Some(planned) = m.planned
                        && planned.count != shard.count
                    {
                        problems.push(BatchProblem::OtherShards {
                            row: m.row,
                            planned,
                            daemon: shard,
                        });
                    }
                }
                members
                    .into_iter()
                    .filter(|m| shard.owns(m.planned, &m.mailbox))
                    .collect()
            }
        };
        // The names taken, from the jobs' index by name: a row costs a lookup.
        let jobs = self.jobs.fresh();
        let mut specs = Vec::with_capacity(members.len());
        for member in members {
            if !jobs.named(&member.spec.name).is_empty() {
                problems.push(BatchProblem::Exists(member.spec.name.clone()));
            }
            specs.push(member.spec);
        }
        if !problems.is_empty() {
            let message = problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n");
            return Err(ControlError::new(ErrorKind::Invalid, message));
        }
        // Validate the template once (patterns, endpoints) before storing anything.
        if let Some(first) = specs.first()
            && let Err(e) = first.copy_config(&format!("batch {name:?}"))
        {
            return Err(ControlError::new(ErrorKind::Invalid, format!("{e:#}")));
        }
        let count = specs.len();
        for spec in specs {
            // The names were checked above (the CSV's own duplicates by the parser).
            self.create_named(spec, Some(name.clone())).await?;
        }
        match self.settings.shard {
            Some(shard) => {
                tracing::info!(batch = %name, mailboxes = count, rows, shard = %shard, "Batch created: this shard's mailboxes.");
            }
            None => tracing::info!(batch = %name, mailboxes = count, "Batch created."),
        }
        Ok(name)
    }

    pub(super) async fn create(
        &mut self,
        spec: JobSpec,
        batch: Option<String>,
    ) -> Result<String, ControlError> {
        if spec.name.trim().is_empty() {
            return Err(ControlError::new(
                ErrorKind::Invalid,
                "the job needs a name (field `name`)",
            ));
        }
        if !self.jobs.fresh().named(&spec.name).is_empty() {
            return Err(ControlError::new(
                ErrorKind::Conflict,
                format!(
                    "a job named {:?} exists already: choose another name or delete it",
                    spec.name
                ),
            ));
        }
        self.create_named(spec, batch).await
    }

    /// [`Self::create`] for a name known to be free (a batch checks all its rows' names in
    /// one pass).
    async fn create_named(
        &mut self,
        spec: JobSpec,
        batch: Option<String>,
    ) -> Result<String, ControlError> {
        if let Some(fault) = self.journal.fault() {
            return Err(ControlError::new(
                ErrorKind::Internal,
                format!(
                    "the job store at {} cannot be written ({}): no job is created until it can",
                    self.journal.path(),
                    fault
                ),
            ));
        }
        let place = format!("job {:?}", spec.name);
        let mut spec = spec;
        self.apply_endpoints(&mut spec)
            .map_err(|e| ControlError::new(e.kind, format!("{place}: {}", e.message)))?;
        self.check_spec(&spec, &place)?;
        let mut bytes = [0u8; 6];
        if getrandom::fill(&mut bytes).is_err() {
            return Err(ControlError::new(
                ErrorKind::Internal,
                "no randomness for a job id",
            ));
        }
        let id: String = format!(
            "j{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let t = now();
        let record = JobRecord {
            version: crate::record::RECORD_VERSION,
            id: id.clone(),
            spec,
            status: JobStatus::Queued,
            created: t,
            updated: t,
            finished: None,
            error: None,
            cancel_requested: false,
            run: RunReport::default(),
            next_event: 1,
            batch,
            dropin: None,
            final_delta: false,
            completed_once: false,
            alerts: Vec::new(),
            next_alert: 0,
        };
        let waiting = !record.has_credentials();
        self.jobs.insert(id.clone(), Entry::new(record));
        self.persist(&id).await;
        self.event(&id, "info", "Job created.".into()).await;
        if waiting {
            self.set_status(&id, JobStatus::WaitingForCredentials).await;
        }
        Ok(id)
    }
}

/// One mailbox of a batch: its job spec, built from the template and its CSV row.
pub(crate) struct BatchMember {
    /// The job.
    pub spec: JobSpec,
    /// Its row in the CSV (header = 1).
    pub row: usize,
    /// Its mailbox (`EmailAddress`), which picks its shard without a plan.
    pub mailbox: String,
    /// The shard its plan gave it (`Shard` column).
    pub planned: Option<migrated_core::shard::Shard>,
    /// The destination logs in with the batch's shared secret (an admin/proxy password, an
    /// administrator), not one of the row's own: a refused login then means the mailbox is
    /// not there.
    pub shared_destination: bool,
}

/// The jobs a batch's CSV makes from its template, and the CSV's problems (every one; no
/// member then). Pure: used to create the batch and to pre-flight it.
///
/// # Errors
///
/// A row without any destination password, naming the row and what to add.
pub(crate) fn batch_specs(
    name: &str,
    template: &JobSpec,
    csv: &str,
) -> Result<(Vec<BatchMember>, Vec<migrated_core::batch::BatchProblem>), ControlError> {
    // A source administrator, service account or application serves every row that gives
    // no password of its own.
    let rows = match migrated_core::batch::parse_batch_with(csv, template.source.shared_login()) {
        Ok(rows) => rows,
        Err(p) => return Ok((Vec::new(), p)),
    };
    let mut members = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut spec = template.clone();
        spec.name = format!("{name}/{}", row.email);
        spec.source.user = row.source_user.clone();
        spec.source.password_file = None;
        // A row's own password logs in as its user, even where the template names an
        // administrator; without one, the template's administrator logs in.
        if let Some(p) = &row.source_password {
            spec.source.use_own_password(p.clone());
        }
        spec.destination.user = row
            .destination_user
            .clone()
            .unwrap_or_else(|| row.email.clone());
        spec.destination.password_file = None;
        if let Some(p) = &row.destination_password {
            spec.destination.use_own_password(p.clone());
        } else if spec.destination.login_secret().is_none() {
            return Err(ControlError::new(
                ErrorKind::Invalid,
                format!(
                    "row {}: no destination password: add a DestinationPassword column, or give the batch's destination password or its admin_user and admin_password_file",
                    row.row
                ),
            ));
        }
        members.push(BatchMember {
            spec,
            row: row.row,
            mailbox: row.email.clone(),
            planned: row.shard,
            shared_destination: row.destination_password.is_none(),
        });
    }
    Ok((members, Vec::new()))
}
