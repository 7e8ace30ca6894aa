//! What migratectl reads from the person running it: job files and batch templates (their
//! `password_file`s read here, as that user, never by the daemon), password files, password
//! prompts and confirmations. Nothing here takes a secret from the command line.

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, bail};
use migrated_core::{JobSpec, Secret, intake};

/// A batch template: a job file without users; its `password_file`s and
/// `admin_password_file`s (an administrator's secret, for every row) are read here.
pub(crate) fn load_template(path: &Path) -> anyhow::Result<JobSpec> {
    read_job_file(path, "template").map(|f| f.spec)
}

/// Reads a job file or template through the one intake (`password_file`s relative to the
/// file's directory, read as the user running migratectl).
fn read_job_file(path: &Path, what: &str) -> anyhow::Result<intake::JobFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let place = format!("{what} {}", path.display());
    Ok(intake::load(&text, dir, &place, |p| {
        std::fs::read_to_string(p)
    })?)
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
    Ok(secret_of(text))
}

/// The secret a credential file holds: its first line, or the whole file when it is a JSON
/// document (a service account's key, for a side that logs in with one).
fn secret_of(text: String) -> Secret {
    if serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|v| v.is_object()) {
        Secret::new(text)
    } else {
        Secret::new(text.lines().next().unwrap_or("").to_owned())
    }
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
/// replaced by the secret, which travels to the daemon over the socket only. A side without
/// either is asked for at the terminal.
pub(crate) fn load_spec(path: &Path) -> anyhow::Result<JobSpec> {
    let mut spec = read_job_file(path, "job file")?.spec;
    for (side, e) in [
        ("source", &mut spec.source),
        ("destination", &mut spec.destination),
    ] {
        // A side naming an endpoint may log in with the endpoint's administrator: the daemon
        // says whether it waits for credentials (`migratectl credentials` gives them).
        if e.login_secret().is_none() && e.endpoint.is_none() {
            let who = match &e.admin_user {
                Some(admin) => format!(
                    "{side} administrator {admin} (on behalf of {}@{})",
                    e.user, e.host
                ),
                None => format!("{side} ({}@{})", e.user, e.host),
            };
            e.set_login_secret(prompt(&who)?);
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_key_file_is_taken_whole_and_a_password_file_by_its_first_line() {
        let key = "{\n  \"type\": \"service_account\"\n}\n".to_owned();
        assert_eq!(super::secret_of(key.clone()).expose(), key);
        assert_eq!(super::secret_of("pw\nnotes\n".into()).expose(), "pw");
        assert_eq!(super::secret_of("{pw\n".into()).expose(), "{pw");
    }
}
