//! Drop-in job files: `*.toml` in a watched directory (`/etc/migrated/jobs.d`). Any change
//! triggers a rescan that the daemon diffs against the jobs it made from files. Editors' atomic
//! saves and temporary files are handled by ignoring dot-files, backups and swap files and by
//! debouncing the events of one save into one rescan. What the files found mean for the jobs
//! is decided in [`reconcile`].

pub(crate) mod reconcile;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use migrated_core::{JobSpec, intake};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::msg::Msg;

/// One job file as found.
#[derive(Debug)]
pub(crate) struct DropIn {
    /// File name inside the directory.
    pub file: String,
    /// Hash of its bytes: a changed hash is a changed file.
    pub hash: String,
    /// The job (or batch), or what is wrong, naming the file, line and field.
    pub spec: Result<JobSpec, String>,
    /// A batch file (`batch = "staff.csv"`): the CSV text; the spec is then the template.
    pub batch_csv: Option<String>,
}

/// Whether a name is a job file rather than an editor's temporary or backup file.
fn is_job_file(name: &str) -> bool {
    name.ends_with(".toml")
        && !name.starts_with('.')
        && !name.starts_with('#')
        && !name.ends_with('~')
}

/// Reads every job file of the directory, sorted by name.
pub(crate) fn scan(dir: &Path) -> Vec<DropIn> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(is_job_file)
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|path| {
            let file = path.file_name()?.to_str()?.to_owned();
            let bytes = std::fs::read(&path).ok()?;
            let hash = fingerprint(&bytes);
            let (spec, batch_csv) = match parse(&path, &bytes) {
                Ok((spec, csv)) => (Ok(spec), csv),
                Err(e) => (Err(e), None),
            };
            let hash = match &batch_csv {
                // A batch file changes when its CSV does.
                Some(csv) => format!("{hash}-{}", fingerprint(csv.as_bytes())),
                None => hash,
            };
            Some(DropIn {
                spec,
                file,
                hash,
                batch_csv,
            })
        })
        .collect()
}

fn fingerprint(bytes: &[u8]) -> String {
    // A short content fingerprint (not a secret): FNV-1a over the bytes is enough to see change.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}-{}", bytes.len())
}

/// A job file, or a batch file: a template with `batch = "file.csv"` naming a CSV beside it
/// (read here, so an edited CSV is a changed file). A job file without a name takes its file's.
fn parse(path: &Path, bytes: &[u8]) -> Result<(JobSpec, Option<String>), String> {
    let place = format!("job file {}", path.display());
    let text = std::str::from_utf8(bytes).map_err(|e| format!("{place}: not UTF-8 text: {e}"))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let file = intake::load(text, dir, &place, |p| std::fs::read_to_string(p))
        .map_err(|e| e.to_string())?;
    let batch_csv = match &file.batch_csv {
        None => None,
        Some(csv) => Some(
            std::fs::read_to_string(csv)
                .map_err(|e| format!("{place}: batch: cannot read {}: {e}", csv.display()))?,
        ),
    };
    let mut spec = file.spec;
    if spec.name.trim().is_empty() {
        spec.name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("job")
            .to_owned();
    }
    Ok((spec, batch_csv))
}

/// Watches the directory; every burst of changes becomes one [`Msg::Rescan`] after 300 ms.
/// `Access` events are ignored: reading the files during a rescan would trigger another one.
///
/// # Errors
///
/// When the directory cannot be watched.
pub(crate) fn watch(
    dir: &Path,
    tx: mpsc::UnboundedSender<Msg>,
) -> notify::Result<notify::RecommendedWatcher> {
    let pending = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Handle::current();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, EventKind::Access(_)) || pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let (tx, pending) = (tx.clone(), pending.clone());
        runtime.spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            pending.store(false, Ordering::Release);
            let _ = tx.send(Msg::Rescan);
        });
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editor_files_are_not_job_files() {
        assert!(is_job_file("alice.toml"));
        for name in [
            ".alice.toml.swp",
            "alice.toml~",
            ".#alice.toml",
            "#alice.toml#",
            "alice.toml.tmp",
            "notes.txt",
        ] {
            assert!(!is_job_file(name), "{name}");
        }
    }

    #[test]
    fn an_error_names_the_file_line_and_field() {
        let err = parse(
            Path::new("/etc/migrated/jobs.d/a.toml"),
            b"[source]\nhost = \"h\"\nprot = 1\n",
        )
        .unwrap_err();
        assert!(
            err.contains("/etc/migrated/jobs.d/a.toml")
                && err.contains("line 3")
                && err.contains("prot"),
            "{err}"
        );
    }
}
