//! Alerts as data: the kinds of Good news and Bad news the daemon raises, which of them are
//! kept (shown) and mailed (`--alert-kinds-shown`, `--alert-kinds-mailed`), and the mailer
//! that sends Bad news at once or in a digest and Good news in the digest, to the To, Cc and
//! Bcc addresses of `--alert-to`, `--alert-cc` and `--alert-bcc`.

use std::sync::Arc;
use std::time::Duration;

use migrated_ipc::{AlertLevel, AlertRow};
use tokio::sync::mpsc;

use crate::email::{Recipients, Smtp};

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub(crate) enum AlertKind {
    /// Good news: a mailbox (job) finished its run with nothing refused.
    MailboxFinished,
    /// A batch's last mailbox finished (Good news if none failed, Bad news otherwise).
    BatchFinished,
    /// Bad news: a server refused the login (or an OAuth 2 grant).
    LoginRefused,
    /// Bad news: the destination mailbox is full (its quota).
    MailboxFull,
    /// Bad news: messages were refused by the destination.
    MessagesRefused,
    /// Bad news: a folder could not be copied.
    FolderFailed,
    /// Bad news: a run failed.
    JobFailed,
    /// Bad news: a server made the job wait for long (5 minutes or more at once).
    Throttled,
}

impl AlertKind {
    /// Every kind (the default of what is shown and mailed).
    pub(crate) const ALL: [Self; 8] = [
        Self::MailboxFinished,
        Self::BatchFinished,
        Self::LoginRefused,
        Self::MailboxFull,
        Self::MessagesRefused,
        Self::FolderFailed,
        Self::JobFailed,
        Self::Throttled,
    ];

    /// The key alerts carry (`kind`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::MailboxFinished => "mailbox_finished",
            Self::BatchFinished => "batch_finished",
            Self::LoginRefused => "login_refused",
            Self::MailboxFull => "mailbox_full",
            Self::MessagesRefused => "messages_refused",
            Self::FolderFailed => "folder_failed",
            Self::JobFailed => "job_failed",
            Self::Throttled => "throttled",
        }
    }
}

/// A throttle wait at least this long is an alert ("throttled for long").
pub(crate) const THROTTLED_LONG: Duration = Duration::from_secs(300);

/// When Bad news is mailed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum BadNewsMail {
    /// One message per alert, at once.
    Immediate,
    /// In the digest, with the Good news.
    Digest,
}

/// What the manager does with alerts.
#[derive(Debug, Clone)]
pub(crate) struct AlertSettings {
    /// Kinds kept with the job and listed (others are only events).
    pub shown: Vec<AlertKind>,
    /// Kinds mailed (those also shown).
    pub mailed: Vec<AlertKind>,
    /// Alerts kept per job at most: the oldest go first.
    pub max_per_job: usize,
    /// The mailer, when alerts are mailed (an SMTP server and recipients are set).
    pub mailer: Option<mpsc::UnboundedSender<AlertRow>>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            shown: AlertKind::ALL.to_vec(),
            mailed: AlertKind::ALL.to_vec(),
            max_per_job: 100,
            mailer: None,
        }
    }
}

/// How alerts are mailed.
#[derive(Debug, Clone)]
pub(crate) struct Mailing {
    pub smtp: Arc<Smtp>,
    pub recipients: Recipients,
    pub bad: BadNewsMail,
    /// How often the digest goes (when it has something).
    pub digest_every: Duration,
}

/// Starts the mailer: it sends what the manager gives it until the manager is gone (the
/// digest not yet sent then goes at once).
pub(crate) fn start(mailing: Mailing) -> mpsc::UnboundedSender<AlertRow> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(mailer(mailing, rx));
    tx
}

async fn mailer(m: Mailing, mut rx: mpsc::UnboundedReceiver<AlertRow>) {
    let mut digest: Vec<AlertRow> = Vec::new();
    let mut interval = tokio::time::interval(m.digest_every.max(Duration::from_secs(1)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        tokio::select! {
            alert = rx.recv() => match alert {
                Some(a) if a.level == AlertLevel::Bad && m.bad == BadNewsMail::Immediate => {
                    let subject = format!("migrated: Bad news: {}: {}", a.job_name, a.message);
                    send(&m, subject, alert_text(&a)).await;
                }
                Some(a) => digest.push(a),
                None => {
                    send_digest(&m, &mut digest).await;
                    return;
                }
            },
            _ = interval.tick() => send_digest(&m, &mut digest).await,
        }
    }
}

async fn send_digest(m: &Mailing, digest: &mut Vec<AlertRow>) {
    if digest.is_empty() {
        return;
    }
    let alerts = std::mem::take(digest);
    let bad = alerts.iter().filter(|a| a.level == AlertLevel::Bad).count();
    let subject = format!(
        "migrated: digest: {bad} Bad news, {} Good news",
        alerts.len() - bad
    );
    let mut body = format!("{subject}\n");
    for (title, level) in [
        ("Bad news", AlertLevel::Bad),
        ("Good news", AlertLevel::Good),
    ] {
        let of: Vec<&AlertRow> = alerts.iter().filter(|a| a.level == level).collect();
        if of.is_empty() {
            continue;
        }
        body.push_str(&format!("\n{title}\n\n"));
        for a in of {
            body.push_str(&alert_text(a));
            body.push('\n');
        }
    }
    send(m, subject, body).await;
}

async fn send(m: &Mailing, subject: String, body: String) {
    let to = m.recipients.all().join(", ");
    match m
        .smtp
        .clone()
        .send_to(m.recipients.clone(), subject, body)
        .await
    {
        Ok(()) => tracing::info!(to = %to, "Alerts e-mailed."),
        Err(e) => tracing::warn!(
            to = %to,
            error = %e,
            "Alerts could not be e-mailed. Check --smtp-server and the SMTP credentials; `migratectl alerts` lists them."
        ),
    }
}

/// One alert as the mails show it.
pub(crate) fn alert_text(a: &AlertRow) -> String {
    let mut out = format!(
        "{} UTC  {}  {}{}\n  {}\n",
        migrated_ipc::text::date_time(a.time),
        a.job_name,
        a.kind,
        a.batch
            .as_deref()
            .map(|b| format!("  (batch {b})"))
            .unwrap_or_default(),
        a.message
    );
    if !a.what_to_do.is_empty() {
        out.push_str(&format!("  What to do: {}\n", a.what_to_do));
    }
    out.push_str(&format!("  migratectl alerts --job {}\n", a.job));
    out
}
