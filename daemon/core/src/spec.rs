//! What a job asks for: source, destination, folders and limits. Job files (TOML) and the
//! control API carry the same structure; every field is documented here and unknown fields are
//! refused, so a typo is an error naming its line, never a silent default.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A password or token. Never shown by `Debug`; serialized as a plain string only where it must
/// travel (the control socket, the encrypted store).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Overwritten before the allocation is freed, so the secret does not linger in memory.
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// A job as a job file or the control API gives it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The job's name, unique among jobs (`id` is accepted too). The one-shot `migrate`
    /// command keeps its ledger under it; the daemon keeps it in the encrypted record and uses
    /// a generated id in keys, since a name is often an address.
    #[serde(alias = "id", default)]
    pub name: String,
    /// Where mail comes from.
    pub source: EndpointSpec,
    /// Where mail goes.
    pub destination: EndpointSpec,
    /// Which folders, and under which names.
    #[serde(default)]
    pub folders: FoldersSpec,
    /// Sizes and parallelism.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// Which messages are copied: dates, sizes, flags (see [`crate::filter`]). None by
    /// default: every message.
    #[serde(default, skip_serializing_if = "crate::filter::FilterSpec::is_empty")]
    pub filter: crate::filter::FilterSpec,
    /// Expunge on the destination, at the next delta, the copies of messages expunged on the
    /// source (false by default). Only copies this job made are touched (the ledger knows
    /// them); QRESYNC tells what vanished where the source offers it, a UID comparison
    /// otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sync_deletions: bool,
    /// Whose flags a copy gets at a delta when its flags changed on both sides since the last
    /// sync: `source`, `destination` or `union` (default: every flag set on either side). A
    /// change on one side only is carried (source) or kept (destination) whatever this says.
    #[serde(default, skip_serializing_if = "is_union")]
    pub flag_conflicts: crate::planner::FlagConflicts,
    /// What happens to a source message once its copy is confirmed on the destination:
    /// `keep` (default), `flag-deleted` (marked `\Deleted`, left for the user's client to
    /// expunge) or `expunge` (removed). Refused for Gmail sources and with `sync_deletions`.
    #[serde(default, skip_serializing_if = "SourceAfterCopy::is_keep")]
    pub source_after_copy: SourceAfterCopy,
    /// When the job may run and whether deltas repeat.
    #[serde(default)]
    pub schedule: crate::schedule::ScheduleSpec,
    /// Lower numbers start first (default 100); changeable while the job waits or runs.
    #[serde(default = "default_priority")]
    pub priority: u32,
    /// Labels for finding jobs (`migratectl list --tag vip`): letters, digits, `-`, `_`, `.`,
    /// `:`, at most 32 characters each; changeable with `migratectl tag`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Addresses that get the completion report by e-mail: the batch's report when the job
    /// belongs to a batch (once, when its last mailbox finishes), else the job's. Needs the
    /// daemon's `--smtp-server`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
    /// Drop-in files only: what removing the file does to its job. `keep` (default): nothing,
    /// the job goes on; `cancel`: the job is cancelled.
    #[serde(default)]
    pub on_remove: OnRemove,
}

impl JobSpec {
    /// The priority of a job that sets none.
    pub const DEFAULT_PRIORITY: u32 = default_priority();
}

/// What a run does to a source message once its copy is confirmed (move mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceAfterCopy {
    /// Nothing: the source keeps every message.
    #[default]
    Keep,
    /// The message is marked `\Deleted` on the source.
    FlagDeleted,
    /// The message is removed from the source (`UID EXPUNGE`).
    Expunge,
}

impl SourceAfterCopy {
    /// Whether the source is left alone.
    pub fn is_keep(&self) -> bool {
        *self == Self::Keep
    }
}

fn is_union(p: &crate::planner::FlagConflicts) -> bool {
    *p == crate::planner::FlagConflicts::Union
}

const fn default_priority() -> u32 {
    100
}

/// Checks a tag; the error names it and says what a tag may hold.
///
/// # Errors
///
/// A message naming the tag.
pub fn check_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.chars().count() <= 32
        && tag
            .chars()
            .all(|c| c.is_alphanumeric() || "-_.:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag {tag:?}: a tag is 1 to 32 letters, digits, '-', '_', '.' or ':'"
        ))
    }
}

/// What removing a drop-in job file does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRemove {
    /// The job goes on.
    #[default]
    Keep,
    /// The job is cancelled.
    Cancel,
}

/// One IMAP account.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    /// A named endpoint (`migratectl endpoint create`) whose connection this side uses; the
    /// side then gives only its user (and the user's own password, if any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Host name or address (with `[oauth2] provider`, the provider's IMAP server when left
    /// out).
    #[serde(default)]
    pub host: String,
    /// Port; default 993 with `security = "tls"`, 143 otherwise.
    pub port: Option<u16>,
    /// `tls` (implicit, default), `starttls`, or `plain` (no encryption: trusted networks only).
    #[serde(default)]
    pub security: crate::Security,
    /// PEM file of the CA that signed the server's certificate (instead of the system's roots).
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate. Anyone on the path can read the password: lab use only.
    #[serde(default)]
    pub danger_accept_invalid_certs: bool,
    /// Trust exactly the certificate with this SHA-256 fingerprint (`sha256:AB:CD:…`, as the
    /// refusal of an untrusted certificate prints it), whoever signed it.
    #[serde(default)]
    pub tls_fingerprint: Option<String>,
    /// `login` (default), `plain` (AUTHENTICATE PLAIN) or `xoauth2` (the secret is a token).
    #[serde(default)]
    pub auth: crate::AuthMethod,
    /// Login name (in a batch template, left out: each CSV row gives it).
    #[serde(default)]
    pub user: String,
    /// File holding the password or token (first line). Preferred: keeps the secret out of
    /// the job file.
    pub password_file: Option<PathBuf>,
    /// The password inline. Allowed, but the job file must then be readable by root only.
    pub password: Option<Secret>,
    /// Log in as this administrator on behalf of `user` (a Dovecot master user, a Cyrus
    /// admin, a proxy-authorization account): the administrator's password is sent, never the
    /// user's, so the endpoint gives no `password`. In a batch template it serves every row
    /// that gives no password of its own; a row that gives one logs in as its user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_user: Option<String>,
    /// File holding the administrator's password (first line). Preferred over
    /// `admin_password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_password_file: Option<PathBuf>,
    /// The administrator's password inline (the job file then readable by root only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_password: Option<Secret>,
    /// How the administrator logs in: `sasl-plain` (default: AUTHENTICATE PLAIN with the user
    /// as authorization identity) or `separator` (the login name `user<separator>admin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_login: Option<crate::AdminLogin>,
    /// The separator of `admin_login = "separator"`, as the server's
    /// `auth_master_user_separator` sets it (default `*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_separator: Option<String>,
    /// With `auth = "oauth2"`: how the daemon obtains and refreshes access tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<crate::OAuth2Spec>,
    /// Seconds to wait for any network reply (default 60).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// CardDAV only: where discovery starts on the server (an address-book home or a principal);
    /// by default `/.well-known/carddav`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Source only: the plugin that reads it (`imap`, the default, `gmail`, or `carddav` for a
    /// contacts job; `migratectl plugins` lists those installed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// Source only: the plugin's own settings (`migratectl plugins` lists what each accepts).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub settings: std::collections::BTreeMap<String, crate::SettingValue>,
}

impl EndpointSpec {
    /// The plugin a source endpoint names, `imap` when it names none.
    pub fn plugin_name(&self) -> &str {
        self.plugin.as_deref().unwrap_or("imap")
    }

    /// Whether one credential serves every mailbox of a batch, so its CSV rows need no
    /// password: an administrator's login, a service account, an application's token.
    pub fn shared_login(&self) -> bool {
        self.is_admin_login()
            || self
                .oauth_grant()
                .is_some_and(|o| o.grant != crate::Grant::RefreshToken)
    }

    /// Whether the endpoint logs in as an administrator on behalf of its user.
    pub fn is_admin_login(&self) -> bool {
        self.admin_user.is_some()
    }

    /// The secret this endpoint logs in with: the administrator's with `admin_user`, else the
    /// user's password or token. `None` when it was not given (or was erased).
    pub fn login_secret(&self) -> Option<&Secret> {
        if let Some(o) = self.oauth_grant() {
            o.grant_secret()
        } else if self.is_admin_login() {
            self.admin_password.as_ref()
        } else {
            self.password.as_ref()
        }
    }

    /// Sets the secret this endpoint logs in with (see [`EndpointSpec::login_secret`]).
    pub fn set_login_secret(&mut self, secret: Secret) {
        if let Some(o) = self
            .oauth2
            .as_mut()
            .filter(|_| self.auth == crate::AuthMethod::OAuth2)
        {
            o.set_grant_secret(secret);
        } else if self.is_admin_login() {
            self.admin_password = Some(secret);
        } else {
            self.password = Some(secret);
        }
    }

    /// Drops every secret and credential file of the endpoint; the names stay.
    pub fn erase_secrets(&mut self) {
        self.password = None;
        self.password_file = None;
        self.admin_password = None;
        self.admin_password_file = None;
        if let Some(o) = &mut self.oauth2 {
            o.erase_secrets();
        }
    }

    /// The `[oauth2]` table when the endpoint logs in with OAuth 2 tokens the daemon obtains.
    pub fn oauth_grant(&self) -> Option<&crate::OAuth2Spec> {
        self.oauth2
            .as_ref()
            .filter(|_| self.auth == crate::AuthMethod::OAuth2)
    }

    /// Makes the endpoint log in as its user with the user's own password: the
    /// administrator's login and secret are dropped (a batch row that gives a password).
    pub fn use_own_password(&mut self, password: Secret) {
        if self.auth == crate::AuthMethod::OAuth2 {
            self.auth = crate::AuthMethod::Login;
        }
        self.oauth2 = None;
        self.password = Some(password);
        self.password_file = None;
        self.admin_user = None;
        self.admin_password = None;
        self.admin_password_file = None;
        self.admin_login = None;
        self.admin_separator = None;
    }

    /// The separator of the `separator` form: the job's, else `*`.
    pub fn separator(&self) -> &str {
        self.admin_separator.as_deref().unwrap_or("*")
    }

    /// The account a source plugin or the CardDAV client receives for this endpoint;
    /// `default_port` when the spec names none (IMAP's 143/993, HTTP's 80/443). The secret is
    /// the login secret, empty when not given yet or when OAuth 2 logs in (a token is fetched
    /// for each connection instead).
    pub fn account(&self, default_port: u16) -> crate::Account {
        let admin_login = self.admin_login.unwrap_or_default();
        crate::Account {
            host: self.host.clone(),
            port: self.port.unwrap_or(default_port),
            security: self.security.as_str().to_owned(),
            ca_file: self
                .ca_file
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
            tls_fingerprint: self.tls_fingerprint.clone(),
            danger_accept_invalid_certs: self.danger_accept_invalid_certs,
            auth: self.auth.as_str().to_owned(),
            user: self.user.clone(),
            secret: match self.oauth_grant() {
                Some(_) => Secret::default(),
                None => self.login_secret().cloned().unwrap_or_default(),
            },
            admin_user: self.admin_user.clone(),
            admin_login: self
                .admin_user
                .as_ref()
                .map(|_| admin_login.as_str().to_owned()),
            admin_separator: (self.admin_user.is_some()
                && admin_login == crate::AdminLogin::Separator)
                .then(|| self.separator().to_owned()),
            timeout_secs: self.timeout_secs.max(1),
            path: self.path.clone(),
            settings: self.settings.clone(),
        }
    }
}

/// Folder selection and renaming; patterns are regular expressions on the source path with
/// `/` as separator and the namespace prefix removed (`INBOX`, `Projects/2019`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FoldersSpec {
    /// Copy only folders matching one of these.
    #[serde(default)]
    pub include: Vec<String>,
    /// Never copy folders matching one of these.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Renames applied in order: `{ from = "^Old", to = "Archive/Old" }`.
    #[serde(default)]
    pub rename: Vec<RenameSpec>,
    /// Copy subscriptions (default true).
    #[serde(default = "yes")]
    pub subscriptions: bool,
    /// A folder the destination refuses to create under its name: `"fail"` (the default: the
    /// folder fails, its messages count as failed, and the error gives the rename rule to
    /// paste) or `"replace"` (the characters servers often cannot store, those outside the
    /// Basic Multilingual Plane such as an emoji and control characters, become
    /// `replacement` and the folder is created once more under that name, said in the report).
    #[serde(default)]
    pub unrepresentable: crate::Unrepresentable,
    /// What replaces such a character with `unrepresentable = "replace"` (default `"_"`).
    #[serde(default = "default_replacement")]
    pub replacement: String,
}

fn default_replacement() -> String {
    "_".to_owned()
}

impl FoldersSpec {
    /// The include, exclude and rename patterns compiled.
    ///
    /// # Errors
    ///
    /// A pattern that is not a regular expression, or a `replacement` no server could be
    /// trusted to hold, named.
    pub fn rules(&self) -> Result<crate::MappingRules, crate::MappingError> {
        let renames: Vec<(String, String)> = self
            .rename
            .iter()
            .map(|r| (r.from.clone(), r.to.clone()))
            .collect();
        crate::MappingRules::compile(&self.include, &self.exclude, &renames)?
            .with_unrepresentable(self.unrepresentable, &self.replacement)
    }
}

/// One rename rule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameSpec {
    /// Regular expression.
    pub from: String,
    /// Replacement (`$1` for groups).
    pub to: String,
}

/// Limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
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
    /// Bandwidth limit of this job, megabytes (10^6 bytes) per second; none by default.
    #[serde(default)]
    pub max_mbps: Option<f64>,
    /// Megabytes the destination account may receive per day (UTC), over all jobs writing to
    /// it; past that the job waits, shown as Throttled, until the next day. Default: none, or
    /// 500 when the destination is Gmail (X-GM-EXT-1), Gmail's own limit for IMAP uploads.
    #[serde(default)]
    pub daily_upload_mb: Option<u64>,
}

impl Default for LimitsSpec {
    fn default() -> Self {
        Self {
            max_message_size: default_max_size(),
            connections: default_connections(),
            batch_messages: default_batch(),
            batch_bytes: default_batch_bytes(),
            max_mbps: None,
            daily_upload_mb: None,
        }
    }
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

impl Default for FoldersSpec {
    fn default() -> Self {
        Self {
            include: Vec::new(),
            exclude: Vec::new(),
            rename: Vec::new(),
            subscriptions: true,
            unrepresentable: crate::Unrepresentable::Fail,
            replacement: default_replacement(),
        }
    }
}
