//! Job files: one TOML file describes one mailbox migration. Every field is documented here,
//! unknown fields are refused, and errors name the file, line and field.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use migrated_carddav::DavEndpoint;
use migrated_core::Account;
use migrated_core::{EndpointSpec, JobSpec, intake};
use migrated_engine::CopyConfig;
use migrated_imap::{Admin, CertCheck, Endpoint, OAuth, Secret, Security};
use migrated_plugin_api::host::{ContactsPluginSource, Plugin, PluginSource, Plugins};
use migrated_plugin_api::wire::Kind;

/// Loading and converting job specs.
pub(crate) trait JobSpecExt: Sized {
    fn load(path: &Path) -> anyhow::Result<Self>;
    fn copy_config(&self, place: &str) -> anyhow::Result<CopyConfig>;
}

impl JobSpecExt for JobSpec {
    /// Reads and checks a job file (`password_file`s relative to its directory).
    fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read job file {}", path.display()))?;
        let place = format!("job file {}", path.display());
        let dir = path.parent().unwrap_or(Path::new("."));
        let file = intake::load(&text, dir, &place, |p| std::fs::read_to_string(p))?;
        if file.batch_csv.is_some() {
            bail!(
                "{place}: batch: a batch runs in the daemon (migratectl batch create), not with migrate"
            );
        }
        intake::validate(&file.spec, &place)?;
        Ok(file.spec)
    }

    /// The engine's settings.
    fn copy_config(&self, place: &str) -> anyhow::Result<CopyConfig> {
        let rules = self
            .folders
            .rules()
            .map_err(|e| anyhow::anyhow!("{place}: [folders]: {e}"))?;
        let mut c = CopyConfig::new(self.name.clone());
        c.rules = rules;
        c.max_message_size = self.limits.max_message_size;
        c.filter = migrated_core::MessageFilter::compile(&self.filter)
            .map_err(|e| anyhow::anyhow!("{place}: {e}"))?;
        c.sync_deletions = self.sync_deletions;
        c.flag_conflicts = self.flag_conflicts;
        c.source_after_copy = self.source_after_copy;
        c.connections = self.limits.connections.clamp(1, 64);
        c.batch_messages = self.limits.batch_messages.clamp(1, 1000);
        c.batch_bytes = self.limits.batch_bytes.max(1024 * 1024);
        c.subscriptions = self.folders.subscriptions;
        c.daily_upload = self
            .limits
            .daily_upload_mb
            .map(|mb| mb.saturating_mul(1_000_000));
        if let Some(mbps) = self.limits.max_mbps {
            if !(mbps > 0.0 && mbps.is_finite()) {
                anyhow::bail!(
                    "{place}: [limits] max_mbps: {mbps} is not a positive number of megabytes per second"
                );
            }
            c.bandwidth
                .push(std::sync::Arc::new(migrated_engine::RateLimit::new(
                    (mbps * 1e6) as u64,
                )));
        }
        Ok(c)
    }
}

/// The plugin a job's source names, with the job's settings checked against those it accepts.
pub(crate) fn source_plugin<'p>(
    source: &EndpointSpec,
    plugins: &'p Plugins,
    place: &str,
) -> anyhow::Result<&'p Arc<Plugin>> {
    let name = source.plugin_name();
    let Some(plugin) = plugins.get(name) else {
        bail!(
            "{place}: [source] plugin: no plugin {name:?} is installed (loaded: {}); `migratectl plugins` lists them",
            plugins.names()
        );
    };
    plugin
        .check_settings(&source.settings)
        .map_err(|e| anyhow::anyhow!("{place}: [source.settings] {e}"))?;
    Ok(plugin)
}

/// What a job's source plugin migrates: mail or contacts.
pub(crate) fn source_kind(
    source: &EndpointSpec,
    plugins: &Plugins,
    place: &str,
) -> anyhow::Result<Kind> {
    let plugin = source_plugin(source, plugins, place)?;
    plugin.info().kinds.first().copied().ok_or_else(|| {
        anyhow::anyhow!(
            "{place}: [source] plugin {:?} migrates nothing",
            plugin.info().name
        )
    })
}

/// What converting a spec asks of its credentials: a run needs them; checking a job when it is
/// created does not (they may come later, with `delta`, and the first login checks them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Credentials {
    /// The login secret must be there.
    Needed,
    /// Everything but the login secret is checked.
    Later,
}

/// The error for a side without the secret it logs in with, naming the field to fill.
fn missing_secret(e: &EndpointSpec, place: &str, section: &str) -> anyhow::Error {
    if e.is_admin_login() {
        anyhow::anyhow!(
            "{place}: [{section}] admin_password_file: missing; give the administrator's password in admin_password_file (preferred) or admin_password"
        )
    } else {
        anyhow::anyhow!(
            "{place}: [{section}] password_file: missing; give password_file (preferred) or password"
        )
    }
}

/// A CardDAV side as the account the contacts plugin or the CardDAV client receives.
fn dav_account(
    e: &EndpointSpec,
    place: &str,
    section: &str,
    credentials: Credentials,
) -> anyhow::Result<Account> {
    if credentials == Credentials::Needed && e.login_secret().is_none() {
        return Err(missing_secret(e, place, section));
    }
    // HTTP's ports, not IMAP's.
    let default_port = if e.security == Security::Plain {
        80
    } else {
        443
    };
    Ok(e.account(default_port))
}

/// The OAuth 2 tokens of a CardDAV side that logs in with `auth = "oauth2"`, the same
/// [`migrated_oauth::Tokens`] an IMAP side gets (the scope defaulting to the provider's for
/// contacts); `None` for a password, or while the grant's secret is still to come (the
/// settings are checked, no token is fetched).
fn dav_tokens(
    e: &EndpointSpec,
    place: &str,
    section: &str,
) -> anyhow::Result<Option<Arc<dyn migrated_core::AccessTokens>>> {
    let Some(o) = e.oauth_grant() else {
        return Ok(None);
    };
    let o = o.for_contacts();
    let place = || format!("{place}: [{section}] oauth2");
    if o.grant_secret().is_none() {
        o.check()
            .map_err(|(field, e)| anyhow::anyhow!("{}.{field}: {e}", place()))?;
        return Ok(None);
    }
    let timeout = Duration::from_secs(e.timeout_secs.max(1));
    let tokens = migrated_oauth::Tokens::new(&o, &e.user, timeout)
        .map_err(|e| anyhow::anyhow!("{}: {e}", place()))?;
    Ok(Some(Arc::new(tokens)))
}

/// A CardDAV side as the daemon's CardDAV client takes it (with its tokens, for OAuth 2).
fn dav_endpoint(
    e: &EndpointSpec,
    place: &str,
    section: &str,
    credentials: Credentials,
) -> anyhow::Result<DavEndpoint> {
    let mut endpoint = DavEndpoint::from_account(&dav_account(e, place, section, credentials)?)
        .map_err(|e| anyhow::anyhow!("{place}: [{section}] {e}"))?;
    endpoint.tokens = dav_tokens(e, place, section)?;
    Ok(endpoint)
}

/// The two sides of a contacts job: the contacts plugin and the CardDAV destination.
pub(crate) fn contacts_sides(
    spec: &JobSpec,
    plugins: &Plugins,
    place: &str,
    credentials: Credentials,
) -> anyhow::Result<(ContactsPluginSource, DavEndpoint)> {
    let plugin = source_plugin(&spec.source, plugins, place)?;
    let account = dav_account(&spec.source, place, "source", credentials)?;
    let (_, destination) = dav_endpoints(spec, place, credentials)?;
    let source = ContactsPluginSource::new(plugin.clone(), account);
    let source = match dav_tokens(&spec.source, place, "source")? {
        Some(tokens) => source.with_tokens(tokens),
        None => source,
    };
    Ok((source, destination))
}

/// Both sides of a contacts job as CardDAV endpoints (the pre-flight logs in to both with the
/// daemon's own CardDAV client, as the contacts plugin and the sink will).
pub(crate) fn dav_endpoints(
    spec: &JobSpec,
    place: &str,
    credentials: Credentials,
) -> anyhow::Result<(DavEndpoint, DavEndpoint)> {
    let source = dav_endpoint(&spec.source, place, "source", credentials)?;
    let destination = dav_endpoint(&spec.destination, place, "destination", credentials)?;
    Ok((source, destination))
}

/// The source of a job: its plugin, given the account with the secret read from its file.
pub(crate) fn plugin_source(
    spec: &JobSpec,
    plugins: &Plugins,
    place: &str,
    credentials: Credentials,
) -> anyhow::Result<PluginSource> {
    let endpoint = spec.source.endpoint_for(place, "source", credentials)?;
    let plugin = source_plugin(&spec.source, plugins, place)?;
    if !plugin.info().kinds.contains(&Kind::Mail) {
        bail!(
            "{place}: [source] plugin: {:?} does not read mail",
            plugin.info().name
        );
    }
    let mut account = Account::from(&endpoint);
    account.settings = spec.source.settings.clone();
    let field = if endpoint.oauth.is_some() {
        "auth"
    } else {
        "admin_user"
    };
    plugin
        .check_account(&account)
        .map_err(|e| anyhow::anyhow!("{place}: [source] {field}: {e}"))?;
    let source = PluginSource::new(plugin.clone(), account);
    Ok(match endpoint.oauth.and_then(|o| o.tokens) {
        Some(tokens) => source.with_tokens(tokens),
        None => source,
    })
}

/// Converting an endpoint spec.
pub(crate) trait EndpointSpecExt {
    fn endpoint(&self, place: &str, section: &str) -> anyhow::Result<Endpoint> {
        self.endpoint_for(place, section, Credentials::Needed)
    }
    fn endpoint_for(
        &self,
        place: &str,
        section: &str,
        credentials: Credentials,
    ) -> anyhow::Result<Endpoint>;
}

impl EndpointSpecExt for EndpointSpec {
    /// The IMAP endpoint, with the secret read from its file (empty with
    /// [`Credentials::Later`] when it is not there yet).
    fn endpoint_for(
        &self,
        place: &str,
        section: &str,
        credentials: Credentials,
    ) -> anyhow::Result<Endpoint> {
        let at = place;
        let place = |field: &str| format!("{place}: [{section}] {field}");
        if self.path.is_some() {
            bail!(
                "{}: only CardDAV endpoints (contacts jobs) take a path",
                place("path")
            );
        }
        if section == "destination" && (self.plugin.is_some() || !self.settings.is_empty()) {
            bail!(
                "{}: only the source is read by a plugin; remove plugin and settings from [destination]",
                place("plugin")
            );
        }
        let (security, auth) = (self.security, self.auth);
        // Job files and the control API arrive with their secrets resolved (intake::load).
        let secret = match (self.login_secret(), credentials) {
            (Some(secret), _) => secret.clone(),
            (None, Credentials::Later) => Secret::default(),
            (None, Credentials::Needed) => return Err(missing_secret(self, at, section)),
        };
        let admin = self.admin_user.as_ref().map(|user| Admin {
            user: user.clone(),
            login: self.admin_login.unwrap_or_default(),
            separator: self.separator().to_owned(),
        });
        let timeout = Duration::from_secs(self.timeout_secs.max(1));
        let (secret, oauth) = match self.oauth_grant() {
            None => (secret, None),
            // The grant's secret stays here; what goes to the server (or a plugin) is an
            // access token fetched for each connection.
            // The grant's secret is still to come: the settings are checked, no token is
            // fetched.
            Some(o) if o.grant_secret().is_none() => {
                o.check()
                    .map_err(|(field, e)| anyhow::anyhow!("{}.{field}: {e}", place("oauth2")))?;
                let oauth = OAuth {
                    tokens: None,
                    mechanism: o.mechanism,
                };
                (Secret::default(), Some(oauth))
            }
            Some(o) => {
                let tokens = migrated_oauth::Tokens::new(o, &self.user, timeout)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", place("oauth2")))?;
                let oauth = OAuth {
                    tokens: Some(Arc::new(tokens)),
                    mechanism: o.mechanism,
                };
                (Secret::default(), Some(oauth))
            }
        };
        let cert_check = match (
            &self.ca_file,
            &self.tls_fingerprint,
            self.danger_accept_invalid_certs,
        ) {
            (_, _, true) => CertCheck::DangerAcceptAnyCertificate,
            (_, Some(pin), false) => CertCheck::Fingerprint(
                migrated_imap::tls::parse_fingerprint(pin)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", place("tls_fingerprint")))?,
            ),
            (Some(ca), None, false) => CertCheck::CaFile(ca.clone()),
            (None, None, false) => CertCheck::System,
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
            admin,
            oauth,
            timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_field_is_named_with_its_line() {
        let text = "id = \"a\"\n[source]\nhost = \"h\"\nuser = \"u\"\nprot = 1\n[destination]\nhost = \"h\"\nuser = \"u\"\n";
        let err = toml::from_str::<JobSpec>(text).unwrap_err().to_string();
        assert!(err.contains("line 5"), "{err}");
        assert!(err.contains("prot"), "{err}");
    }

    #[test]
    fn a_bad_security_value_names_the_line_field_and_the_words_allowed() {
        let text = "id = \"a\"\n[source]\nhost = \"h\"\nuser = \"u\"\nsecurity = \"ssl\"\npassword = \"x\"\n[destination]\nhost = \"h\"\nuser = \"u\"\n";
        let err = toml::from_str::<JobSpec>(text).unwrap_err().to_string();
        assert!(err.contains("line 5"), "{err}");
        assert!(err.contains("security = \"ssl\""), "{err}");
        assert!(err.contains("`tls`, `starttls`, `plain`"), "{err}");
    }

    fn side(text: &str) -> EndpointSpec {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_side_without_its_secret_is_checked_at_creation_and_refused_for_a_run() {
        let e = side("host = \"imap.example.org\"\nuser = \"alice\"\n");
        let checked = e
            .endpoint_for("job file j.toml", "source", Credentials::Later)
            .expect("everything but the secret checks");
        assert_eq!((checked.port, checked.secret.expose()), (993, ""));
        let err = e
            .endpoint("job file j.toml", "source")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "job file j.toml: [source] password_file: missing; give password_file (preferred) or password"
        );
        let admin = side("host = \"h\"\nuser = \"alice\"\nadmin_user = \"root\"\n");
        let err = admin.endpoint("j", "destination").unwrap_err().to_string();
        assert!(
            err.contains("[destination] admin_password_file: missing"),
            "{err}"
        );
        // A mistake other than the secret is still found without it.
        let bad = side("host = \"h\"\nuser = \"u\"\npath = \"/dav/\"\n");
        let err = bad
            .endpoint_for("j", "source", Credentials::Later)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[source] path: only CardDAV endpoints"),
            "{err}"
        );
    }

    #[test]
    fn a_carddav_side_takes_http_ports_and_its_path_without_passing_through_imap() {
        let e = side(
            "host = \"dav.example.org\"\nuser = \"alice\"\npassword = \"pw\"\npath = \"/alice/\"\n",
        );
        let a = dav_account(&e, "j", "destination", Credentials::Needed).unwrap();
        assert_eq!((a.port, a.path.as_deref()), (443, Some("/alice/")));
        assert_eq!(a.secret.expose(), "pw");
        let plain = side("host = \"h\"\nuser = \"u\"\nsecurity = \"plain\"\n");
        assert_eq!(
            dav_account(&plain, "j", "source", Credentials::Later)
                .unwrap()
                .port,
            80
        );
        let err = dav_account(&plain, "j", "source", Credentials::Needed)
            .unwrap_err()
            .to_string();
        assert!(err.contains("[source] password_file: missing"), "{err}");
    }
}
