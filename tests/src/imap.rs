//! A small IMAP client for tests, independent of the project's own IMAP code so that the
//! verifier does not share its bugs. Folder names in this API are UTF-8; they are converted to
//! and from modified UTF-7 at the wire.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use async_imap::types::{Flag, NameAttribute};
use futures_util::TryStreamExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::mutf7;

/// Short commands (LOGIN, SELECT, STORE, LIST) must finish within this.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// A chunk of message bodies (up to `CHUNK_BYTES`) must arrive within this.
const FETCH_TIMEOUT: Duration = Duration::from_secs(180);
/// async-imap buffers each response whole, so bodies are fetched in chunks of about this size.
const CHUNK_BYTES: u64 = 16 * 1024 * 1024;
const CHUNK_MESSAGES: usize = 200;

/// How to protect the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    Plain,
    /// STARTTLS on the plain port.
    StartTls {
        ca_file: PathBuf,
    },
    /// TLS from the first byte (imaps).
    Implicit {
        ca_file: PathBuf,
    },
}

/// Where and who to log in as.
#[derive(Debug, Clone)]
pub struct Account {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub tls: Tls,
}

/// Plain TCP or TLS, as one type so one `Session` type serves both.
#[derive(Debug)]
pub enum ImapStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for ImapStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ImapStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

pub type RawSession = async_imap::Session<ImapStream>;

/// A logged-in session with test helpers. `raw()` gives the async-imap session for anything
/// else.
#[derive(Debug)]
pub struct Session {
    raw: RawSession,
    label: String,
}

/// One LIST entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderInfo {
    /// Decoded UTF-8 name, with the namespace prefix as the server shows it.
    pub name: String,
    /// The name as sent on the wire (modified UTF-7).
    pub wire_name: String,
    pub delimiter: Option<String>,
    /// Attributes such as `\Noselect`, `\HasChildren`, `\Sent`.
    pub attributes: Vec<String>,
}

impl FolderInfo {
    pub fn selectable(&self) -> bool {
        !self.attributes.iter().any(|a| {
            a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent")
        })
    }

    /// The RFC 6154 special-use attribute, if any.
    pub fn special_use(&self) -> Option<&str> {
        const USES: [&str; 7] = [
            "\\All",
            "\\Archive",
            "\\Drafts",
            "\\Flagged",
            "\\Junk",
            "\\Sent",
            "\\Trash",
        ];
        self.attributes
            .iter()
            .find(|a| USES.iter().any(|u| u.eq_ignore_ascii_case(a)))
            .map(String::as_str)
    }
}

/// One message as the server shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub uid: u32,
    /// RFC822.SIZE
    pub size: u64,
    /// System flags and keywords, sorted, without `\Recent`.
    pub flags: Vec<String>,
    /// INTERNALDATE as unix seconds.
    pub internaldate: i64,
    pub message_id: Option<String>,
    /// blake3 of BODY[].
    pub body_hash: blake3::Hash,
}

async fn timed<T, E>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = std::result::Result<T, E>>,
) -> Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.with_context(|| what.to_owned()),
        Err(_) => bail!("{what}: timed out after {limit:?}"),
    }
}

fn tls_connector(ca_file: &PathBuf) -> Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file)
        .with_context(|| format!("reading CA file {}", ca_file.display()))?;
    for cert in certs {
        let cert = cert.with_context(|| format!("parsing CA file {}", ca_file.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("adding CA from {}", ca_file.display()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("rustls protocol versions")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

async fn wrap_tls(tcp: TcpStream, acct: &Account, ca_file: &PathBuf) -> Result<ImapStream> {
    let connector = tls_connector(ca_file)?;
    let server_name = ServerName::try_from(acct.host.clone())
        .with_context(|| format!("{:?} is not a valid TLS server name", acct.host))?;
    let tls = timed(
        COMMAND_TIMEOUT,
        &format!("TLS handshake with {}:{}", acct.host, acct.port),
        connector.connect(server_name, tcp),
    )
    .await?;
    Ok(ImapStream::Tls(Box::new(tls)))
}

/// Connects, reads the greeting, negotiates TLS as asked and logs in.
pub async fn login(acct: &Account) -> Result<Session> {
    let label = format!("{}@{}:{}", acct.user, acct.host, acct.port);
    let tcp = timed(
        COMMAND_TIMEOUT,
        &format!("connecting to {}:{}", acct.host, acct.port),
        TcpStream::connect((acct.host.as_str(), acct.port)),
    )
    .await?;
    tcp.set_nodelay(true).ok();
    let stream = match &acct.tls {
        Tls::Plain => ImapStream::Plain(tcp),
        Tls::Implicit { ca_file } => wrap_tls(tcp, acct, ca_file).await?,
        Tls::StartTls { ca_file } => {
            let mut client = async_imap::Client::new(ImapStream::Plain(tcp));
            read_greeting(&mut client, &label).await?;
            timed(
                COMMAND_TIMEOUT,
                &format!("{label}: STARTTLS"),
                client.run_command_and_check_ok("STARTTLS", None),
            )
            .await?;
            let ImapStream::Plain(tcp) = client.into_inner() else {
                bail!("{label}: STARTTLS on a stream that is already TLS");
            };
            wrap_tls(tcp, acct, ca_file).await?
        }
    };
    let greeted = matches!(acct.tls, Tls::StartTls { .. });
    let mut client = async_imap::Client::new(stream);
    if !greeted {
        read_greeting(&mut client, &label).await?;
    }
    let raw = match tokio::time::timeout(COMMAND_TIMEOUT, client.login(&acct.user, &acct.password))
        .await
    {
        Ok(Ok(s)) => s,
        Ok(Err((e, _))) => return Err(e).with_context(|| format!("{label}: LOGIN")),
        Err(_) => bail!("{label}: LOGIN timed out"),
    };
    Ok(Session { raw, label })
}

async fn read_greeting(client: &mut async_imap::Client<ImapStream>, label: &str) -> Result<()> {
    match timed(
        COMMAND_TIMEOUT,
        &format!("{label}: reading greeting"),
        client.read_response(),
    )
    .await?
    {
        Some(_) => Ok(()),
        None => bail!("{label}: connection closed before the greeting"),
    }
}

fn attribute_string(a: &NameAttribute<'_>) -> String {
    match a {
        NameAttribute::NoInferiors => "\\Noinferiors".to_owned(),
        NameAttribute::NoSelect => "\\Noselect".to_owned(),
        NameAttribute::Marked => "\\Marked".to_owned(),
        NameAttribute::Unmarked => "\\Unmarked".to_owned(),
        NameAttribute::All => "\\All".to_owned(),
        NameAttribute::Archive => "\\Archive".to_owned(),
        NameAttribute::Drafts => "\\Drafts".to_owned(),
        NameAttribute::Flagged => "\\Flagged".to_owned(),
        NameAttribute::Junk => "\\Junk".to_owned(),
        NameAttribute::Sent => "\\Sent".to_owned(),
        NameAttribute::Trash => "\\Trash".to_owned(),
        NameAttribute::Extension(s) => s.to_string(),
        // The enum is non-exhaustive upstream; keep whatever it prints.
        #[allow(unreachable_patterns)]
        other => format!("{other:?}"),
    }
}

/// `Flag` as IMAP spells it; `None` for `\Recent` and `\*`, which are not message state.
fn flag_string(f: &Flag<'_>) -> Option<String> {
    Some(match f {
        Flag::Seen => "\\Seen".to_owned(),
        Flag::Answered => "\\Answered".to_owned(),
        Flag::Flagged => "\\Flagged".to_owned(),
        Flag::Deleted => "\\Deleted".to_owned(),
        Flag::Draft => "\\Draft".to_owned(),
        Flag::Recent | Flag::MayCreate => return None,
        Flag::Custom(s) => s.to_string(),
    })
}

/// A UID set with consecutive runs collapsed (`1:5,7,9:10`).
pub fn uid_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// Formats unix seconds as an IMAP date-time (`"07-Feb-2019 13:05:09 +0000"`, quoted).
pub fn imap_date(unix: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d, hh, mm, ss) = crate::corpus::civil(unix);
    format!(
        "\"{d:02}-{}-{y:04} {hh:02}:{mm:02}:{ss:02} +0000\"",
        MONTHS[(m - 1) as usize]
    )
}

/// The Message-ID header's `<...>` value, if the message has one.
pub fn header_message_id(message: &[u8]) -> Option<String> {
    let end = find(message, b"\r\n\r\n")
        .or_else(|| find(message, b"\n\n"))
        .unwrap_or(message.len());
    let header = String::from_utf8_lossy(&message[..end]);
    let mut value: Option<String> = None;
    for line in header.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.starts_with([' ', '\t']) {
            // Folded continuation of the previous field.
            if let Some(v) = value.as_mut() {
                v.push_str(line);
            }
            continue;
        }
        if value.is_some() {
            break;
        }
        if let Some((name, rest)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("message-id")
        {
            value = Some(rest.to_owned());
        }
    }
    let value = value?;
    let value = value.trim();
    if let (Some(a), Some(b)) = (value.find('<'), value.find('>'))
        && a < b
    {
        return Some(value[a..=b].to_owned());
    }
    (!value.is_empty()).then(|| value.to_owned())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Session {
    /// The async-imap session, for commands without a helper here.
    pub fn raw(&mut self) -> &mut RawSession {
        &mut self.raw
    }

    /// The unsolicited-response channel holds 100 and then drops; empty it after commands
    /// that may produce many (EXPUNGE, FETCH flag updates).
    fn drain_unsolicited(&mut self) {
        while self.raw.unsolicited_responses.try_recv().is_ok() {}
    }

    async fn list_command(&mut self, pattern: &str) -> Result<Vec<FolderInfo>> {
        let what = format!("{}: LIST \"\" {pattern}", self.label);
        let names: Vec<_> = timed(COMMAND_TIMEOUT, &what, async {
            self.raw
                .list(Some(""), Some(pattern))
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        self.drain_unsolicited();
        let mut out = Vec::with_capacity(names.len());
        for n in &names {
            out.push(FolderInfo {
                name: mutf7::decode(n.name())
                    .with_context(|| format!("{what}: folder name {:?}", n.name()))?,
                wire_name: n.name().to_owned(),
                delimiter: n.delimiter().map(str::to_owned),
                attributes: n.attributes().iter().map(attribute_string).collect(),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Every folder (LIST "" "*"), sorted by name.
    pub async fn list_folders(&mut self) -> Result<Vec<FolderInfo>> {
        self.list_command("\"*\"").await
    }

    /// Names of subscribed folders (LSUB "" "*"), sorted.
    pub async fn subscribed_folders(&mut self) -> Result<Vec<String>> {
        let what = format!("{}: LSUB", self.label);
        let names: Vec<_> = timed(COMMAND_TIMEOUT, &what, async {
            self.raw
                .lsub(Some(""), Some("*"))
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        self.drain_unsolicited();
        let mut out = names
            .iter()
            .map(|n| mutf7::decode(n.name()))
            .collect::<Result<Vec<_>>>()
            .with_context(|| what.clone())?;
        out.sort();
        Ok(out)
    }

    /// (folder, attribute) for every folder with a special use (LIST RETURN (SPECIAL-USE)).
    pub async fn special_use_folders(&mut self) -> Result<Vec<(String, String)>> {
        // async-imap passes the pattern through unquoted, which lets us add RETURN options.
        let folders = self.list_command("\"*\" RETURN (SPECIAL-USE)").await?;
        Ok(folders
            .iter()
            .filter_map(|f| f.special_use().map(|u| (f.name.clone(), u.to_owned())))
            .collect())
    }

    pub async fn create_folder(&mut self, folder: &str) -> Result<()> {
        let what = format!("{}: CREATE {folder:?}", self.label);
        timed(
            COMMAND_TIMEOUT,
            &what,
            self.raw.create(mutf7::encode(folder)),
        )
        .await
    }

    /// `CREATE folder (USE (attr))` (RFC 6154), e.g. `attr` = `\\Sent`.
    pub async fn create_special_use(&mut self, folder: &str, attr: &str) -> Result<()> {
        let name = mutf7::encode(folder)
            .replace('\\', "\\\\")
            .replace('"', "\\\"");
        let command = format!("CREATE \"{name}\" (USE ({attr}))");
        timed(
            COMMAND_TIMEOUT,
            &format!("{}: {command}", self.label),
            self.raw.run_command_and_check_ok(&command),
        )
        .await?;
        self.drain_unsolicited();
        Ok(())
    }

    pub async fn subscribe(&mut self, folder: &str) -> Result<()> {
        let what = format!("{}: SUBSCRIBE {folder:?}", self.label);
        timed(
            COMMAND_TIMEOUT,
            &what,
            self.raw.subscribe(mutf7::encode(folder)),
        )
        .await
    }

    /// SELECT (read-write); returns the number of messages.
    pub async fn select(&mut self, folder: &str) -> Result<u32> {
        let what = format!("{}: SELECT {folder:?}", self.label);
        let mbox = timed(
            COMMAND_TIMEOUT,
            &what,
            self.raw.select(mutf7::encode(folder)),
        )
        .await?;
        self.drain_unsolicited();
        Ok(mbox.exists)
    }

    /// EXAMINE (read-only, so reading does not change \Seen or \Recent).
    pub async fn examine(&mut self, folder: &str) -> Result<u32> {
        let what = format!("{}: EXAMINE {folder:?}", self.label);
        let mbox = timed(
            COMMAND_TIMEOUT,
            &what,
            self.raw.examine(mutf7::encode(folder)),
        )
        .await?;
        self.drain_unsolicited();
        Ok(mbox.exists)
    }

    /// Replaces the flags (and keywords) of one message.
    pub async fn store_flags(&mut self, folder: &str, uid: u32, flags: &[&str]) -> Result<()> {
        self.select(folder).await?;
        let what = format!("{}: UID STORE {uid} in {folder:?}", self.label);
        let query = format!("FLAGS.SILENT ({})", flags.join(" "));
        timed(COMMAND_TIMEOUT, &what, async {
            self.raw
                .uid_store(uid.to_string(), &query)
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        self.drain_unsolicited();
        Ok(())
    }

    /// Marks one message \Deleted and expunges only it (UID EXPUNGE, UIDPLUS).
    pub async fn expunge_uid(&mut self, folder: &str, uid: u32) -> Result<()> {
        self.select(folder).await?;
        let what = format!("{}: expunging UID {uid} in {folder:?}", self.label);
        timed(COMMAND_TIMEOUT, &what, async {
            self.raw
                .uid_store(uid.to_string(), "+FLAGS.SILENT (\\Deleted)")
                .await?
                .try_collect::<Vec<_>>()
                .await?;
            self.raw
                .uid_expunge(uid.to_string())
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        self.drain_unsolicited();
        Ok(())
    }

    /// APPEND with flags and an INTERNALDATE (unix seconds).
    pub async fn append(
        &mut self,
        folder: &str,
        message: &[u8],
        flags: &[&str],
        internaldate: Option<i64>,
    ) -> Result<()> {
        let what = format!(
            "{}: APPEND {} bytes to {folder:?}",
            self.label,
            message.len()
        );
        let flags = format!("({})", flags.join(" "));
        let date = internaldate.map(imap_date);
        timed(
            FETCH_TIMEOUT,
            &what,
            self.raw.append(
                mutf7::encode(folder),
                Some(&flags),
                date.as_deref(),
                message,
            ),
        )
        .await?;
        self.drain_unsolicited();
        Ok(())
    }

    /// The whole message with this UID in `folder` (EXAMINE, `UID FETCH uid BODY.PEEK[]`).
    pub async fn message_bytes(&mut self, folder: &str, uid: u32) -> Result<Vec<u8>> {
        self.examine(folder).await?;
        let what = format!("{}: UID FETCH {uid} BODY.PEEK[] in {folder:?}", self.label);
        let fetched = timed(FETCH_TIMEOUT, &what, async {
            self.raw
                .uid_fetch(uid.to_string(), "(UID BODY.PEEK[])")
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        self.drain_unsolicited();
        fetched
            .iter()
            .find(|f| f.uid == Some(uid))
            .and_then(|f| f.body())
            .map(<[u8]>::to_vec)
            .with_context(|| format!("{what}: no body in the reply"))
    }

    /// Every message of `folder` with flags, INTERNALDATE, size, Message-ID and body hash,
    /// sorted by UID. Bodies are fetched in bounded chunks, and the UIDs received are checked
    /// against the UIDs asked for (async-imap ends a stream quietly on a tagged NO).
    pub async fn folder_messages(&mut self, folder: &str) -> Result<Vec<MessageRecord>> {
        let exists = self.examine(folder).await?;
        if exists == 0 {
            return Ok(Vec::new());
        }
        let what = format!("{}: UID FETCH 1:* metadata in {folder:?}", self.label);
        let metas = timed(COMMAND_TIMEOUT, &what, async {
            self.raw
                .uid_fetch("1:*", "(UID FLAGS INTERNALDATE RFC822.SIZE)")
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        self.drain_unsolicited();
        let mut records = Vec::with_capacity(metas.len());
        for m in &metas {
            let uid = m
                .uid
                .with_context(|| format!("{what}: a response without UID"))?;
            let mut flags: Vec<String> = m.flags().filter_map(|f| flag_string(&f)).collect();
            flags.sort();
            let internaldate = m
                .internal_date()
                .with_context(|| format!("{what}: UID {uid} without INTERNALDATE"))?
                .timestamp();
            let size = m
                .size
                .with_context(|| format!("{what}: UID {uid} without RFC822.SIZE"))?;
            records.push(MessageRecord {
                uid,
                size: u64::from(size),
                flags,
                internaldate,
                message_id: None,
                body_hash: blake3::hash(b""),
            });
        }
        if records.len() != exists as usize {
            bail!(
                "{what}: EXAMINE said {exists} messages, FETCH returned {}",
                records.len()
            );
        }
        records.sort_by_key(|r| r.uid);

        let mut start = 0;
        while start < records.len() {
            let mut end = start;
            let mut bytes = 0u64;
            while end < records.len()
                && end - start < CHUNK_MESSAGES
                && (end == start || bytes + records[end].size <= CHUNK_BYTES)
            {
                bytes += records[end].size;
                end += 1;
            }
            let uids: Vec<u32> = records[start..end].iter().map(|r| r.uid).collect();
            let set = uid_set(&uids);
            let what = format!("{}: UID FETCH {set} BODY.PEEK[] in {folder:?}", self.label);
            let fetched = timed(FETCH_TIMEOUT, &what, async {
                self.raw
                    .uid_fetch(&set, "(UID BODY.PEEK[])")
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            })
            .await?;
            self.drain_unsolicited();
            let mut seen = 0;
            for f in &fetched {
                let Some(uid) = f.uid else { continue };
                let Some(body) = f.body() else { continue };
                let Ok(i) = records[start..end].binary_search_by_key(&uid, |r| r.uid) else {
                    continue;
                };
                let rec = &mut records[start + i];
                rec.body_hash = blake3::hash(body);
                rec.message_id = header_message_id(body);
                seen += 1;
            }
            if seen != uids.len() {
                bail!("{what}: asked for {} bodies, got {seen}", uids.len());
            }
            start = end;
        }
        Ok(records)
    }

    pub async fn logout(mut self) -> Result<()> {
        let what = format!("{}: LOGOUT", self.label);
        timed(COMMAND_TIMEOUT, &what, self.raw.logout()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_collapse_runs() {
        assert_eq!(uid_set(&[5, 1, 2, 3, 9, 10, 7]), "1:3,5,7,9:10");
        assert_eq!(uid_set(&[4]), "4");
    }

    #[test]
    fn message_id_is_found_case_insensitively_and_unfolded() {
        let m = b"Subject: x\r\nmessage-ID:\r\n <a.b@c>\r\n\r\nMessage-ID: <body@x>\r\n";
        assert_eq!(header_message_id(m).as_deref(), Some("<a.b@c>"));
        assert_eq!(header_message_id(b"Subject: x\r\n\r\nbody"), None);
    }

    #[test]
    fn imap_dates() {
        assert_eq!(imap_date(0), "\"01-Jan-1970 00:00:00 +0000\"");
        assert_eq!(imap_date(1_549_544_709), "\"07-Feb-2019 13:05:09 +0000\"");
    }
}
