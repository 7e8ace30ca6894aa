//! What migratectl reads from the person running it: job files and batch templates (their
//! `password_file`s read here, as that user, never by the daemon), password files, password
//! prompts and confirmations. Nothing here takes a secret from the command line.

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, bail};
use migrated_core::{JobSpec, Secret};

/// A batch template: a job file without users; the destination's `password_file` (the
/// admin/proxy secret) is read here.
pub(crate) fn load_template(path: &Path) -> anyhow::Result<JobSpec> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read template {}", path.display()))?;
    let mut spec: JobSpec =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("template {}: {e}", path.display()))?;
    for e in [&mut spec.source, &mut spec.destination] {
        if let Some(file) = e.password_file.take() {
            e.password = Some(read_secret_file(&file)?);
        }
    }
    Ok(spec)
}

pub(crate) fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("{question} Confirmation needed: pass --yes when not running in a terminal");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

pub(crate) fn read_secret_file(path: &Path) -> anyhow::Result<Secret> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read password file {}", path.display()))?;
    Ok(Secret::new(text.lines().next().unwrap_or("").to_owned()))
}

pub(crate) fn prompt(what: &str) -> anyhow::Result<Secret> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "the password for the {what} is needed: give it in a password file (never on the command line)"
        );
    }
    let p = rpassword::prompt_password(format!("Password for the {what}: "))?;
    Ok(Secret::new(p))
}

/// Reads a job file; `password_file`s are read here, as the user running migratectl, and
/// replaced by the secret, which travels to the daemon over the socket only.
pub(crate) fn load_spec(path: &Path) -> anyhow::Result<JobSpec> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read job file {}", path.display()))?;
    let mut spec: JobSpec =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("job file {}: {e}", path.display()))?;
    for (side, e) in [
        ("source", &mut spec.source),
        ("destination", &mut spec.destination),
    ] {
        if let Some(file) = e.password_file.take() {
            if e.password.is_some() {
                bail!(
                    "job file {}: [{side}]: give password_file or password, not both",
                    path.display()
                );
            }
            e.password =
                Some(read_secret_file(&file).with_context(|| {
                    format!("job file {}: [{side}] password_file", path.display())
                })?);
        } else if e.password.is_none() {
            e.password = Some(prompt(&format!("{side} ({}@{})", e.user, e.host))?);
        }
    }
    Ok(spec)
}
