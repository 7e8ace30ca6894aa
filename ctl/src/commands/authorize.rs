//! `migratectl authorize`: the device authorization grant for one side of a job file, the
//! refresh token written where the job file will read it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use migrated_core::{JobSpec, Secret};

/// A side of a job.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Side {
    /// `[source]`.
    Source,
    /// `[destination]`.
    Destination,
}

/// Runs the grant and writes the refresh token.
pub(crate) fn run(
    job: &Path,
    side: Side,
    out: Option<&Path>,
    wait: Duration,
) -> anyhow::Result<()> {
    let place = format!("job file {}", job.display());
    let text = std::fs::read_to_string(job).with_context(|| format!("cannot read {place}"))?;
    // Parsed without the intake's checks: the refresh token this writes is what they would
    // find missing.
    let mut spec: JobSpec = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{place}: {e}"))?;
    // A contacts job (the CardDAV source plugin; only CardDAV endpoints take a path) asks
    // for the provider's contacts scope, not its mail scope.
    let contacts = spec.source.plugin.as_deref() == Some("carddav")
        || spec.source.path.is_some()
        || spec.destination.path.is_some();
    let (name, endpoint) = match side {
        Side::Source => ("source", &mut spec.source),
        Side::Destination => ("destination", &mut spec.destination),
    };
    let Some(oauth) = endpoint.oauth2.as_mut() else {
        bail!(
            "{place}: [{name}] has no [{name}.oauth2] table: add one with provider (or token_url \
             and device_authorization_url) and client_id, and auth = \"oauth2\""
        );
    };
    if contacts {
        *oauth = oauth.for_contacts();
    }
    if oauth.grant != migrated_core::Grant::RefreshToken {
        bail!(
            "{place}: [{name}.oauth2] grant: a {:?} grant needs no user's consent; authorize \
             only refresh-token grants",
            oauth.grant
        );
    }
    let base = job.parent().unwrap_or(Path::new("."));
    if let Some(file) = oauth.client_secret_file.take() {
        let path = base.join(file);
        let secret = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{place}: [{name}.oauth2] client_secret_file: cannot read {}",
                path.display()
            )
        })?;
        oauth.client_secret = Some(Secret::new(secret.lines().next().unwrap_or("").trim()));
    }
    let target = match (out, &oauth.refresh_token_file) {
        (Some(out), _) => out.to_owned(),
        (None, Some(file)) => base.join(file),
        (None, None) => bail!(
            "{place}: [{name}.oauth2] names no refresh_token_file: add one, or give --out FILE"
        ),
    };
    let token = migrated_oauth::device::authorize(oauth, wait, |prompt| {
        eprintln!(
            "To let migrated read this mailbox, open {} and enter the code {} (good for {} min).",
            prompt.verification_uri,
            prompt.user_code,
            prompt.expires_in.as_secs() / 60
        );
        if let Some(full) = &prompt.verification_uri_complete {
            eprintln!("Or open {full}");
        }
        eprintln!("Waiting for your consent...");
    })
    .map_err(|e| anyhow::anyhow!("{place}: [{name}.oauth2]: {e}"))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&target)
        .with_context(|| format!("cannot write the refresh token to {}", target.display()))?;
    writeln!(file, "{}", token.expose())
        .with_context(|| format!("cannot write the refresh token to {}", target.display()))?;
    eprintln!(
        "Authorized: the refresh token is in {} (readable by you only).",
        target.display()
    );
    Ok(())
}
