//! E-mail notifications: a batch's (or a job's) completion report sent through the SMTP server
//! the administrator configured (`--smtp-server`), to the addresses its job files name
//! (`notify = ["admin@example.org"]`); alerts ([`crate::alerts`]) to To, Cc and Bcc addresses.

use std::sync::Arc;
use std::time::Duration;

use mail_send::SmtpClientBuilder;
use mail_send::mail_builder::MessageBuilder;
use migrated_core::Secret;
use migrated_imap::CertCheck;

/// How `SMTP` reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SmtpSecurity {
    /// Implicit TLS (port 465).
    Tls,
    /// STARTTLS (port 587), refused if the server does not offer it.
    Starttls,
    /// No encryption: a relay on this host or a trusted network only.
    Plain,
}

/// Who a message goes to. Bcc addresses receive it without appearing in its headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Recipients {
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
}

impl Recipients {
    /// Every address, To then Cc then Bcc.
    pub(crate) fn all(&self) -> Vec<String> {
        self.to
            .iter()
            .chain(&self.cc)
            .chain(&self.bcc)
            .cloned()
            .collect()
    }

    /// Whether there is no one to send to.
    pub(crate) fn is_empty(&self) -> bool {
        self.to.is_empty() && self.cc.is_empty() && self.bcc.is_empty()
    }
}

/// The SMTP server reports go through.
#[derive(Debug, Clone)]
pub(crate) struct Smtp {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub from: String,
}

impl Smtp {
    /// `host[:port]`, with the security's usual port when none is given.
    pub(crate) fn parse_server(server: &str, security: SmtpSecurity) -> (String, u16) {
        let default = match security {
            SmtpSecurity::Tls => 465,
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Plain => 25,
        };
        match server.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.starts_with('[') => (
                h.trim_start_matches('[').trim_end_matches(']').to_owned(),
                p.parse().unwrap_or(default),
            ),
            _ => (server.to_owned(), default),
        }
    }

    /// Sends one text message to `to`.
    ///
    /// # Errors
    ///
    /// What failed, with the server's reply.
    pub(crate) async fn send(
        self: Arc<Self>,
        to: Vec<String>,
        subject: String,
        body: String,
    ) -> Result<(), String> {
        let recipients = Recipients {
            to,
            ..Recipients::default()
        };
        self.send_to(recipients, subject, body).await
    }

    /// Sends one text message to To, Cc and Bcc addresses (Bcc in the envelope only).
    ///
    /// # Errors
    ///
    /// What failed, with the server's reply.
    pub(crate) async fn send_to(
        self: Arc<Self>,
        recipients: Recipients,
        subject: String,
        body: String,
    ) -> Result<(), String> {
        fn list(v: &[String]) -> Vec<&str> {
            v.iter().map(String::as_str).collect()
        }
        let mut message = MessageBuilder::new()
            .from(("migrated", self.from.as_str()))
            .subject(subject)
            .text_body(body);
        if !recipients.to.is_empty() {
            message = message.to(list(&recipients.to));
        }
        if !recipients.cc.is_empty() {
            message = message.cc(list(&recipients.cc));
        }
        // Bcc goes in the envelope only: a Bcc header would show every copy's recipients.
        let body = message
            .write_to_vec()
            .map_err(|e| format!("the message could not be written: {e}"))?;
        let message =
            mail_send::smtp::message::Message::new(self.from.clone(), recipients.all(), body);
        let place = format!("SMTP server {}:{}", self.host, self.port);
        let tls = migrated_imap::tls::client_config(&CertCheck::System)
            .map_err(|e| format!("{place}: {e}"))?;
        let mut builder = SmtpClientBuilder::new_with_tls_connector(
            self.host.as_str(),
            self.port,
            tokio_rustls::TlsConnector::from(tls),
        )
        .implicit_tls(self.security == SmtpSecurity::Tls)
        .timeout(Duration::from_secs(60));
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            builder = builder.credentials((user.as_str(), password.expose()));
        }
        let sent = match self.security {
            SmtpSecurity::Plain => match builder.connect_plain().await {
                Ok(mut c) => c.send(message).await.map(|_| ()),
                Err(e) => Err(e),
            },
            _ => match builder.connect().await {
                Ok(mut c) => c.send(message).await.map(|_| ()),
                Err(e) => Err(e),
            },
        };
        sent.map_err(|e| format!("{place}: {e}"))
    }
}
