//! Named endpoints (`migratectl endpoint create|list|show|delete`): a connection kept by name
//! (host, port, security, CA, login method, an administrator and the plugin with its
//! settings), shared by the jobs and batch templates that name it with `endpoint = "NAME"` in
//! `[source]` or `[destination]`, each with its own limits as Exchange's migration endpoints
//! have: concurrent migrations (20 by default) and, of those, concurrent incremental syncs (10).
//! A job keeps its own user (and the user's own password); everything else comes from the
//! endpoint, applied again before each run, so an edited endpoint applies from each job's next
//! run.

use serde::{Deserialize, Serialize};

use crate::EndpointSpec;

/// Default concurrent migrations per endpoint (Exchange's default).
pub const DEFAULT_MAX_MIGRATIONS: usize = 20;
/// Default concurrent incremental syncs per endpoint (Exchange's default).
pub const DEFAULT_MAX_SYNCS: usize = 10;

const fn default_migrations() -> usize {
    DEFAULT_MAX_MIGRATIONS
}

const fn default_syncs() -> usize {
    DEFAULT_MAX_SYNCS
}

/// A connection kept by name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamedEndpoint {
    /// Its name, as jobs give it in `endpoint = "NAME"`.
    pub name: String,
    /// The connection: an endpoint without a user (an administrator's login and secret are
    /// kept here, sealed in the store like a job's).
    pub connection: EndpointSpec,
    /// Jobs running at once on this endpoint (first copies and incremental syncs).
    #[serde(default = "default_migrations")]
    pub max_migrations: usize,
    /// Of those, incremental syncs (runs of jobs that completed before) at once.
    #[serde(default = "default_syncs")]
    pub max_syncs: usize,
}

impl NamedEndpoint {
    /// The endpoint of a mailbox that names this one: the connection from here, the user and
    /// the user's own password (or token settings) from `mailbox`. A user's own password logs
    /// in as the user even where the endpoint has an administrator, as in a batch template.
    pub fn apply(&self, mailbox: &mut EndpointSpec) {
        let user = std::mem::take(&mut mailbox.user);
        let password = mailbox.password.take();
        let oauth2 = mailbox.oauth2.take();
        let auth = mailbox.auth;
        *mailbox = self.connection.clone();
        mailbox.user = user;
        mailbox.endpoint = Some(self.name.clone());
        if let Some(o) = oauth2 {
            mailbox.oauth2 = Some(o);
            mailbox.auth = auth;
        } else if let Some(p) = password {
            mailbox.use_own_password(p);
        }
    }

    /// Checks the endpoint: a name, a host or plugin, no user, limits of at least 1.
    ///
    /// # Errors
    ///
    /// A message naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() || self.name.contains('/') {
            return Err("an endpoint needs a name without '/'".into());
        }
        if self.connection.host.trim().is_empty() && self.connection.oauth2.is_none() {
            return Err(format!("endpoint {}: host is missing", self.name));
        }
        if !self.connection.user.is_empty() {
            return Err(format!(
                "endpoint {}: user: an endpoint has no user (each job or CSV row gives its own)",
                self.name
            ));
        }
        if self.max_migrations == 0 || self.max_syncs == 0 {
            return Err(format!(
                "endpoint {}: max_migrations and max_syncs must be at least 1",
                self.name
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(text: &str) -> EndpointSpec {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_mailbox_takes_the_connection_and_keeps_its_user_and_password() {
        let named = NamedEndpoint {
            name: "old".into(),
            connection: endpoint(
                "host = \"imap.old\"\nport = 1143\nsecurity = \"starttls\"\nadmin_user = \"admin\"\nadmin_password = \"a\"\n",
            ),
            max_migrations: 20,
            max_syncs: 10,
        };
        let mut with_admin = endpoint("endpoint = \"old\"\nuser = \"alice\"\n");
        named.apply(&mut with_admin);
        assert_eq!(
            (
                with_admin.host.as_str(),
                with_admin.port,
                with_admin.user.as_str()
            ),
            ("imap.old", Some(1143), "alice")
        );
        assert_eq!(with_admin.admin_user.as_deref(), Some("admin"));
        assert!(with_admin.login_secret().is_some(), "the administrator's");
        let mut own = endpoint("endpoint = \"old\"\nuser = \"bob\"\npassword = \"b\"\n");
        named.apply(&mut own);
        assert!(own.admin_user.is_none(), "bob logs in as himself");
        assert_eq!(own.login_secret().map(crate::Secret::expose), Some("b"));
        assert_eq!(own.endpoint.as_deref(), Some("old"));
    }
}
