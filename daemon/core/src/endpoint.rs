//! How a job reaches a server: the transport security and the login method, as job files
//! name them (`security = "starttls"`, `auth = "plain"`). Serde enums, so a wrong word is
//! refused where the file is read, with its line and the words allowed.

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
            _ => None,
        }
    }

    /// The job's word for it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Plain => "plain",
            Self::XOAuth2 => "xoauth2",
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
        for a in [AuthMethod::Login, AuthMethod::Plain, AuthMethod::XOAuth2] {
            assert_eq!(AuthMethod::parse(a.as_str()), Some(a));
        }
    }

    #[test]
    fn serde_uses_the_job_file_words() {
        #[derive(Deserialize, Serialize)]
        struct E {
            security: Security,
            auth: AuthMethod,
        }
        let e: E = toml::from_str("security = \"starttls\"\nauth = \"xoauth2\"\n").unwrap();
        assert_eq!(
            (e.security, e.auth),
            (Security::StartTls, AuthMethod::XOAuth2)
        );
        assert_eq!(
            toml::to_string(&e).unwrap(),
            "security = \"starttls\"\nauth = \"xoauth2\"\n"
        );
    }
}
