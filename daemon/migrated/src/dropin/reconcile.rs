//! What a rescan of the drop-in directory means: the files found against the jobs made from
//! files decide, per file, to create a job (or a batch), update a job's settings for its next
//! run, leave it, or note that its file is gone (and cancel the job if the file asked for it
//! with `on_remove = "cancel"`). A file with an error changes nothing and is reported. Pure:
//! the manager applies the changes.
//!
//! A file whose job was deleted (by `delete` or at the end of retention) is *consumed*: the
//! same file (same fingerprint) is not turned into a job again, which would copy everything a
//! second time. An edited file is a new file.

use migrated_core::{Action, JobSpec, JobStatus, OnRemove};

use super::DropIn;

/// A job as the reconciliation sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Known<'a> {
    pub id: &'a str,
    /// The file it was made from, with the fingerprint it had: `(file, fingerprint)`.
    pub dropin: Option<&'a (String, String)>,
    pub status: JobStatus,
    pub on_remove: OnRemove,
}

/// One thing to do.
#[derive(Debug)]
pub(crate) enum Change<'a> {
    /// The file cannot be read or parsed: say so; nothing changes.
    Problem { file: &'a str, message: &'a str },
    /// A new batch file: create its batch from the template and the CSV.
    CreateBatch {
        file: &'a DropIn,
        template: &'a JobSpec,
        csv: &'a str,
    },
    /// A new job file: create its job.
    Create { file: &'a DropIn, spec: &'a JobSpec },
    /// The job's file changed: its settings change from its next run (it keeps its name).
    Update {
        id: String,
        file: &'a DropIn,
        spec: &'a JobSpec,
    },
    /// The job's file is gone: the job forgets it, and is cancelled if the file asked for
    /// that and the job can still be cancelled.
    Removed {
        id: String,
        file: String,
        cancel: bool,
    },
}

/// The changes that make the jobs follow the files, in the order of the files found (sorted
/// by name), then the removed files.
pub(crate) fn reconcile<'a>(
    found: &'a [DropIn],
    known: &[Known<'_>],
    consumed: &[(String, String)],
) -> Vec<Change<'a>> {
    let owner = |file: &str| {
        known
            .iter()
            .find(|k| k.dropin.is_some_and(|(f, _)| f == file))
    };
    let is_consumed = |d: &DropIn| consumed.iter().any(|(f, h)| *f == d.file && *h == d.hash);
    let mut out = Vec::new();
    for d in found {
        match (&d.spec, &d.batch_csv) {
            (Err(message), _) => out.push(Change::Problem {
                file: &d.file,
                message,
            }),
            // A batch is made once; its jobs keep to the file they came from.
            (Ok(template), Some(csv)) => {
                if owner(&d.file).is_none() && !is_consumed(d) {
                    out.push(Change::CreateBatch {
                        file: d,
                        template,
                        csv,
                    });
                }
            }
            (Ok(spec), None) => match owner(&d.file) {
                None if is_consumed(d) => {}
                None => out.push(Change::Create { file: d, spec }),
                Some(k) if k.dropin.is_some_and(|(_, hash)| *hash != d.hash) => {
                    out.push(Change::Update {
                        id: k.id.to_owned(),
                        file: d,
                        spec,
                    });
                }
                Some(_) => {}
            },
        }
    }
    let mut removed: Vec<Change<'a>> = known
        .iter()
        .filter_map(|k| {
            let (file, _) = k.dropin?;
            (!found.iter().any(|d| d.file == *file)).then(|| Change::Removed {
                id: k.id.to_owned(),
                file: file.clone(),
                cancel: k.on_remove == OnRemove::Cancel && k.status.apply(Action::Cancel).is_ok(),
            })
        })
        .collect();
    removed.sort_by(|a, b| match (a, b) {
        (Change::Removed { id: a, .. }, Change::Removed { id: b, .. }) => a.cmp(b),
        _ => std::cmp::Ordering::Equal,
    });
    out.extend(removed);
    out
}

/// A changed drop-in file's settings for a job that exists: the file's, keeping what
/// `migratectl` set on the job that the file does not say: its tags (the file's and those
/// added with `migratectl tag`) and its priority when the file leaves it at the default.
pub(crate) fn updated_spec(file: &JobSpec, job: &JobSpec) -> JobSpec {
    let mut spec = file.clone();
    spec.name.clone_from(&job.name);
    for t in &job.tags {
        if !spec.tags.contains(t) {
            spec.tags.push(t.clone());
        }
    }
    spec.tags.sort();
    if spec.priority == JobSpec::DEFAULT_PRIORITY {
        spec.priority = job.priority;
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_keeps_the_tags_and_priority_migratectl_set() {
        let mut job = spec("alice");
        job.tags = vec!["vip".into()];
        job.priority = 5;
        let mut file = spec("alice");
        file.tags = vec!["wave-1".into()];
        file.limits.connections = 7;
        let s = updated_spec(&file, &job);
        assert_eq!(s.tags, ["vip", "wave-1"]);
        assert_eq!((s.priority, s.limits.connections), (5, 7));
        // A priority the file sets wins.
        file.priority = 20;
        assert_eq!(updated_spec(&file, &job).priority, 20);
    }

    fn spec(name: &str) -> JobSpec {
        toml::from_str(&format!(
            "name = {name:?}\n[source]\nhost = \"s\"\nuser = \"u\"\n[destination]\nhost = \"d\"\nuser = \"u\"\n"
        ))
        .unwrap()
    }

    fn file(name: &str, hash: &str) -> DropIn {
        DropIn {
            file: name.into(),
            hash: hash.into(),
            spec: Ok(spec(name)),
            batch_csv: None,
        }
    }

    fn job<'a>(id: &'a str, dropin: &'a (String, String)) -> Known<'a> {
        Known {
            id,
            dropin: Some(dropin),
            status: JobStatus::Copying,
            on_remove: OnRemove::Keep,
        }
    }

    fn pair(f: &str, h: &str) -> (String, String) {
        (f.into(), h.into())
    }

    /// The changes in words, to compare.
    fn said(changes: &[Change<'_>]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Problem { file, message } => format!("problem {file}: {message}"),
                Change::CreateBatch {
                    file,
                    template,
                    csv,
                } => {
                    format!(
                        "batch {} from {} ({} lines)",
                        template.name,
                        file.file,
                        csv.lines().count()
                    )
                }
                Change::Create { file, spec } => format!("create {} from {}", spec.name, file.file),
                Change::Update { id, file, spec } => {
                    format!(
                        "update {id} to {} from {} {}",
                        spec.name, file.file, file.hash
                    )
                }
                Change::Removed { id, file, cancel } => {
                    format!("removed {file} of {id}, cancel {cancel}")
                }
            })
            .collect()
    }

    #[test]
    fn a_new_file_becomes_a_job_and_a_known_unchanged_file_changes_nothing() {
        let found = [file("a.toml", "1"), file("b.toml", "2")];
        let a = pair("a.toml", "1");
        assert_eq!(
            said(&reconcile(&found, &[job("ja", &a)], &[])),
            ["create b.toml from b.toml"]
        );
    }

    #[test]
    fn an_edited_file_updates_its_job() {
        let found = [file("a.toml", "2")];
        let a = pair("a.toml", "1");
        assert_eq!(
            said(&reconcile(&found, &[job("ja", &a)], &[])),
            ["update ja to a.toml from a.toml 2"]
        );
    }

    #[test]
    fn a_consumed_file_is_not_made_again_but_its_edit_is() {
        let consumed = [pair("a.toml", "1")];
        assert!(reconcile(&[file("a.toml", "1")], &[], &consumed).is_empty());
        assert_eq!(
            said(&reconcile(&[file("a.toml", "2")], &[], &consumed)),
            ["create a.toml from a.toml"]
        );
    }

    #[test]
    fn a_removed_file_cancels_only_when_asked_and_only_what_can_be_cancelled() {
        let (a, b, c) = (
            pair("a.toml", "1"),
            pair("b.toml", "1"),
            pair("c.toml", "1"),
        );
        let mut cancel = job("jb", &b);
        cancel.on_remove = OnRemove::Cancel;
        let mut done = job("jc", &c);
        done.on_remove = OnRemove::Cancel;
        done.status = JobStatus::Cancelled;
        assert_eq!(
            said(&reconcile(&[], &[done, job("ja", &a), cancel], &[])),
            [
                "removed a.toml of ja, cancel false",
                "removed b.toml of jb, cancel true",
                "removed c.toml of jc, cancel false",
            ]
        );
    }

    #[test]
    fn a_broken_file_is_a_problem_and_its_job_is_left_alone() {
        let mut broken = file("a.toml", "2");
        broken.spec = Err("job file a.toml: line 3: unknown field `prot`".into());
        let a = pair("a.toml", "1");
        assert_eq!(
            said(&reconcile(&[broken], &[job("ja", &a)], &[])),
            ["problem a.toml: job file a.toml: line 3: unknown field `prot`"]
        );
    }

    #[test]
    fn a_batch_file_makes_its_batch_once() {
        let mut batch = file("staff.toml", "1");
        batch.batch_csv = Some("EmailAddress\nalice@example.org\n".into());
        let found = [batch];
        assert_eq!(
            said(&reconcile(&found, &[], &[])),
            ["batch staff.toml from staff.toml (2 lines)"]
        );
        let member = pair("staff.toml", "0");
        assert!(
            reconcile(&found, &[job("j1", &member), job("j2", &member)], &[]).is_empty(),
            "a batch's jobs keep to their file, even when it changes"
        );
    }
}
