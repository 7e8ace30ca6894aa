//! Job files: one TOML file describes one mailbox migration. Every field is documented here,
//! unknown fields are refused, and errors name the file, line and field.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use migrated_core::MappingRules;
use migrated_engine::CopyConfig;
use migrated_imap::{AuthMethod, CertCheck, Endpoint, Secret, Security};
use serde::Deserialize;

/// A job file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobFile {
    /// Stable id of the job; the ledger that prevents duplicates is kept under it.
    pub id: String,
    /// Where mail comes from.
    pub source: EndpointFile,
    /// Where mail goes.
    pub destination: EndpointFile,
    /// Which folders, and under which names.
    #[serde(default)]
    pub folders: FoldersFile,
    /// Sizes and parallelism.
    #[serde(default)]
    pub limits: LimitsFile,
}

/// One IMAP account.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EndpointFile {
    /// Host name or address.
    pub host: String,
    /// Port; default 993 with `security = "tls"`, 143 otherwise.
    pub port: Option<u16>,
    /// `tls` (implicit, default), `starttls`, or `plain` (no encryption: trusted networks only).
    #[serde(default = "default_security")]
    pub security: String,
    /// PEM file of the CA that signed the server's certificate (instead of the system's roots).
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate. Anyone on the path can read the password: lab use only.
    #[serde(default)]
    pub danger_accept_invalid_certs: bool,
    /// `login` (default), `plain` (AUTHENTICATE PLAIN) or `xoauth2` (the secret is a token).
    #[serde(default = "default_auth")]
    pub auth: String,
    /// Login name.
    pub user: String,
    /// File holding the password or token (first line). Preferred: keeps the secret out of
    /// the job file.
    pub password_file: Option<PathBuf>,
    /// The password inline. Allowed, but the job file must then be readable by root only.
    pub password: Option<String>,
    /// Seconds to wait for any network reply (default 60).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

/// Folder selection and renaming; patterns are regular expressions on the source path with
/// `/` as separator and the namespace prefix removed (`INBOX`, `Projects/2019`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FoldersFile {
    /// Copy only folders matching one of these.
    #[serde(default)]
    pub include: Vec<String>,
    /// Never copy folders matching one of these.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Renames applied in order: `{ from = "^Old", to = "Archive/Old" }`.
    #[serde(default)]
    pub rename: Vec<RenameFile>,
    /// Copy subscriptions (default true).
    #[serde(default = "yes")]
    pub subscriptions: bool,
}

/// One rename rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RenameFile {
    /// Regular expression.
    pub from: String,
    /// Replacement (`$1` for groups).
    pub to: String,
}

/// Limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsFile {
    /// Larger messages are skipped and reported (default 35 MB).
    #[serde(default = "default_max_size")]
    pub max_message_size: u64,
    /// Connections per side (default 4).
    #[serde(default = "default_connections")]
    pub connections: usize,
    /// Messages per batch (default 50).
    #[serde(default = "default_batch")]
    pub batch_messages: usize,
    /// Bytes per batch (default 8 MiB).
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: u64,
}

impl Default for LimitsFile {
    fn default() -> Self {
        Self {
            max_message_size: default_max_size(),
            connections: default_connections(),
            batch_messages: default_batch(),
            batch_bytes: default_batch_bytes(),
        }
    }
}

fn default_security() -> String {
    "tls".into()
}
fn default_auth() -> String {
    "login".into()
}
const fn default_timeout() -> u64 {
    60
}
const fn yes() -> bool {
    true
}
const fn default_max_size() -> u64 {
    35 * 1024 * 1024
}
const fn default_connections() -> usize {
    4
}
const fn default_batch() -> usize {
    50
}
const fn default_batch_bytes() -> u64 {
    8 * 1024 * 1024
}

impl JobFile {
    /// Reads and checks a job file.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read job file {}", path.display()))?;
        let job: Self = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("job file {}: {e}", path.display()))?;
        if job.id.trim().is_empty() {
            bail!("job file {}: field `id` must not be empty", path.display());
        }
        Ok(job)
    }

    /// The engine's settings.
    pub(crate) fn copy_config(&self, path: &Path) -> anyhow::Result<CopyConfig> {
        let renames: Vec<(String, String)> = self
            .folders
            .rename
            .iter()
            .map(|r| (r.from.clone(), r.to.clone()))
            .collect();
        let rules = MappingRules::compile(&self.folders.include, &self.folders.exclude, &renames)
            .map_err(|e| anyhow::anyhow!("job file {}: [folders]: {e}", path.display()))?;
        let mut c = CopyConfig::new(self.id.clone());
        c.rules = rules;
        c.max_message_size = self.limits.max_message_size;
        c.connections = self.limits.connections.clamp(1, 64);
        c.batch_messages = self.limits.batch_messages.clamp(1, 1000);
        c.batch_bytes = self.limits.batch_bytes.max(1024 * 1024);
        c.subscriptions = self.folders.subscriptions;
        Ok(c)
    }
}

impl EndpointFile {
    /// The IMAP endpoint, with the secret read from its file.
    pub(crate) fn endpoint(&self, path: &Path, section: &str) -> anyhow::Result<Endpoint> {
        let place = |field: &str| format!("job file {}: [{section}] {field}", path.display());
        let security = match self.security.as_str() {
            "tls" => Security::Tls,
            "starttls" => Security::StartTls,
            "plain" => Security::Plain,
            other => bail!(
                "{}: {other:?} is not one of \"tls\", \"starttls\", \"plain\"",
                place("security")
            ),
        };
        let auth = match self.auth.as_str() {
            "login" => AuthMethod::Login,
            "plain" => AuthMethod::Plain,
            "xoauth2" => AuthMethod::XOAuth2,
            other => bail!(
                "{}: {other:?} is not one of \"login\", \"plain\", \"xoauth2\"",
                place("auth")
            ),
        };
        let secret = match (&self.password_file, &self.password) {
            (Some(file), None) => {
                let text = std::fs::read_to_string(file).with_context(|| {
                    format!("{}: cannot read {}", place("password_file"), file.display())
                })?;
                Secret::new(text.lines().next().unwrap_or("").to_owned())
            }
            (None, Some(p)) => Secret::new(p.clone()),
            (Some(_), Some(_)) => bail!(
                "{}: give password_file or password, not both",
                place("password")
            ),
            (None, None) => bail!(
                "{}: missing; give password_file (preferred) or password",
                place("password_file")
            ),
        };
        let cert_check = match (&self.ca_file, self.danger_accept_invalid_certs) {
            (_, true) => CertCheck::DangerAcceptAnyCertificate,
            (Some(ca), false) => CertCheck::CaFile(ca.clone()),
            (None, false) => CertCheck::System,
        };
        Ok(Endpoint {
            host: self.host.clone(),
            port: self
                .port
                .unwrap_or(if security == Security::Tls { 993 } else { 143 }),
            security,
            cert_check,
            auth,
            user: self.user.clone(),
            secret,
            timeout: Duration::from_secs(self.timeout_secs.max(1)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_field_is_named_with_its_line() {
        let text = "id = \"a\"\n[source]\nhost = \"h\"\nuser = \"u\"\nprot = 1\n[destination]\nhost = \"h\"\nuser = \"u\"\n";
        let err = toml::from_str::<JobFile>(text).unwrap_err().to_string();
        assert!(err.contains("line 5"), "{err}");
        assert!(err.contains("prot"), "{err}");
    }

    #[test]
    fn a_bad_security_value_names_the_section_and_field() {
        let text = "id = \"a\"\n[source]\nhost = \"h\"\nuser = \"u\"\nsecurity = \"ssl\"\npassword = \"x\"\n[destination]\nhost = \"h\"\nuser = \"u\"\n";
        let job: JobFile = toml::from_str(text).unwrap();
        let err = job
            .source
            .endpoint(Path::new("j.toml"), "source")
            .unwrap_err()
            .to_string();
        assert!(err.contains("j.toml: [source] security"), "{err}");
    }
}
