//! The daemon's side: loads plugins from a directory, calls them, and adapts a mail plugin to
//! the engine's [`SourceConnector`] and a contacts plugin to [`ContactsConnector`].

use std::ffi::c_void;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use migrated_core::{
    AddressBook, ContactChanges, ContactData, ContactsConnector, ContactsSession, FolderInfo,
    FolderStatus, MessageMeta, Namespace, SourceConnector, SourceError, SourceSession,
};
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use crate::wire::{self, Account, Info, Note, Reply, Request, WireError};
use crate::{AbiVersion, STATUS_ERROR, STATUS_NOTE, STATUS_OK, TableV1};

/// A loaded plugin. The library stays loaded for the life of the process.
#[derive(Debug)]
pub struct Plugin {
    path: PathBuf,
    abi: AbiVersion,
    info: Info,
    table: &'static TableV1,
}

/// A file in the plugin directory that was not loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The file.
    pub path: PathBuf,
    /// Why, in words an administrator can act on.
    pub reason: String,
}

/// What a plugin directory held.
#[derive(Debug, Default)]
pub struct Plugins {
    /// Loaded plugins, by name.
    pub loaded: Vec<Arc<Plugin>>,
    /// Files that were skipped.
    pub rejected: Vec<Rejected>,
}

impl Plugins {
    /// Loads every `*.so` of `dir` (not recursing). A broken, foreign or unsafe file is
    /// recorded in [`Plugins::rejected`] and skipped; a second plugin of a name already loaded
    /// is skipped too.
    ///
    /// # Errors
    ///
    /// Only when the directory cannot be read.
    pub fn load_dir(dir: &Path) -> Result<Self, String> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| format!("plugin directory {}: {e}", dir.display()))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "so"))
            .collect();
        paths.sort();
        Ok(Self::load_files(paths))
    }

    /// Loads these libraries, in this order, the way [`Plugins::load_dir`] loads a directory's:
    /// a refused file, or a second plugin of a name already loaded, is recorded in
    /// [`Plugins::rejected`] and skipped. For a caller that knows which files it wants (the
    /// shipped plugins of a build tree, without the test plugins built beside them).
    pub fn load_files(paths: impl IntoIterator<Item = PathBuf>) -> Self {
        let mut out = Self::default();
        for path in paths {
            match Plugin::load(&path) {
                Ok(p) => {
                    if let Some(first) = out.get(&p.info.name) {
                        out.rejected.push(Rejected {
                            reason: format!(
                                "a plugin named {:?} is already loaded from {}",
                                p.info.name,
                                first.path.display()
                            ),
                            path,
                        });
                    } else {
                        out.loaded.push(Arc::new(p));
                    }
                }
                Err(reason) => out.rejected.push(Rejected { path, reason }),
            }
        }
        out
    }

    /// The plugin of this name.
    pub fn get(&self, name: &str) -> Option<&Arc<Plugin>> {
        self.loaded.iter().find(|p| p.info.name == name)
    }

    /// The names loaded, for error messages.
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.loaded.iter().map(|p| p.info.name.as_str()).collect();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    }
}

impl Plugin {
    /// Loads one library: refuses files others can write to, libraries without the ABI's
    /// symbols, and plugins of another major version (naming both versions).
    ///
    /// # Errors
    ///
    /// Why it was refused.
    pub fn load(path: &Path) -> Result<Self, String> {
        let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
        if meta.mode() & 0o022 != 0 {
            return Err(format!(
                "writable by group or others (mode {:o}): anyone who can write it runs code in \
                 the daemon; run chmod go-w on it",
                meta.mode() & 0o7777
            ));
        }
        // SAFETY: loading a library runs its initialisers. The plugin directory is the
        // administrator's (root-owned in the package); a file writable by others was refused
        // above. The library is never unloaded (leaked below), so the `'static` references
        // taken from it stay valid.
        #[allow(unsafe_code)]
        let library = unsafe { libloading::Library::new(path) }
            .map_err(|e| format!("not a loadable library: {e}"))?;
        let library: &'static libloading::Library = Box::leak(Box::new(library));
        // SAFETY: the symbol, when present, is an `AbiVersion` static: two u32 whose shape never
        // changes between ABI versions.
        #[allow(unsafe_code)]
        let abi = unsafe {
            library
                .get::<*const AbiVersion>(crate::VERSION_SYMBOL)
                .map(|s| **s)
        }
        .map_err(|_| {
            "not a migrated plugin (it exports no migrated_plugin_abi symbol)".to_owned()
        })?;
        if abi.major != crate::ABI_MAJOR {
            return Err(format!(
                "built for plugin ABI {abi}, but this daemon speaks ABI {}; install the plugin's \
                 build for migrated {}",
                AbiVersion::CURRENT,
                env!("CARGO_PKG_VERSION")
            ));
        }
        // SAFETY: a library announcing ABI major 1 exports `migrated_plugin_v1` as a `TableV1`
        // static; it lives as long as the (never unloaded) library.
        #[allow(unsafe_code)]
        let table: &'static TableV1 = unsafe {
            library
                .get::<*const TableV1>(crate::TABLE_SYMBOL)
                .map(|s| &**s)
        }
        .map_err(|_| format!("announces ABI {abi} but exports no migrated_plugin_v1 table"))?;
        let (tx, mut rx) = mpsc::unbounded_channel::<(u32, Vec<u8>)>();
        let ctx = Box::into_raw(Box::new(tx)).cast::<c_void>();
        // SAFETY: `copy_completion` matches `Completion` and owns `ctx` after a final status.
        #[allow(unsafe_code)]
        unsafe {
            (table.info)(ctx, copy_completion)
        };
        let info = match rx.try_recv() {
            Ok((STATUS_OK, bytes)) => wire::decode::<Info>(&bytes, "plugin description")?,
            Ok((_, bytes)) => {
                let e: WireError = wire::decode(&bytes, "error")?;
                return Err(format!("cannot describe itself: {}", e.message));
            }
            Err(_) => return Err("did not answer the description request".to_owned()),
        };
        if info.name.is_empty()
            || !info
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "calls itself {:?}: a plugin name is letters, digits, - and _",
                info.name
            ));
        }
        Ok(Self {
            path: path.to_owned(),
            abi,
            info,
            table,
        })
    }

    /// Where it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ABI version it was built for.
    pub fn abi(&self) -> AbiVersion {
        self.abi
    }

    /// Its description.
    pub fn info(&self) -> &Info {
        &self.info
    }

    /// Checks that the plugin can log in to this account: an administrator's login on
    /// behalf of the user needs a plugin of ABI 1.3 or later (an older one would send the
    /// administrator's password under the user's name).
    ///
    /// # Errors
    ///
    /// A permanent error naming the plugin, its ABI and what to do.
    pub fn check_account(&self, account: &Account) -> Result<(), SourceError> {
        if account.admin_user.is_some() && self.table.minor < crate::ADMIN_LOGIN_MINOR {
            return Err(SourceError::permanent(format!(
                "plugin {} ({}) speaks ABI {}, which has no administrator logins (ABI 1.{} and \
                 later): install a newer build of the plugin, or give the user's own password \
                 instead of admin_user",
                self.info.name,
                self.path.display(),
                self.abi,
                crate::ADMIN_LOGIN_MINOR
            )));
        }
        if account.auth == "oauth2"
            && self.info.kinds.contains(&wire::Kind::Contacts)
            && self.table.minor < crate::CONTACTS_OAUTH2_MINOR
        {
            return Err(SourceError::permanent(format!(
                "plugin {} ({}) speaks ABI {}, whose contacts plugins cannot renew OAuth 2 \
                 tokens during a session (ABI 1.{} and later): install a newer build of the \
                 plugin",
                self.info.name,
                self.path.display(),
                self.abi,
                crate::CONTACTS_OAUTH2_MINOR
            )));
        }
        if account.auth == "oauth2" && self.table.minor < crate::OAUTH2_MINOR {
            return Err(SourceError::permanent(format!(
                "plugin {} ({}) speaks ABI {}, which has no OAuth 2 logins (ABI 1.{} and later): \
                 install a newer build of the plugin",
                self.info.name,
                self.path.display(),
                self.abi,
                crate::OAUTH2_MINOR
            )));
        }
        Ok(())
    }

    /// Checks a job's settings against those the plugin accepts.
    ///
    /// # Errors
    ///
    /// Every problem, one per line, naming the setting and what it takes.
    pub fn check_settings(
        &self,
        settings: &std::collections::BTreeMap<String, wire::SettingValue>,
    ) -> Result<(), String> {
        let mut problems = Vec::new();
        for (name, value) in settings {
            match self.info.settings.iter().find(|s| &s.name == name) {
                Some(s) => {
                    if let Err(e) = s.check(value) {
                        problems.push(e);
                    }
                }
                None => {
                    let known: Vec<&str> =
                        self.info.settings.iter().map(|s| s.name.as_str()).collect();
                    problems.push(format!(
                        "plugin {:?} has no setting {name:?} (it accepts: {})",
                        self.info.name,
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }

    /// Sends a request and waits for the final reply, handing notes to `on_note`.
    ///
    /// # Errors
    ///
    /// The plugin's error, or a permanent one if it broke the protocol.
    pub async fn call(
        &self,
        request: &Request,
        mut on_note: impl FnMut(Note) + Send,
    ) -> Result<Reply, WireError> {
        let broken = |message: String| WireError {
            temporary: false,
            message: format!("plugin {}: {message}", self.info.name),
            cause: None,
        };
        // The request may hold a password: zeroed when dropped.
        let bytes = Zeroizing::new(wire::encode(request).map_err(broken)?);
        let (tx, mut rx) = mpsc::unbounded_channel::<Delivery>();
        {
            let ctx = Box::into_raw(Box::new(tx)).cast::<c_void>();
            // SAFETY: the request lives during the call (the plugin copies what it needs before
            // returning); `call_completion` owns `ctx` after the final status.
            #[allow(unsafe_code)]
            unsafe {
                (self.table.call)(bytes.as_ptr(), bytes.len(), ctx, call_completion);
            }
        }
        drop(bytes);
        loop {
            match rx.recv().await {
                Some(Delivery::Note(note)) => on_note(note),
                Some(Delivery::Final(Ok(reply))) => return Ok(reply),
                Some(Delivery::Final(Err(e))) => return Err(e),
                Some(Delivery::Broken(message)) => return Err(broken(message)),
                None => return Err(broken("dropped the request without answering".to_owned())),
            }
        }
    }
}

/// What a call's completion hands to the waiting request, decoded in the callback so the
/// payload (message bodies) is never copied whole before decoding.
enum Delivery {
    Note(Note),
    Final(Result<Reply, WireError>),
    Broken(String),
}

type CallSender = mpsc::UnboundedSender<Delivery>;

/// The host's [`crate::Completion`] for calls: decodes the payload straight from the plugin's
/// buffer; frees the channel's sender on a final status.
#[allow(unsafe_code)]
unsafe extern "C" fn call_completion(ctx: *mut c_void, status: u32, data: *const u8, len: usize) {
    let payload: &[u8] = if data.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: the ABI guarantees `len` readable bytes during this call.
        unsafe { std::slice::from_raw_parts(data, len) }
    };
    // A panic must not unwind into the plugin's C frame.
    let delivery = std::panic::catch_unwind(|| match status {
        STATUS_NOTE => {
            wire::decode::<Note>(payload, "note").map_or_else(Delivery::Broken, Delivery::Note)
        }
        STATUS_OK => wire::decode::<Reply>(payload, "reply")
            .map_or_else(Delivery::Broken, |r| Delivery::Final(Ok(r))),
        STATUS_ERROR => wire::decode::<WireError>(payload, "error reply")
            .map_or_else(Delivery::Broken, |e| Delivery::Final(Err(e))),
        other => Delivery::Broken(format!("unknown status {other}")),
    })
    .unwrap_or_else(|_| Delivery::Broken("reply could not be decoded".to_owned()));
    if status == STATUS_NOTE {
        // SAFETY: `ctx` is the sender boxed in `Plugin::call`, alive until the final status.
        let tx = unsafe { &*ctx.cast::<CallSender>() };
        let _ = tx.send(delivery);
    } else {
        // SAFETY: as above; this is the final status, so the box is reclaimed exactly once.
        let tx = unsafe { Box::from_raw(ctx.cast::<CallSender>()) };
        let _ = tx.send(delivery);
    }
}

type Sender = mpsc::UnboundedSender<(u32, Vec<u8>)>;

/// The host's [`crate::Completion`] for the description: copies the (small) payload into the
/// channel; frees the channel's sender on a final status.
#[allow(unsafe_code)]
unsafe extern "C" fn copy_completion(ctx: *mut c_void, status: u32, data: *const u8, len: usize) {
    let payload = if data.is_null() || len == 0 {
        Vec::new()
    } else {
        // SAFETY: the ABI guarantees `len` readable bytes during this call.
        unsafe { std::slice::from_raw_parts(data, len) }.to_vec()
    };
    if status == STATUS_NOTE {
        // SAFETY: `ctx` is the sender boxed in `Plugin::call`, alive until the final status.
        let tx = unsafe { &*ctx.cast::<Sender>() };
        let _ = tx.send((status, payload));
    } else {
        // SAFETY: as above; this is the final status, so the box is reclaimed exactly once.
        let tx = unsafe { Box::from_raw(ctx.cast::<Sender>()) };
        let _ = tx.send((status, payload));
    }
}

/// A mail source plugin as the engine sees it.
#[derive(Debug, Clone)]
pub struct PluginSource {
    plugin: Arc<Plugin>,
    account: Arc<Account>,
    tokens: Option<Arc<dyn migrated_core::AccessTokens>>,
}

impl PluginSource {
    /// A source for this account through this plugin.
    pub fn new(plugin: Arc<Plugin>, account: Account) -> Self {
        Self {
            plugin,
            account: Arc::new(account),
            tokens: None,
        }
    }

    /// An OAuth 2 source: before each connection the account's secret becomes a token from
    /// `tokens`; a login refused with it is tried once more with a new one.
    #[must_use]
    pub fn with_tokens(mut self, tokens: Arc<dyn migrated_core::AccessTokens>) -> Self {
        self.tokens = Some(tokens);
        self
    }
}

/// One session of a [`PluginSource`]; closed in the plugin when dropped.
#[derive(Debug)]
pub struct PluginSession {
    plugin: Arc<Plugin>,
    id: u64,
    namespace: Namespace,
}

/// How many messages one listing page asks for.
const PAGE: u32 = 5_000;

impl PluginSource {
    async fn open(
        &self,
        on_login: Option<Box<dyn FnOnce() + Send>>,
    ) -> Result<PluginSession, SourceError> {
        let Some(tokens) = &self.tokens else {
            return self.open_with((*self.account).clone(), on_login).await;
        };
        let mut on_login = on_login;
        let mut retried = false;
        loop {
            let token = fetch_token(tokens, &self.account).await?;
            let mut account = (*self.account).clone();
            account.secret = token.token.clone();
            match self.open_with(account, on_login.take()).await {
                Err(e) if e.cause == Some(migrated_core::Cause::Authentication) => {
                    tokens.refused(&token.token);
                    if retried {
                        return Err(e);
                    }
                    retried = true;
                }
                other => return other,
            }
        }
    }

    async fn open_with(
        &self,
        account: Account,
        on_login: Option<Box<dyn FnOnce() + Send>>,
    ) -> Result<PluginSession, SourceError> {
        let mut on_login = on_login;
        self.plugin.check_account(&account)?;
        let request = Request::Connect {
            account: Box::new(account),
        };
        let reply = self
            .plugin
            .call(&request, |note| match note {
                Note::Authenticating => {
                    if let Some(f) = on_login.take() {
                        f();
                    }
                }
            })
            .await?;
        match reply {
            Reply::Connected { session, namespace } => Ok(PluginSession {
                plugin: self.plugin.clone(),
                id: session,
                namespace,
            }),
            other => Err(unexpected(&self.plugin, &other)),
        }
    }
}

/// A token for a connection to `account`, fetched off the async threads; a refusal or a token
/// endpoint out of reach becomes a source error naming the server and the user.
async fn fetch_token(
    tokens: &Arc<dyn migrated_core::AccessTokens>,
    account: &Account,
) -> Result<migrated_core::AccessToken, SourceError> {
    let t = tokens.clone();
    tokio::task::spawn_blocking(move || t.token())
        .await
        .map_err(|e| SourceError::temporary(format!("fetching a token: {e}")))?
        .map_err(|e| {
            let message = format!(
                "no access token to log in to {}:{} as {:?}: {}",
                account.host, account.port, account.user, e.message
            );
            let error = if e.is_temporary() {
                SourceError::temporary(message)
            } else {
                SourceError::permanent(message)
            };
            error.with_cause(e.cause)
        })
}

fn unexpected(plugin: &Plugin, reply: &Reply) -> SourceError {
    SourceError::permanent(format!(
        "plugin {} answered with the wrong reply ({})",
        plugin.info.name,
        reply.name()
    ))
}

impl SourceConnector for PluginSource {
    type Session = PluginSession;

    async fn connect(&self) -> Result<PluginSession, SourceError> {
        self.open(None).await
    }

    async fn connect_observed(
        &self,
        on_login: Box<dyn FnOnce() + Send>,
    ) -> Result<PluginSession, SourceError> {
        self.open(Some(on_login)).await
    }
}

impl PluginSession {
    async fn call(&self, request: Request) -> Result<Reply, SourceError> {
        Ok(self.plugin.call(&request, |_| {}).await?)
    }

    /// Whether the plugin speaks ABI 1.5 (QRESYNC: [`Request::OpenFolderSince`],
    /// [`Request::RemoveCopied`]). An older one gets what [`SourceSession`]'s defaults give any
    /// source without them: the folder opened in full (nothing known to have vanished), and
    /// nothing removed (the source keeps its messages).
    fn speaks_qresync(&self) -> bool {
        self.plugin.table.minor >= crate::QRESYNC_MINOR
    }
}

impl SourceSession for PluginSession {
    fn namespace(&self) -> Namespace {
        self.namespace.clone()
    }

    async fn list_folders(&mut self) -> Result<Vec<FolderInfo>, SourceError> {
        match self.call(Request::ListFolders { session: self.id }).await? {
            Reply::Folders(f) => Ok(f),
            other => Err(unexpected(&self.plugin, &other)),
        }
    }

    async fn open_folder(&mut self, folder: &str) -> Result<FolderStatus, SourceError> {
        let request = Request::OpenFolder {
            session: self.id,
            folder: folder.to_owned(),
        };
        match self.call(request).await? {
            Reply::Opened(s) => Ok(s),
            other => Err(unexpected(&self.plugin, &other)),
        }
    }

    async fn open_folder_since(
        &mut self,
        folder: &str,
        uid_validity: u32,
        modseq: u64,
    ) -> Result<(FolderStatus, Option<Vec<u32>>), SourceError> {
        if !self.speaks_qresync() {
            return Ok((self.open_folder(folder).await?, None));
        }
        let request = Request::OpenFolderSince {
            session: self.id,
            folder: folder.to_owned(),
            uid_validity,
            modseq,
        };
        match self.call(request).await? {
            Reply::OpenedSince { status, vanished } => Ok((status, vanished)),
            other => Err(unexpected(&self.plugin, &other)),
        }
    }

    async fn remove_copied(
        &mut self,
        folder: &str,
        uids: &[u32],
        expunge: bool,
    ) -> Result<bool, SourceError> {
        if !self.speaks_qresync() {
            return Ok(false);
        }
        let request = Request::RemoveCopied {
            session: self.id,
            folder: folder.to_owned(),
            uids: uids.to_vec(),
            expunge,
        };
        match self.call(request).await? {
            Reply::Removed(done) => Ok(done),
            other => Err(unexpected(&self.plugin, &other)),
        }
    }

    async fn list_messages(
        &mut self,
        min_uid: u32,
        changed_since: Option<u64>,
    ) -> Result<Vec<MessageMeta>, SourceError> {
        let mut all = Vec::new();
        let mut cursor = min_uid;
        loop {
            let (mut items, next) = self.list_messages_page(cursor, changed_since, PAGE).await?;
            all.append(&mut items);
            match next {
                Some(n) if n > cursor => cursor = n,
                Some(_) => {
                    return Err(SourceError::permanent(format!(
                        "plugin {}: listing cursor did not advance past UID {cursor}",
                        self.plugin.info.name
                    )));
                }
                None => return Ok(all),
            }
        }
    }

    async fn list_messages_page(
        &mut self,
        min_uid: u32,
        changed_since: Option<u64>,
        limit: u32,
    ) -> Result<(Vec<MessageMeta>, Option<u32>), SourceError> {
        let request = Request::ListMessages {
            session: self.id,
            cursor: min_uid,
            changed_since,
            limit,
        };
        match self.call(request).await? {
            Reply::Messages { items, next } => Ok((items, next)),
            other => Err(unexpected(&self.plugin, &other)),
        }
    }

    async fn fetch_bodies(&mut self, uids: &[u32]) -> Result<Vec<Option<Vec<u8>>>, SourceError> {
        let request = Request::FetchBodies {
            session: self.id,
            uids: uids.to_vec(),
        };
        match self.call(request).await? {
            Reply::Bodies(b) => Ok(b.into_iter().map(|b| b.map(|b| b.into_vec())).collect()),
            other => Err(unexpected(&self.plugin, &other)),
        }
    }

    async fn fetch_body_part(
        &mut self,
        uid: u32,
        offset: u64,
        len: u32,
    ) -> Result<Option<Vec<u8>>, SourceError> {
        if self.plugin.table.minor < 1 {
            // ABI 1.0 has no parts: the whole message, as the trait allows.
            return migrated_core::source::whole_from(self, uid, offset).await;
        }
        let request = Request::FetchPart {
            session: self.id,
            uid,
            offset,
            len,
        };
        match self.call(request).await? {
            Reply::Part(p) => Ok(p.map(serde_bytes::ByteBuf::into_vec)),
            other => Err(unexpected(&self.plugin, &other)),
        }
    }
}

impl Drop for PluginSession {
    fn drop(&mut self) {
        // Fire and forget: the plugin closes the connection; nobody waits for the reply.
        let plugin = self.plugin.clone();
        let id = self.id;
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = plugin.call(&Request::Close { session: id }, |_| {}).await;
            });
        }
    }
}

/// A contacts source plugin as the contacts engine sees it.
#[derive(Debug, Clone)]
pub struct ContactsPluginSource {
    plugin: Arc<Plugin>,
    account: Arc<Account>,
    tokens: Option<Arc<dyn migrated_core::AccessTokens>>,
}

impl ContactsPluginSource {
    /// A source for this account through this plugin.
    pub fn new(plugin: Arc<Plugin>, account: Account) -> Self {
        Self {
            plugin,
            account: Arc::new(account),
            tokens: None,
        }
    }

    /// An OAuth 2 source: the session starts with a token from `tokens`, and before each
    /// request the plugin is given the current one ([`Request::RenewToken`], when it
    /// changed: ahead of its expiry); a request refused as unauthenticated is sent once more
    /// with a new one.
    #[must_use]
    pub fn with_tokens(mut self, tokens: Arc<dyn migrated_core::AccessTokens>) -> Self {
        self.tokens = Some(tokens);
        self
    }
}

/// One session of a [`ContactsPluginSource`]; closed in the plugin when dropped.
#[derive(Debug)]
pub struct ContactsPluginSession {
    session: PluginSession,
    account: Arc<Account>,
    tokens: Option<Arc<dyn migrated_core::AccessTokens>>,
    /// The token the plugin's requests carry now, as far as the host knows.
    sent: Option<migrated_core::Secret>,
}

impl ContactsConnector for ContactsPluginSource {
    type Session = ContactsPluginSession;

    async fn connect(&self) -> Result<ContactsPluginSession, SourceError> {
        let source = PluginSource {
            plugin: self.plugin.clone(),
            account: self.account.clone(),
            tokens: self.tokens.clone(),
        };
        let session = source.open(None).await?;
        Ok(ContactsPluginSession {
            session,
            account: self.account.clone(),
            tokens: self.tokens.clone(),
            sent: None,
        })
    }
}

impl ContactsPluginSession {
    /// Sends `request`; with OAuth 2, first the current token when the plugin does not have
    /// it yet, and once more with a new token after a refusal as unauthenticated (an access
    /// token that expired early or was revoked: the server's 401).
    async fn call(&mut self, request: impl Fn(u64) -> Request) -> Result<Reply, SourceError> {
        let s = &self.session;
        let Some(tokens) = self.tokens.clone() else {
            return s.call(request(s.id)).await;
        };
        let mut retried = false;
        loop {
            let token = fetch_token(&tokens, &self.account).await?;
            if self.sent.as_ref() != Some(&token.token) {
                let renew = Request::RenewToken {
                    session: s.id,
                    token: token.token.clone(),
                };
                match s.call(renew).await? {
                    Reply::Renewed => self.sent = Some(token.token.clone()),
                    other => return Err(unexpected(&s.plugin, &other)),
                }
            }
            match s.call(request(s.id)).await {
                Err(e) if e.cause == Some(migrated_core::Cause::Authentication) => {
                    tokens.refused(&token.token);
                    if retried {
                        return Err(e);
                    }
                    retried = true;
                }
                other => return other,
            }
        }
    }
}

impl ContactsSession for ContactsPluginSession {
    async fn books(&mut self) -> Result<Vec<AddressBook>, SourceError> {
        match self.call(|session| Request::ListBooks { session }).await? {
            Reply::Books(b) => Ok(b),
            other => Err(unexpected(&self.session.plugin, &other)),
        }
    }

    async fn changes(
        &mut self,
        book: &str,
        token: Option<&str>,
    ) -> Result<ContactChanges, SourceError> {
        let request = |session| Request::ListContacts {
            session,
            book: book.to_owned(),
            cursor: token.map(str::to_owned),
        };
        match self.call(request).await? {
            Reply::Contacts(c) => Ok(c),
            other => Err(unexpected(&self.session.plugin, &other)),
        }
    }

    async fn fetch(
        &mut self,
        book: &str,
        hrefs: &[String],
    ) -> Result<Vec<ContactData>, SourceError> {
        let request = |session| Request::FetchContacts {
            session,
            book: book.to_owned(),
            hrefs: hrefs.to_vec(),
        };
        match self.call(request).await? {
            Reply::Cards(c) => Ok(c),
            other => Err(unexpected(&self.session.plugin, &other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(unsafe_code)]
    unsafe extern "C" fn info(_: *mut c_void, _: crate::Completion) {}
    #[allow(unsafe_code)]
    unsafe extern "C" fn call(_: *const u8, _: usize, _: *mut c_void, _: crate::Completion) {}

    fn plugin(minor: u32) -> Plugin {
        let table: &'static TableV1 = Box::leak(Box::new(TableV1 { minor, info, call }));
        Plugin {
            path: PathBuf::from("/usr/lib/migrated/plugins/libold.so"),
            abi: AbiVersion { major: 1, minor },
            info: Info {
                name: "old".into(),
                version: "0".into(),
                description: String::new(),
                kinds: vec![wire::Kind::Mail],
                settings: Vec::new(),
            },
            table,
        }
    }

    fn account(admin: Option<&str>) -> Account {
        Account {
            host: "h".into(),
            port: 143,
            security: "plain".into(),
            ca_file: None,
            danger_accept_invalid_certs: false,
            tls_fingerprint: None,
            auth: "login".into(),
            user: "alice".into(),
            secret: migrated_core::Secret::new("pw"),
            timeout_secs: 5,
            path: None,
            settings: Default::default(),
            admin_user: admin.map(str::to_owned),
            admin_login: None,
            admin_separator: None,
        }
    }

    #[test]
    fn a_plugin_older_than_1_3_is_never_given_an_administrators_account() {
        let old = plugin(2);
        assert!(old.check_account(&account(None)).is_ok());
        let err = old.check_account(&account(Some("admin"))).unwrap_err();
        assert!(
            err.message.starts_with(
                "plugin old (/usr/lib/migrated/plugins/libold.so) speaks ABI 1.2, which has no administrator logins (ABI 1.3 and later)"
            ),
            "{}",
            err.message
        );
        assert!(plugin(3).check_account(&account(Some("admin"))).is_ok());
    }
}
