//! `show JOB` and `edit JOB`: a job's settings as a job file (secrets never shown, only
//! whether each is set), and the same file edited in `$VISUAL`/`$EDITOR`, applied by the
//! daemon from the job's next run or refused with the line and field, the job unchanged.

use std::process::ExitCode;

use anyhow::{Context, bail};
use migrated_core::JobSpec;
use migrated_ipc::{Request, Response};

use crate::control::Control;

/// The job's settings and which secrets are set.
async fn settings(ctl: &mut Control, job: &str) -> anyhow::Result<(JobSpec, Vec<(String, bool)>)> {
    match ctl.batch(Request::Show { job: job.into() }).await? {
        Response::Settings { spec, secrets } => Ok((*spec, secrets)),
        other => bail!("unexpected reply: {other:?}"),
    }
}

/// The settings as a job file: TOML, with a comment under each section saying which secrets
/// are set (they are never shown; `migratectl credentials` gives them).
pub(crate) fn job_file_text(spec: &JobSpec, secrets: &[(String, bool)]) -> anyhow::Result<String> {
    let text = toml::to_string(spec).context("the job's settings as TOML")?;
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        let section = line
            .strip_prefix('[')
            .and_then(|l| l.strip_suffix(']'))
            .filter(|s| *s == "source" || *s == "destination");
        if let Some(section) = section {
            for (field, set) in secrets {
                if let Some(f) = field.strip_prefix(&format!("{section}.")) {
                    let state = if *set { "set" } else { "not set" };
                    out.push_str(&format!(
                        "# {f}: {state} (never shown; `migratectl credentials` gives it)\n"
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// `show JOB`.
pub(crate) async fn show(ctl: &mut Control, job: &str, json: bool) -> anyhow::Result<ExitCode> {
    let (spec, secrets) = settings(ctl, job).await?;
    if json {
        let set: serde_json::Map<String, serde_json::Value> = secrets
            .iter()
            .map(|(f, s)| {
                (
                    f.clone(),
                    serde_json::Value::from(if *s { "set" } else { "not set" }),
                )
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "settings": spec, "secrets": set }))?
        );
    } else {
        print!("{}", job_file_text(&spec, &secrets)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// `edit JOB`: the job file in the editor; an unchanged file changes nothing, a file that does
/// not read (TOML, unknown field) or that the daemon refuses leaves the job unchanged and says
/// where.
pub(crate) async fn edit(ctl: &mut Control, job: &str, json: bool) -> anyhow::Result<ExitCode> {
    let (spec, secrets) = settings(ctl, job).await?;
    let text = job_file_text(&spec, &secrets)?;
    let dir = tempfile_dir()?;
    let path = dir.join(format!("{}.toml", spec.name.replace('/', "_")));
    std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    // Through the shell, as git does: EDITOR may carry arguments (`code -w`).
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&path)
        .status()
        .with_context(|| format!("cannot run the editor {editor:?}"))?;
    let edited = std::fs::read_to_string(&path);
    let _ = std::fs::remove_dir_all(&dir);
    if !status.success() {
        bail!("the editor {editor:?} exited with {status}: the job is unchanged");
    }
    let edited = edited.with_context(|| format!("cannot read {}", path.display()))?;
    if edited == text {
        println!("No change.");
        return Ok(ExitCode::SUCCESS);
    }
    // Read as a job file is (lines and fields in errors); a password_file added is read here,
    // as you, relative to the current directory.
    let cwd = std::env::current_dir()?;
    let read = migrated_core::intake::load(&edited, &cwd, "the edited job file", |p| {
        std::fs::read_to_string(p)
    });
    let new = match read {
        Ok(f) => f.spec,
        Err(e) => {
            eprintln!("migratectl: {e}; the job is unchanged");
            return Ok(ExitCode::from(2));
        }
    };
    match ctl
        .batch(Request::Edit {
            job: job.into(),
            spec: Box::new(new),
        })
        .await?
    {
        Response::Done { status } => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "edited": true, "status": status })
                );
            } else {
                println!(
                    "Edited: the new settings apply from the job's next run (status {status})."
                );
            }
        }
        other => bail!("unexpected reply: {other:?}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// A private directory for the file being edited.
fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let mut bytes = [0u8; 6];
    getrandom_fill(&mut bytes);
    let name: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("migratectl-edit-{name}"));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Randomness enough for a unique directory name (the process id and the time).
fn getrandom_fill(out: &mut [u8]) {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
        ^ u128::from(std::process::id());
    for (i, b) in out.iter_mut().enumerate() {
        *b = (t >> (i * 8)) as u8;
    }
}
