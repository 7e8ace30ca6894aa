//! How a job reaches a server: the transport security, the login method and the form of an
//! administrator's login on behalf of the user, as job files name them (`security =
//! "starttls"`, `auth = "plain"`, `admin_login = "separator"`). Serde enums, so a wrong word
//! is refused where the file is read, with its line and the words allowed.

use serde::{Deserialize, Serialize};

/// Transport security.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Implicit TLS (port 993).
    #[default]
    Tls,
    /// Plain connection upgraded with STARTTLS before login (port 143); refused if the server
    /// does not offer it.
    #[serde(rename = "starttls")]
    StartTls,
    /// No encryption at all. Only when the job says so explicitly.
    Plain,
}

/// How to log in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// `LOGIN user password`.
    #[default]
    Login,
    /// `AUTHENTICATE PLAIN` (SASL PLAIN).
    Plain,
    /// `AUTHENTICATE XOAUTH2` with an OAuth 2 access token as the secret.
    #[serde(rename = "xoauth2")]
    XOAuth2,
    /// OAuth 2 with tokens the daemon obtains and refreshes (the endpoint's `[oauth2]`
    /// table), sent with `OAUTHBEARER` or `XOAUTH2`, whichever the server announces.
    #[serde(rename = "oauth2")]
    OAuth2,
}

/// How an administrator logs in on behalf of the mailbox's user (`admin_login`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminLogin {
    /// `AUTHENTICATE PLAIN` with an authorization identity (RFC 4616): authzid = the user,
    /// authcid = the administrator, the administrator's password. Dovecot master users, Cyrus
    /// admins and proxy servers, and most servers with a notion of an administrator take it.
    #[default]
    #[serde(rename = "sasl-plain")]
    SaslPlain,
    /// One login name made of the user, a separator and the administrator (`alice*admin`),
    /// sent with the endpoint's `auth` (`LOGIN` or `AUTHENTICATE PLAIN`): Dovecot's
    /// `auth_master_user_separator`, also what UW-IMAP-style servers offer.
    #[serde(rename = "separator")]
    Separator,
}

impl AdminLogin {
    /// Parses a job's `admin_login` value (as the plugin ABI's [`crate::Account`] carries it).
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "sasl-plain" => Some(Self::SaslPlain),
            "separator" => Some(Self::Separator),
            _ => None,
        }
    }

    /// The job's word for it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SaslPlain => "sasl-plain",
            Self::Separator => "separator",
        }
    }
}

impl Security {
    /// Parses a job's `security` value (as the plugin ABI's [`crate::Account`] carries it).
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "tls" => Some(Self::Tls),
            "starttls" => Some(Self::StartTls),
            "plain" => Some(Self::Plain),
            _ => None,
        }
    }

    /// The job's word for it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tls => "tls",
            Self::StartTls => "starttls",
            Self::Plain => "plain",
        }
    }
}

impl AuthMethod {
    /// Parses a job's `auth` value (as the plugin ABI's [`crate::Account`] carries it).
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "login" => Some(Self::Login),
            "plain" => Some(Self::Plain),
            "xoauth2" => Some(Self::XOAuth2),
            "oauth2" => Some(Self::OAuth2),
            _ => None,
        }
    }

    /// The job's word for it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Plain => "plain",
            Self::XOAuth2 => "xoauth2",
            Self::OAuth2 => "oauth2",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_parses_back_to_its_value() {
        for s in [Security::Tls, Security::StartTls, Security::Plain] {
            assert_eq!(Security::parse(s.as_str()), Some(s));
        }
        for a in [
            AuthMethod::Login,
            AuthMethod::Plain,
            AuthMethod::XOAuth2,
            AuthMethod::OAuth2,
        ] {
            assert_eq!(AuthMethod::parse(a.as_str()), Some(a));
        }
        for a in [AdminLogin::SaslPlain, AdminLogin::Separator] {
            assert_eq!(AdminLogin::parse(a.as_str()), Some(a));
        }
    }

    #[test]
    fn serde_uses_the_job_file_words() {
        #[derive(Debug, Deserialize, Serialize)]
        struct E {
            security: Security,
            auth: AuthMethod,
            admin_login: AdminLogin,
        }
        let text = "security = \"starttls\"\nauth = \"xoauth2\"\nadmin_login = \"separator\"\n";
        let e: E = toml::from_str(text).unwrap();
        assert_eq!(
            (e.security, e.auth, e.admin_login),
            (
                Security::StartTls,
                AuthMethod::XOAuth2,
                AdminLogin::Separator
            )
        );
        assert_eq!(toml::to_string(&e).unwrap(), text);
        let err = toml::from_str::<E>(&text.replace("\"separator\"", "\"master\""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 3") && err.contains("expected `sasl-plain` or `separator`"),
            "{err}"
        );
    }
}
