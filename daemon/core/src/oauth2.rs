//! OAuth 2 logins as job files name them (`auth = "oauth2"` and an `[source.oauth2]` table):
//! how the daemon obtains access tokens for an endpoint (a refresh token, a Google service
//! account with domain-wide delegation, a Microsoft application's client credentials), the
//! provider presets (token endpoint, scope, IMAP host) and the [`AccessTokens`] a connection
//! asks for a token before it logs in. Fetching tokens is I/O and lives in `migrated-oauth`.

use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::{Cause, Secret};

/// A provider whose endpoints and scopes are known, so a job names it instead of its URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Gmail and Google Workspace.
    Google,
    /// Microsoft 365 (Exchange Online).
    Microsoft,
}

/// How access tokens are obtained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Grant {
    /// A refresh token (RFC 6749 §6) the user granted once, with the client's id and secret:
    /// a personal mailbox, or one authorized with `migratectl authorize`.
    #[default]
    RefreshToken,
    /// A Google service account with domain-wide delegation: a JWT signed with its key, for
    /// the mailbox's user (RFC 7523). One key serves a whole batch.
    ServiceAccount,
    /// An application's own token (client credentials, RFC 6749 §4.4), the mailbox named in
    /// the SASL exchange: Microsoft 365 application access.
    ClientCredentials,
}

/// The SASL mechanism that carries the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mechanism {
    /// Google's and Microsoft's `XOAUTH2`.
    XOAuth2,
    /// `OAUTHBEARER` (RFC 7628).
    OAuthBearer,
}

/// An endpoint's `[oauth2]` table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Spec {
    /// `google` or `microsoft`: their token endpoint, scope and IMAP host, each overridable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    /// `refresh-token` (default), `service-account` or `client-credentials`.
    #[serde(default)]
    pub grant: Grant,
    /// The OAuth client's id (refresh-token and client-credentials grants).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// File holding the client's secret (first line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    /// The client's secret inline (the job file then readable by root only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    /// File holding the refresh token (first line), as `migratectl authorize` writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_file: Option<PathBuf>,
    /// The refresh token inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Secret>,
    /// The service account's JSON key file, as Google's console gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_key_file: Option<PathBuf>,
    /// The key file's content (read from `service_account_key_file` when the job is read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_key: Option<Secret>,
    /// Microsoft: the directory (tenant) id or domain; default `organizations`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The token endpoint, instead of the provider's (or the service account key's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// The device authorization endpoint `migratectl authorize` uses (RFC 8628).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_authorization_url: Option<String>,
    /// The scope asked for, instead of the provider's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// `xoauth2` or `oauthbearer`; by default whichever the server announces (OAUTHBEARER
    /// first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<Mechanism>,
}

const GOOGLE_TOKEN: &str = "https://oauth2.googleapis.com/token";
const GOOGLE_DEVICE: &str = "https://oauth2.googleapis.com/device/code";
const GOOGLE_SCOPE: &str = "https://mail.google.com/";
/// Google's CardDAV API (`https://www.googleapis.com/carddav/v1/`).
pub const GOOGLE_CARDDAV_SCOPE: &str = "https://www.googleapis.com/auth/carddav";
const MICROSOFT_LOGIN: &str = "https://login.microsoftonline.com";
const MICROSOFT_DELEGATED: &str =
    "https://outlook.office365.com/IMAP.AccessAsUser.All offline_access";
const MICROSOFT_APPLICATION: &str = "https://outlook.office365.com/.default";

impl OAuth2Spec {
    /// The token endpoint: the job's, else the provider's (for a service account, the key's
    /// `token_uri` comes before the provider's and is the caller's to read).
    pub fn token_url(&self) -> Option<String> {
        if let Some(url) = &self.token_url {
            return Some(url.clone());
        }
        match self.provider? {
            Provider::Google => Some(GOOGLE_TOKEN.to_owned()),
            Provider::Microsoft => Some(format!(
                "{MICROSOFT_LOGIN}/{}/oauth2/v2.0/token",
                self.tenant()
            )),
        }
    }

    /// The device authorization endpoint: the job's, else the provider's.
    pub fn device_authorization_url(&self) -> Option<String> {
        if let Some(url) = &self.device_authorization_url {
            return Some(url.clone());
        }
        match self.provider? {
            Provider::Google => Some(GOOGLE_DEVICE.to_owned()),
            Provider::Microsoft => Some(format!(
                "{MICROSOFT_LOGIN}/{}/oauth2/v2.0/devicecode",
                self.tenant()
            )),
        }
    }

    /// The scope: the job's, else the provider's for the grant.
    pub fn scope(&self) -> Option<String> {
        if let Some(scope) = &self.scope {
            return Some(scope.clone());
        }
        match (self.provider?, self.grant) {
            (Provider::Google, _) => Some(GOOGLE_SCOPE.to_owned()),
            (Provider::Microsoft, Grant::ClientCredentials) => {
                Some(MICROSOFT_APPLICATION.to_owned())
            }
            (Provider::Microsoft, _) => Some(MICROSOFT_DELEGATED.to_owned()),
        }
    }

    /// The table as a CardDAV endpoint reads it: the scope, when the job gives none, is the
    /// provider's for contacts (Google's CardDAV scope; Microsoft 365 has no CardDAV, so its
    /// mail scope is not asked for and the job must name one).
    #[must_use]
    pub fn for_contacts(&self) -> Self {
        let mut spec = self.clone();
        if spec.scope.is_none() {
            spec.scope = match spec.provider {
                Some(Provider::Google) => Some(GOOGLE_CARDDAV_SCOPE.to_owned()),
                Some(Provider::Microsoft) | None => None,
            };
        }
        spec
    }

    /// The provider's CardDAV server, for a contacts endpoint that names none (Microsoft 365
    /// has none).
    pub fn carddav_host(&self) -> Option<&'static str> {
        match self.provider? {
            Provider::Google => Some("www.googleapis.com"),
            Provider::Microsoft => None,
        }
    }

    /// The provider's IMAP server, for an endpoint that names none.
    pub fn imap_host(&self) -> Option<&'static str> {
        match self.provider? {
            Provider::Google => Some("imap.gmail.com"),
            Provider::Microsoft => Some("outlook.office365.com"),
        }
    }

    fn tenant(&self) -> &str {
        self.tenant.as_deref().unwrap_or("organizations")
    }

    /// The secret the grant rests on (what `migratectl delta --source-password-file`
    /// replaces): the refresh token, the service account's key, the client's secret.
    pub fn grant_secret(&self) -> Option<&Secret> {
        match self.grant {
            Grant::RefreshToken => self.refresh_token.as_ref(),
            Grant::ServiceAccount => self.service_account_key.as_ref(),
            Grant::ClientCredentials => self.client_secret.as_ref(),
        }
    }

    /// Replaces the secret the grant rests on (see [`OAuth2Spec::grant_secret`]).
    pub fn set_grant_secret(&mut self, secret: Secret) {
        match self.grant {
            Grant::RefreshToken => self.refresh_token = Some(secret),
            Grant::ServiceAccount => self.service_account_key = Some(secret),
            Grant::ClientCredentials => self.client_secret = Some(secret),
        }
    }

    /// Drops every secret and the files they came from.
    pub fn erase_secrets(&mut self) {
        self.client_secret = None;
        self.client_secret_file = None;
        self.refresh_token = None;
        self.refresh_token_file = None;
        self.service_account_key = None;
        self.service_account_key_file = None;
    }

    /// What is missing or contradictory, as `(field, message)`, checked without a network.
    ///
    /// # Errors
    ///
    /// The field at fault and what to do.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.token_url().is_none() && self.grant != Grant::ServiceAccount {
            return Err((
                "token_url",
                "missing: name a provider (\"google\", \"microsoft\") or give the token endpoint"
                    .into(),
            ));
        }
        if self.scope().is_none() {
            return Err((
                "scope",
                "missing: name a provider or give the scope to ask for".into(),
            ));
        }
        let need = |field: &'static str, given: bool, why: &str| {
            if given {
                Ok(())
            } else {
                Err((field, format!("missing: {why}")))
            }
        };
        match self.grant {
            Grant::RefreshToken => {
                need(
                    "client_id",
                    self.client_id.is_some(),
                    "the refresh-token grant needs the OAuth client's id",
                )?;
                need(
                    "refresh_token_file",
                    self.refresh_token.is_some(),
                    "give refresh_token_file (`migratectl authorize` writes one) or refresh_token",
                )
            }
            Grant::ServiceAccount => need(
                "service_account_key_file",
                self.service_account_key.is_some(),
                "give the service account's JSON key file",
            ),
            Grant::ClientCredentials => {
                need(
                    "client_id",
                    self.client_id.is_some(),
                    "the client-credentials grant needs the application's (client) id",
                )?;
                need(
                    "client_secret_file",
                    self.client_secret.is_some(),
                    "give the application's client_secret_file or client_secret",
                )
            }
        }
    }
}

/// An access token and when it stops being valid.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// The bearer token.
    pub token: Secret,
    /// When the provider said it expires (`expires_in`), if it did.
    pub expires_at: Option<SystemTime>,
}

/// Why no token could be had.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TokenError {
    /// The token endpoint, the provider's reply and what to do.
    pub message: String,
    /// [`Cause::Authentication`] when the grant itself was refused (a revoked refresh token,
    /// a key the provider does not know): no retry helps, new credentials do.
    pub cause: Option<Cause>,
}

impl TokenError {
    /// Whether waiting and asking again may help (the endpoint unreachable, a 5xx).
    pub fn is_temporary(&self) -> bool {
        self.cause != Some(Cause::Authentication)
    }
}

/// Access tokens for one endpoint, fetched and refreshed ahead of their expiry by the daemon;
/// every connection asks before it logs in.
pub trait AccessTokens: Send + Sync + fmt::Debug {
    /// A token valid for a while yet. Blocks on the token endpoint when a new one is needed:
    /// call it off the async threads.
    ///
    /// # Errors
    ///
    /// The provider refused the grant, or could not be reached.
    fn token(&self) -> Result<AccessToken, TokenError>;

    /// The server refused `token`: it is forgotten, so the next [`AccessTokens::token`]
    /// fetches a new one.
    fn refused(&self, token: &Secret);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_fill_what_the_job_leaves_out_and_the_job_wins() {
        let mut spec = OAuth2Spec {
            provider: Some(Provider::Microsoft),
            grant: Grant::ClientCredentials,
            tenant: Some("contoso.onmicrosoft.com".into()),
            ..OAuth2Spec::default()
        };
        assert_eq!(
            spec.token_url().unwrap(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(
            spec.scope().unwrap(),
            "https://outlook.office365.com/.default"
        );
        assert_eq!(spec.imap_host(), Some("outlook.office365.com"));
        spec.token_url = Some("http://127.0.0.1:1/token".into());
        assert_eq!(spec.token_url().unwrap(), "http://127.0.0.1:1/token");
        let google = OAuth2Spec {
            provider: Some(Provider::Google),
            ..OAuth2Spec::default()
        };
        assert_eq!(google.scope().unwrap(), "https://mail.google.com/");
        assert_eq!(
            google.device_authorization_url().unwrap(),
            "https://oauth2.googleapis.com/device/code"
        );
    }

    #[test]
    fn each_grant_names_what_it_lacks() {
        let mut spec = OAuth2Spec {
            provider: Some(Provider::Google),
            ..OAuth2Spec::default()
        };
        assert_eq!(spec.check().unwrap_err().0, "client_id");
        spec.client_id = Some("c".into());
        assert_eq!(spec.check().unwrap_err().0, "refresh_token_file");
        spec.refresh_token = Some(Secret::new("r"));
        assert!(spec.check().is_ok());
        spec.grant = Grant::ServiceAccount;
        assert_eq!(spec.check().unwrap_err().0, "service_account_key_file");
        let custom = OAuth2Spec::default();
        assert_eq!(custom.check().unwrap_err().0, "token_url");
    }

    #[test]
    fn the_grant_secret_is_the_one_the_grant_rests_on() {
        let mut spec = OAuth2Spec {
            grant: Grant::ClientCredentials,
            refresh_token: Some(Secret::new("r")),
            ..OAuth2Spec::default()
        };
        assert!(spec.grant_secret().is_none());
        spec.set_grant_secret(Secret::new("s"));
        assert_eq!(spec.client_secret.as_ref().unwrap().expose(), "s");
        spec.erase_secrets();
        assert!(spec.client_secret.is_none() && spec.refresh_token.is_none());
    }
}
