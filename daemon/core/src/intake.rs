//! One intake for job files: the text of a job file (or batch template) and the directory it
//! sits in become a [`JobSpec`] with its secrets resolved, and [`validate`] checks everything
//! that can be checked without a network. `migratectl`, the drop-in watcher and
//! `migrated migrate` read files through [`load`]; the daemon validates what it is sent
//! through [`validate`], so a job is refused with the same words wherever it comes from.
//!
//! - TOML errors keep their line and column (the text is parsed as it is).
//! - `password_file` is read once, here; a relative path is relative to the job file's
//!   directory (credential files often sit beside it). Giving both `password_file` and
//!   `password` is an error. The file's first line is the secret.
//! - `admin_password_file` (an administrator logging in on behalf of the user, see
//!   [`crate::EndpointSpec::admin_user`]) is read the same way, into `admin_password`.
//! - `batch = "staff.csv"` makes the file a batch template; the CSV's path is returned (also
//!   relative to the job file's directory), not read.
//! - The login settings of each side are checked here with the line they are on
//!   (`admin_login`, `admin_separator` with `admin_user`, no user's password beside an
//!   administrator's); [`validate`] checks them again, without lines, for what the control
//!   API sends.
//!
//! Reading files is the caller's: `read` is given the path of each credential file, so this
//! module does no I/O of its own and is tested without files.

use std::path::{Path, PathBuf};

use crate::{JobSpec, Secret};

/// A job file as read.
#[derive(Debug, Clone)]
pub struct JobFile {
    /// The job, or a batch's template; `password_file`s are resolved into `password`.
    pub spec: JobSpec,
    /// A batch template: where its CSV is.
    pub batch_csv: Option<PathBuf>,
}

/// Why a job file or spec was refused: the place (file or job) and what is wrong, with the
/// line, section and field where there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {message}")]
pub struct IntakeError {
    /// `job file /etc/migrated/jobs.d/alice.toml`, `job "alice"`, `template staff.toml`.
    pub place: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl IntakeError {
    fn new(place: &str, message: impl Into<String>) -> Self {
        Self {
            place: place.to_owned(),
            message: message.into(),
        }
    }
}

/// Reads a job file's text. `place` names it in errors; `base` is its directory; `read`
/// reads a credential file.
///
/// # Errors
///
/// Invalid TOML or an unknown field (with line and column), a `batch` that is not a file
/// name, both `password` and `password_file`, a credential file that cannot be read.
pub fn load(
    text: &str,
    base: &Path,
    place: &str,
    read: impl Fn(&Path) -> std::io::Result<String>,
) -> Result<JobFile, IntakeError> {
    let mut table: toml::Table =
        toml::from_str(text).map_err(|e| IntakeError::new(place, e.to_string()))?;
    let batch_csv = match table.remove("batch") {
        None => None,
        Some(toml::Value::String(csv)) => Some(base.join(csv)),
        Some(other) => {
            return Err(IntakeError::new(
                place,
                format!("batch: expected the name of a CSV file, found {other}"),
            ));
        }
    };
    // A job file is parsed from its text, so errors keep their line numbers; a template
    // without its `batch` key from the table.
    let mut spec: JobSpec = if batch_csv.is_some() {
        toml::Value::Table(table).try_into()
    } else {
        toml::from_str(text)
    }
    .map_err(|e| IntakeError::new(place, e.to_string()))?;
    for (side, e) in [
        ("source", &mut spec.source),
        ("destination", &mut spec.destination),
    ] {
        for (field, inline, file) in [
            ("password", &mut e.password, &mut e.password_file),
            (
                "admin_password",
                &mut e.admin_password,
                &mut e.admin_password_file,
            ),
        ] {
            let Some(path) = file.take() else {
                continue;
            };
            if inline.is_some() {
                return Err(IntakeError::new(
                    place,
                    format!("[{side}]: give {field}_file or {field}, not both"),
                ));
            }
            let path = base.join(path);
            let text = read(&path).map_err(|err| {
                IntakeError::new(
                    place,
                    format!(
                        "[{side}] {field}_file: cannot read {}: {err}",
                        path.display()
                    ),
                )
            })?;
            *inline = Some(Secret::new(text.lines().next().unwrap_or("").to_owned()));
        }
    }
    // A contacts job (the CardDAV source plugin): both sides are CardDAV servers.
    let contacts = spec.source.plugin.as_deref() == Some("carddav");
    for (side, e) in [
        ("source", &mut spec.source),
        ("destination", &mut spec.destination),
    ] {
        resolve_oauth2(e, side, base, place, contacts, &read)?;
    }
    for (side, e) in [("source", &spec.source), ("destination", &spec.destination)] {
        if let Err((field, message)) = check_login(e) {
            let place = match line_of(text, side, field) {
                Some(line) => format!("{place}, line {line}"),
                None => place.to_owned(),
            };
            return Err(IntakeError::new(&place, format!("[{side}] {message}")));
        }
    }
    Ok(JobFile { spec, batch_csv })
}

/// Reads an `[oauth2]` table's credential files (the service account key whole, the others'
/// first line) into the spec, and gives an endpoint without a host its provider's server (its
/// CardDAV server in a contacts job).
fn resolve_oauth2(
    e: &mut crate::EndpointSpec,
    side: &str,
    base: &Path,
    place: &str,
    contacts: bool,
    read: &impl Fn(&Path) -> std::io::Result<String>,
) -> Result<(), IntakeError> {
    let Some(o) = &mut e.oauth2 else {
        return Ok(());
    };
    for (field, inline, file, whole) in [
        (
            "client_secret",
            &mut o.client_secret,
            &mut o.client_secret_file,
            false,
        ),
        (
            "refresh_token",
            &mut o.refresh_token,
            &mut o.refresh_token_file,
            false,
        ),
        (
            "service_account_key",
            &mut o.service_account_key,
            &mut o.service_account_key_file,
            true,
        ),
    ] {
        let Some(path) = file.take() else {
            continue;
        };
        if inline.is_some() {
            return Err(IntakeError::new(
                place,
                format!("[{side}.oauth2]: give {field}_file or {field}, not both"),
            ));
        }
        let path = base.join(path);
        let text = read(&path).map_err(|err| {
            IntakeError::new(
                place,
                format!(
                    "[{side}.oauth2] {field}_file: cannot read {}: {err}",
                    path.display()
                ),
            )
        })?;
        let value = if whole {
            text
        } else {
            text.lines().next().unwrap_or("").trim().to_owned()
        };
        *inline = Some(Secret::new(value));
    }
    let preset = if contacts {
        o.carddav_host()
    } else {
        o.imap_host()
    };
    if e.host.trim().is_empty()
        && let Some(host) = preset
    {
        e.host = host.to_owned();
    }
    Ok(())
}

/// The line (from 1) of `field` in the file's `[section]`, for errors found after parsing.
fn line_of(text: &str, section: &str, field: &str) -> Option<usize> {
    let table = toml::de::DeTable::parse(text).ok()?;
    let (_, value) = table
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref() == section)?;
    let toml::de::DeValue::Table(t) = value.get_ref() else {
        return None;
    };
    // `password` may have come from `password_file`.
    let names = [field.to_owned(), format!("{field}_file")];
    let (key, _) = t
        .iter()
        .find(|(k, _)| names.iter().any(|n| k.get_ref() == n))?;
    Some(text.get(..key.span().start)?.matches('\n').count() + 1)
}

/// Checks how an endpoint logs in: the administrator's settings come with `admin_user`, never
/// beside the user's own password, and a separator the user's name does not contain.
///
/// # Errors
///
/// The field at fault and what is wrong with it, prefixed by the field.
fn check_login(e: &crate::EndpointSpec) -> Result<(), (&'static str, String)> {
    let fail = |field: &'static str, message: String| Err((field, format!("{field}: {message}")));
    match (&e.oauth2, e.auth == crate::AuthMethod::OAuth2) {
        (None, true) => {
            return fail(
                "auth",
                "\"oauth2\" needs an [oauth2] table saying how tokens are obtained (provider, \
                 grant, client_id, refresh_token_file or service_account_key_file)"
                    .into(),
            );
        }
        (Some(_), false) => {
            return fail(
                "oauth2",
                "is only read with auth = \"oauth2\": add it, or remove the [oauth2] table".into(),
            );
        }
        (Some(o), true) => {
            if e.admin_user.is_some() {
                return fail(
                    "admin_user",
                    "an OAuth 2 login needs no administrator: a service account or an \
                     application logs in for each user; remove admin_user"
                        .into(),
                );
            }
            if e.password.is_some() {
                return fail(
                    "password",
                    "an OAuth 2 login sends tokens, not a password: remove password".into(),
                );
            }
            if let Err((field, message)) = o.check() {
                return Err(("oauth2", format!("oauth2 {field}: {message}")));
            }
        }
        (None, false) => {}
    }
    let Some(admin) = &e.admin_user else {
        let stray = [
            ("admin_password", e.admin_password.is_some()),
            ("admin_password_file", e.admin_password_file.is_some()),
            ("admin_login", e.admin_login.is_some()),
            ("admin_separator", e.admin_separator.is_some()),
        ];
        if let Some((field, _)) = stray.into_iter().find(|(_, given)| *given) {
            return fail(
                field,
                "give admin_user too: the administrator who logs in on behalf of user".into(),
            );
        }
        return Ok(());
    };
    if admin.trim().is_empty() {
        return fail("admin_user", "is empty: name the administrator".into());
    }
    if e.password.is_some() || e.password_file.is_some() {
        return fail(
            "password",
            "with admin_user the administrator's password is sent (admin_password_file), never \
             the user's: remove password, or remove admin_user to log in as the user"
                .into(),
        );
    }
    if e.auth == crate::AuthMethod::XOAuth2 {
        return fail(
            "auth",
            "\"xoauth2\" takes a token, and an administrator logs in with a password: remove auth \
             or admin_user"
                .into(),
        );
    }
    let login = e.admin_login.unwrap_or_default();
    if login != crate::AdminLogin::Separator {
        if e.admin_separator.is_some() {
            return fail(
                "admin_separator",
                "only admin_login = \"separator\" takes a separator".into(),
            );
        }
        return Ok(());
    }
    let sep = e.separator();
    if sep.is_empty()
        || sep
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"')
    {
        return fail(
            "admin_separator",
            format!(
                "{sep:?} cannot separate two names: give the server's auth_master_user_separator \
                 (often \"*\")"
            ),
        );
    }
    if e.user.contains(sep) {
        return fail(
            "user",
            format!(
                "{:?} contains the separator {sep:?}, so the server would split the login name \
                 there: set admin_separator to the server's other choice, or use admin_login = \
                 \"sasl-plain\"",
                e.user
            ),
        );
    }
    Ok(())
}

/// Checks a job (or a batch's job) as far as it can be checked without a network or the
/// plugins: a name, both users, the folder rules, the limits, the schedule, tags and report
/// addresses.
///
/// # Errors
///
/// The first problem, naming the section and field.
pub fn validate(spec: &JobSpec, place: &str) -> Result<(), IntakeError> {
    let fail = |message: String| Err(IntakeError::new(place, message));
    if spec.name.trim().is_empty() {
        return fail("the job needs a name (field `name`)".into());
    }
    for (side, e) in [("source", &spec.source), ("destination", &spec.destination)] {
        if e.user.trim().is_empty() {
            return fail(format!("[{side}] user is missing"));
        }
        if e.host.trim().is_empty() {
            return fail(format!("[{side}] host is missing"));
        }
        if let Err((_, message)) = check_login(e) {
            return fail(format!("[{side}] {message}"));
        }
    }
    if let Err(e) = spec.folders.rules() {
        return fail(format!("[folders]: {e}"));
    }
    if let Err(e) = crate::filter::MessageFilter::compile(&spec.filter) {
        return fail(e);
    }
    if !spec.source_after_copy.is_keep() {
        if spec.sync_deletions {
            return fail(
                "source_after_copy: cannot be used with sync_deletions = true: the messages a \
                 move removes from the source would then be removed from the destination too; \
                 drop one of the two"
                    .into(),
            );
        }
        let host = spec.source.host.to_ascii_lowercase();
        if spec.source.plugin_name() == "gmail"
            || host.ends_with("gmail.com")
            || host.ends_with("googlemail.com")
        {
            return fail(
                "source_after_copy: refused for a Gmail source: a message there is one message \
                 under several labels, and removing it from one folder removes a label, not the \
                 message; leave source_after_copy at \"keep\" and clean up in Gmail"
                    .into(),
            );
        }
    }
    if let Some(mbps) = spec.limits.max_mbps
        && !(mbps > 0.0 && mbps.is_finite())
    {
        return fail(format!(
            "[limits] max_mbps: {mbps} is not a positive number of megabytes per second"
        ));
    }
    if let Err(e) = spec.schedule.validate() {
        return fail(e);
    }
    if let Some(bad) = spec
        .tags
        .iter()
        .find_map(|t| crate::spec::check_tag(t).err())
    {
        return fail(format!("tags: {bad}"));
    }
    if let Some(bad) = spec.notify.iter().find(|a| {
        a.contains(char::is_whitespace) || a.split('@').filter(|p| !p.is_empty()).count() != 2
    }) {
        return fail(format!("notify: {bad:?} is not an e-mail address"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
