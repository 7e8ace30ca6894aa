//! Where and how to connect: host, port, TLS mode, certificate checks, authentication, and
//! an administrator's login on behalf of the user.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use migrated_core::{AdminLogin, AuthMethod, Secret, Security};

/// How the server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertCheck {
    /// Against the system's trusted roots.
    System,
    /// Against the CA certificates in this PEM file (and only those).
    CaFile(PathBuf),
    /// Exactly the certificate with this SHA-256 fingerprint (`tls_fingerprint`), whoever
    /// signed it and whatever names it lists.
    Fingerprint([u8; 32]),
    /// Not at all. Anyone on the path can read the password: for lab use only.
    DangerAcceptAnyCertificate,
}

/// One IMAP account on one server.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Transport security.
    pub security: Security,
    /// Certificate checks.
    pub cert_check: CertCheck,
    /// Login method.
    pub auth: AuthMethod,
    /// Login name: the mailbox's user (with [`Endpoint::admin`], the user logged in on behalf
    /// of).
    pub user: String,
    /// Password or token; with [`Endpoint::admin`], the administrator's password.
    pub secret: Secret,
    /// An administrator who logs in on behalf of `user`, or `None` to log in as the user.
    pub admin: Option<Admin>,
    /// With [`AuthMethod::OAuth2`]: where tokens come from and the mechanism; `None` sends
    /// `secret` as the token, by whichever mechanism the server announces.
    pub oauth: Option<OAuth>,
    /// Limit on every network call (connect, each reply, each write).
    pub timeout: Duration,
}

/// An administrator logging in on behalf of the endpoint's user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// The administrator's login name.
    pub user: String,
    /// How: SASL PLAIN with an authorization identity, or a composed login name.
    pub login: AdminLogin,
    /// For [`AdminLogin::Separator`]: what stands between the user and the administrator.
    pub separator: String,
}

/// An OAuth 2 login's tokens and mechanism.
#[derive(Debug, Clone, Default)]
pub struct OAuth {
    /// Asked for a token before each login, told when the server refuses one; `None`: the
    /// endpoint's secret is the token.
    pub tokens: Option<Arc<dyn migrated_core::AccessTokens>>,
    /// `None`: OAUTHBEARER if the server announces it, else XOAUTH2.
    pub mechanism: Option<migrated_core::Mechanism>,
}

/// What goes on the wire to log in (never shown: it holds the secret).
#[derive(PartialEq, Eq)]
pub(crate) enum Credentials<'a> {
    /// `LOGIN name secret`.
    Login { name: String, secret: &'a str },
    /// `AUTHENTICATE PLAIN`, the initial response `authzid NUL authcid NUL secret`.
    Plain {
        authzid: &'a str,
        authcid: String,
        secret: &'a str,
    },
    /// `AUTHENTICATE XOAUTH2` for `user` with the token.
    XOAuth2 { user: &'a str, token: &'a str },
    /// `AUTHENTICATE OAUTHBEARER` (RFC 7628) for `user` with the token.
    OAuthBearer { user: &'a str, token: &'a str },
}

impl Credentials<'_> {
    /// The SASL initial response, for the AUTHENTICATE forms.
    pub(crate) fn initial_response(&self) -> Option<Vec<u8>> {
        match self {
            Self::Login { .. } => None,
            Self::Plain {
                authzid,
                authcid,
                secret,
            } => Some(format!("{authzid}\0{authcid}\0{secret}").into_bytes()),
            Self::XOAuth2 { user, token } => {
                Some(format!("user={user}\x01auth=Bearer {token}\x01\x01").into_bytes())
            }
            Self::OAuthBearer { user, token } => {
                Some(format!("n,a={},\x01auth=Bearer {token}\x01\x01", gs2_name(user)).into_bytes())
            }
        }
    }
}

impl Endpoint {
    /// How this endpoint logs in: as its user with `auth`, or as its administrator on behalf
    /// of the user (SASL PLAIN with the user as authorization identity, or the login name
    /// `user<separator>admin` sent with `auth`).
    pub(crate) fn credentials(&self) -> Credentials<'_> {
        let secret = self.secret.expose();
        let (name, authzid) = match &self.admin {
            None => (self.user.clone(), ""),
            Some(a) if a.login == AdminLogin::SaslPlain => {
                return Credentials::Plain {
                    authzid: &self.user,
                    authcid: a.user.clone(),
                    secret,
                };
            }
            Some(a) => (format!("{}{}{}", self.user, a.separator, a.user), ""),
        };
        match self.auth {
            AuthMethod::Login => Credentials::Login { name, secret },
            AuthMethod::Plain => Credentials::Plain {
                authzid,
                authcid: name,
                secret,
            },
            // The token of an OAuth 2 login is chosen when connecting (`oauth_credentials`).
            AuthMethod::XOAuth2 | AuthMethod::OAuth2 => Credentials::XOAuth2 {
                user: &self.user,
                token: secret,
            },
        }
    }

    /// The credentials of an OAuth 2 login with `token`, by `mechanism`.
    pub(crate) fn oauth_credentials<'a>(
        &'a self,
        token: &'a str,
        mechanism: migrated_core::Mechanism,
    ) -> Credentials<'a> {
        match mechanism {
            migrated_core::Mechanism::XOAuth2 => Credentials::XOAuth2 {
                user: &self.user,
                token,
            },
            migrated_core::Mechanism::OAuthBearer => Credentials::OAuthBearer {
                user: &self.user,
                token,
            },
        }
    }

    /// Who logs in, for messages: `"alice"`, or `"admin" on behalf of "alice"`.
    pub fn who(&self) -> String {
        crate::error::who(&self.user, self.admin.as_ref().map(|a| a.user.as_str()))
    }

    /// `host:port`, for messages.
    pub fn server(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A user name as a GS2 header's `a=` carries it (RFC 5801 §4: `,` and `=` escaped).
fn gs2_name(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

impl TryFrom<migrated_core::Account> for Endpoint {
    type Error = String;

    /// The endpoint of an account as the daemon sends it to a source plugin.
    fn try_from(a: migrated_core::Account) -> Result<Self, String> {
        let security = Security::parse(&a.security).ok_or_else(|| {
            format!(
                "security {:?} is not one of \"tls\", \"starttls\", \"plain\"",
                a.security
            )
        })?;
        let auth = AuthMethod::parse(&a.auth).ok_or_else(|| {
            format!(
                "auth {:?} is not one of \"login\", \"plain\", \"xoauth2\", \"oauth2\"",
                a.auth
            )
        })?;
        let cert_check = match (a.ca_file, a.tls_fingerprint, a.danger_accept_invalid_certs) {
            (_, _, true) => CertCheck::DangerAcceptAnyCertificate,
            (_, Some(pin), false) => CertCheck::Fingerprint(
                crate::tls::parse_fingerprint(&pin).map_err(|e| format!("tls_fingerprint: {e}"))?,
            ),
            (Some(ca), None, false) => CertCheck::CaFile(ca.into()),
            (None, None, false) => CertCheck::System,
        };
        let admin = match a.admin_user {
            None => None,
            Some(user) => Some(Admin {
                user,
                login: match a.admin_login.as_deref() {
                    None => AdminLogin::SaslPlain,
                    Some(word) => AdminLogin::parse(word).ok_or_else(|| {
                        format!("admin_login {word:?} is not one of \"sasl-plain\", \"separator\"")
                    })?,
                },
                separator: a.admin_separator.unwrap_or_else(|| "*".to_owned()),
            }),
        };
        Ok(Self {
            admin,
            oauth: None,
            host: a.host,
            port: a.port,
            security,
            cert_check,
            auth,
            user: a.user,
            secret: a.secret,
            timeout: Duration::from_secs(a.timeout_secs.max(1)),
        })
    }
}

impl From<&Endpoint> for migrated_core::Account {
    /// The account a source plugin receives for this endpoint (no settings).
    fn from(e: &Endpoint) -> Self {
        Self {
            host: e.host.clone(),
            port: e.port,
            security: e.security.as_str().to_owned(),
            ca_file: match &e.cert_check {
                CertCheck::CaFile(p) => Some(p.to_string_lossy().into_owned()),
                _ => None,
            },
            tls_fingerprint: match &e.cert_check {
                CertCheck::Fingerprint(pin) => Some(crate::tls::fingerprint_text(pin)),
                _ => None,
            },
            danger_accept_invalid_certs: e.cert_check == CertCheck::DangerAcceptAnyCertificate,
            auth: e.auth.as_str().to_owned(),
            user: e.user.clone(),
            secret: e.secret.clone(),
            timeout_secs: e.timeout.as_secs(),
            path: None,
            settings: Default::default(),
            admin_user: e.admin.as_ref().map(|a| a.user.clone()),
            admin_login: e.admin.as_ref().map(|a| a.login.as_str().to_owned()),
            admin_separator: e
                .admin
                .as_ref()
                .filter(|a| a.login == AdminLogin::Separator)
                .map(|a| a.separator.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(auth: AuthMethod, admin: Option<(AdminLogin, &str)>) -> Endpoint {
        Endpoint {
            host: "h".into(),
            port: 143,
            security: Security::Plain,
            cert_check: CertCheck::System,
            auth,
            user: "alice".into(),
            secret: Secret::new("pw"),
            admin: admin.map(|(login, separator)| Admin {
                user: "admin".into(),
                login,
                separator: separator.into(),
            }),
            oauth: None,
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn oauth_tokens_go_in_the_form_each_mechanism_defines() {
        let mut e = endpoint(AuthMethod::OAuth2, None);
        e.user = "a,b=c@example.com".into();
        let x = e.oauth_credentials("tok", migrated_core::Mechanism::XOAuth2);
        assert_eq!(
            x.initial_response().unwrap(),
            b"user=a,b=c@example.com\x01auth=Bearer tok\x01\x01"
        );
        // RFC 7628 §3.1 over a GS2 header (RFC 5801), whose `a=` escapes `,` and `=`.
        let b = e.oauth_credentials("tok", migrated_core::Mechanism::OAuthBearer);
        assert_eq!(
            b.initial_response().unwrap(),
            b"n,a=a=2Cb=3Dc@example.com,\x01auth=Bearer tok\x01\x01"
        );
    }

    fn wire(e: &Endpoint) -> (Option<String>, Option<Vec<u8>>) {
        let c = e.credentials();
        let name = match &c {
            Credentials::Login { name, secret } => Some(format!("{name} {secret}")),
            _ => None,
        };
        (name, c.initial_response())
    }

    #[test]
    fn each_login_form_puts_the_names_where_the_server_looks_for_them() {
        let own = endpoint(AuthMethod::Login, None);
        assert_eq!(wire(&own), (Some("alice pw".into()), None));
        let own_plain = endpoint(AuthMethod::Plain, None);
        assert_eq!(wire(&own_plain).1.unwrap(), b"\0alice\0pw");
        // SASL PLAIN: authzid = the user, authcid = the administrator, whatever `auth` says.
        for auth in [AuthMethod::Login, AuthMethod::Plain] {
            let e = endpoint(auth, Some((AdminLogin::SaslPlain, "*")));
            assert_eq!(wire(&e).1.unwrap(), b"alice\0admin\0pw");
        }
        // The separator form: one login name, sent with `auth`.
        let e = endpoint(AuthMethod::Login, Some((AdminLogin::Separator, "*")));
        assert_eq!(wire(&e), (Some("alice*admin pw".into()), None));
        let e = endpoint(AuthMethod::Plain, Some((AdminLogin::Separator, "%")));
        assert_eq!(wire(&e).1.unwrap(), b"\0alice%admin\0pw");
        assert_eq!(e.who(), "\"admin\" on behalf of \"alice\"");
        assert_eq!(own.who(), "\"alice\"");
    }

    #[test]
    fn the_administrator_crosses_the_plugin_abi_and_back() {
        let e = endpoint(AuthMethod::Login, Some((AdminLogin::Separator, "%")));
        let account = migrated_core::Account::from(&e);
        assert_eq!(
            (
                account.admin_user.as_deref(),
                account.admin_login.as_deref(),
                account.admin_separator.as_deref()
            ),
            (Some("admin"), Some("separator"), Some("%"))
        );
        let back = Endpoint::try_from(account).unwrap();
        assert_eq!(back.admin, e.admin);
        // An account without them (a 1.2 daemon's) logs in as its user.
        let plain = migrated_core::Account::from(&endpoint(AuthMethod::Login, None));
        assert_eq!(Endpoint::try_from(plain).unwrap().admin, None);
        let mut bad = migrated_core::Account::from(&e);
        bad.admin_login = Some("master".into());
        assert!(
            Endpoint::try_from(bad)
                .unwrap_err()
                .starts_with("admin_login \"master\" is not one of")
        );
    }
}
