//! The plugin side: a [`MailPlugin`] and [`crate::export_mail_plugin!`] are all a mail source
//! needs. This module runs the plugin's tokio runtime, keeps its sessions, decodes requests,
//! catches panics and encodes replies.

use std::collections::HashMap;
use std::ffi::c_void;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use std::future::Future;
use std::marker::PhantomData;

use migrated_core::{
    ContactsConnector, ContactsSession, Namespace, SourceConnector, SourceError, SourceSession,
};

use crate::wire::{self, Account, Info, Note, Reply, Request, WireError};
use crate::{Completion, STATUS_ERROR, STATUS_NOTE, STATUS_OK};

/// A mail source plugin.
pub trait MailPlugin: 'static {
    /// Opens sessions to the account.
    type Connector: SourceConnector + 'static;

    /// Name, version, kinds and settings.
    fn info() -> Info;

    /// A connector for this account (settings already checked by the daemon against
    /// [`Info::settings`]).
    ///
    /// # Errors
    ///
    /// Permanent, naming the field, for an account the plugin cannot use.
    fn connector(account: Account) -> Result<Self::Connector, SourceError>;
}

/// An address-book source plugin.
pub trait ContactsPlugin: 'static {
    /// Opens sessions to the account.
    type Connector: ContactsConnector + 'static;

    /// Name, version, kinds and settings.
    fn info() -> Info;

    /// A connector for this account.
    ///
    /// # Errors
    ///
    /// Permanent, naming the field, for an account the plugin cannot use.
    fn connector(account: Account) -> Result<Self::Connector, SourceError>;
}

/// What the export macros need from a plugin: connect, and answer requests on a session.
pub trait Handler: 'static {
    /// One open session.
    type Session: Send + 'static;

    /// Name, version, kinds and settings.
    fn info() -> Info;

    /// Connects; calls `on_login` once the connection is up.
    fn connect(
        account: Account,
        on_login: Box<dyn FnOnce() + Send>,
    ) -> impl Future<Output = Result<(Self::Session, Namespace), SourceError>> + Send;

    /// Answers a request on a session (never `Connect` or `Close`).
    fn serve(
        session: &mut Self::Session,
        request: Request,
    ) -> impl Future<Output = Result<Reply, WireError>> + Send;
}

/// A [`MailPlugin`] as a [`Handler`].
#[derive(Debug)]
pub struct Mail<P>(PhantomData<P>);

/// A [`ContactsPlugin`] as a [`Handler`].
#[derive(Debug)]
pub struct Contacts<P>(PhantomData<P>);

fn wrong_kind(name: &str) -> WireError {
    WireError {
        temporary: false,
        message: format!("plugin {name} does not answer this request (wrong kind of plugin)"),
        cause: None,
    }
}

impl<P: MailPlugin> Handler for Mail<P> {
    type Session = <P::Connector as SourceConnector>::Session;

    fn info() -> Info {
        P::info()
    }

    async fn connect(
        account: Account,
        on_login: Box<dyn FnOnce() + Send>,
    ) -> Result<(Self::Session, Namespace), SourceError> {
        let session = P::connector(account)?.connect_observed(on_login).await?;
        let namespace = session.namespace();
        Ok((session, namespace))
    }

    async fn serve(session: &mut Self::Session, request: Request) -> Result<Reply, WireError> {
        Ok(match request {
            Request::ListFolders { .. } => Reply::Folders(session.list_folders().await?),
            Request::OpenFolder { folder, .. } => {
                Reply::Opened(session.open_folder(&folder).await?)
            }
            Request::OpenFolderSince {
                folder,
                uid_validity,
                modseq,
                ..
            } => {
                let (status, vanished) = session
                    .open_folder_since(&folder, uid_validity, modseq)
                    .await?;
                Reply::OpenedSince { status, vanished }
            }
            Request::RemoveCopied {
                folder,
                uids,
                expunge,
                ..
            } => Reply::Removed(session.remove_copied(&folder, &uids, expunge).await?),
            Request::ListMessages {
                cursor,
                changed_since,
                limit,
                ..
            } => {
                let (items, next) = session
                    .list_messages_page(cursor, changed_since, limit)
                    .await?;
                Reply::Messages { items, next }
            }
            Request::FetchBodies { uids, .. } => Reply::Bodies(
                session
                    .fetch_bodies(&uids)
                    .await?
                    .into_iter()
                    .map(|b| b.map(serde_bytes::ByteBuf::from))
                    .collect(),
            ),
            Request::FetchPart {
                uid, offset, len, ..
            } => Reply::Part(
                session
                    .fetch_body_part(uid, offset, len)
                    .await?
                    .map(serde_bytes::ByteBuf::from),
            ),
            _ => return Err(wrong_kind(&P::info().name)),
        })
    }
}

impl<P: ContactsPlugin> Handler for Contacts<P> {
    type Session = <P::Connector as ContactsConnector>::Session;

    fn info() -> Info {
        P::info()
    }

    async fn connect(
        account: Account,
        on_login: Box<dyn FnOnce() + Send>,
    ) -> Result<(Self::Session, Namespace), SourceError> {
        // HTTP has no separate login step: the first request carries the credentials.
        on_login();
        let session = P::connector(account)?.connect().await?;
        Ok((session, Namespace::default()))
    }

    async fn serve(session: &mut Self::Session, request: Request) -> Result<Reply, WireError> {
        Ok(match request {
            Request::ListBooks { .. } => Reply::Books(session.books().await?),
            Request::ListContacts { book, cursor, .. } => {
                Reply::Contacts(session.changes(&book, cursor.as_deref()).await?)
            }
            Request::FetchContacts { book, hrefs, .. } => {
                Reply::Cards(session.fetch(&book, &hrefs).await?)
            }
            Request::RenewToken { token, .. } => {
                session.renew_token(token);
                Reply::Renewed
            }
            _ => return Err(wrong_kind(&P::info().name)),
        })
    }
}

/// A plugin's state: its runtime and open sessions. The export macros keep one in a static.
pub struct State<H: Handler> {
    runtime: tokio::runtime::Runtime,
    sessions: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<H::Session>>>>,
    next: AtomicU64,
}

impl<H: Handler> std::fmt::Debug for State<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").finish_non_exhaustive()
    }
}

impl<H: Handler> State<H> {
    /// A runtime with two worker threads named after the plugin.
    ///
    /// # Panics
    ///
    /// If the operating system refuses threads; the caller turns that into an error reply.
    pub fn new() -> Self {
        let name = H::info().name;
        Self {
            runtime: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name(format!("plugin-{name}"))
                .enable_all()
                .build()
                .expect("the plugin's tokio runtime"),
            sessions: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        }
    }

    fn sessions(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<tokio::sync::Mutex<H::Session>>>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn handle(&self, request: Request, reporter: Reporter) -> Result<Reply, WireError> {
        match request {
            Request::Connect { account } => {
                let notes = reporter;
                let (session, namespace) =
                    H::connect(*account, Box::new(move || notes.note(Note::Authenticating)))
                        .await?;
                let id = self.next.fetch_add(1, Ordering::Relaxed);
                self.sessions()
                    .insert(id, Arc::new(tokio::sync::Mutex::new(session)));
                Ok(Reply::Connected {
                    session: id,
                    namespace,
                })
            }
            Request::Close { session } => {
                // Dropping the session closes its connection.
                self.sessions().remove(&session);
                Ok(Reply::Closed)
            }
            request => {
                let id = request.session().unwrap_or_default();
                let session = self.sessions().get(&id).cloned().ok_or_else(|| WireError {
                    temporary: false,
                    message: format!("plugin {}: no session {id}", H::info().name),
                    cause: None,
                })?;
                let mut session = session.lock().await;
                H::serve(&mut session, request).await
            }
        }
    }
}

impl<H: Handler> Default for State<H> {
    fn default() -> Self {
        Self::new()
    }
}

/// The caller's context and callback, sent to the task that answers.
#[derive(Clone, Copy)]
struct Reporter {
    ctx: *mut c_void,
    done: Completion,
}

// SAFETY: the ABI lets the plugin call `done` with `ctx` from any thread; the pointer is the
// caller's and only handed back to it.
#[allow(unsafe_code)]
unsafe impl Send for Reporter {}
// SAFETY: as above; notes are sent one at a time by the task that owns the request.
#[allow(unsafe_code)]
unsafe impl Sync for Reporter {}

impl Reporter {
    fn send(self, status: u32, payload: &[u8]) {
        // SAFETY: the caller gave `done` and `ctx` for this purpose; the payload lives during
        // the call, as the ABI requires.
        #[allow(unsafe_code)]
        unsafe {
            (self.done)(self.ctx, status, payload.as_ptr(), payload.len());
        }
    }

    fn note(self, note: Note) {
        if let Ok(bytes) = wire::encode(&note) {
            self.send(STATUS_NOTE, &bytes);
        }
    }

    fn finish(self, result: Result<Reply, WireError>) {
        let encoded = match &result {
            Ok(reply) => wire::encode(reply).map(|b| (STATUS_OK, b)),
            Err(e) => wire::encode(e).map(|b| (STATUS_ERROR, b)),
        };
        // Message bodies are in the encoded copy now: free the originals before the host
        // decodes its own, so a batch is held twice at most, not three times.
        drop(result);
        match encoded {
            Ok((status, bytes)) => self.send(status, &bytes),
            Err(message) => {
                let e = WireError {
                    temporary: false,
                    message,
                    cause: None,
                };
                let bytes = wire::encode(&e).unwrap_or_default();
                self.send(STATUS_ERROR, &bytes);
            }
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned())
}

/// `TableV1::info`, for [`crate::export_mail_plugin!`].
///
/// # Safety
///
/// `done` must be a valid [`Completion`] for `ctx`.
#[allow(unsafe_code)]
pub unsafe fn info<H: Handler>(ctx: *mut c_void, done: Completion) {
    let reporter = Reporter { ctx, done };
    match std::panic::catch_unwind(H::info) {
        Ok(info) => match wire::encode(&info) {
            Ok(bytes) => reporter.send(STATUS_OK, &bytes),
            Err(message) => reporter.finish(Err(WireError {
                temporary: false,
                message,
                cause: None,
            })),
        },
        Err(p) => reporter.finish(Err(WireError {
            temporary: false,
            message: format!("plugin panicked describing itself: {}", panic_message(&*p)),
            cause: None,
        })),
    }
}

/// `TableV1::call`, for [`crate::export_mail_plugin!`]: decodes the request, answers it on the
/// plugin's runtime, and turns a panic anywhere into an error reply.
///
/// # Safety
///
/// `request`/`len` must be readable for the duration of the call and `done` a valid
/// [`Completion`] for `ctx`.
#[allow(unsafe_code)]
pub unsafe fn call<H: Handler>(
    state: &'static OnceLock<State<H>>,
    request: *const u8,
    len: usize,
    ctx: *mut c_void,
    done: Completion,
) {
    let reporter = Reporter { ctx, done };
    let bytes = if request.is_null() || len == 0 {
        &[][..]
    } else {
        // SAFETY: the caller guarantees `len` readable bytes at `request` during this call.
        unsafe { std::slice::from_raw_parts(request, len) }
    };
    let started = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let request: Request = wire::decode(bytes, "request")?;
        let state = state.get_or_init(State::new);
        let task = state
            .runtime
            .spawn(async move { state.handle(request, reporter).await });
        state.runtime.spawn(async move {
            let result = match task.await {
                Ok(result) => result,
                Err(e) if e.is_panic() => Err(WireError {
                    temporary: false,
                    message: format!(
                        "plugin {} panicked: {}",
                        H::info().name,
                        panic_message(&*e.into_panic())
                    ),
                    cause: None,
                }),
                Err(e) => Err(WireError {
                    temporary: true,
                    message: format!("plugin {}: request cancelled: {e}", H::info().name),
                    cause: None,
                }),
            };
            reporter.finish(result);
        });
        Ok::<(), String>(())
    }));
    match started {
        Ok(Ok(())) => {}
        Ok(Err(message)) => reporter.finish(Err(WireError {
            temporary: false,
            message: format!("plugin {}: {message}", H::info().name),
            cause: None,
        })),
        Err(p) => reporter.finish(Err(WireError {
            temporary: false,
            message: format!("plugin {} panicked: {}", H::info().name, panic_message(&*p)),
            cause: None,
        })),
    }
}

/// Exports a [`MailPlugin`] under the ABI's symbols:
///
/// ```ignore
/// migrated_plugin_api::export_mail_plugin!(MyPlugin);
/// ```
#[macro_export]
macro_rules! export_mail_plugin {
    ($plugin:ty) => {
        $crate::__export_handler!($crate::plugin::Mail<$plugin>);
    };
}

/// Exports a [`ContactsPlugin`] under the ABI's symbols:
///
/// ```ignore
/// migrated_plugin_api::export_contacts_plugin!(MyPlugin);
/// ```
#[macro_export]
macro_rules! export_contacts_plugin {
    ($plugin:ty) => {
        $crate::__export_handler!($crate::plugin::Contacts<$plugin>);
    };
}

/// The symbols, for the export macros.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_handler {
    ($handler:ty) => {
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        #[doc(hidden)]
        pub static migrated_plugin_abi: $crate::AbiVersion = $crate::AbiVersion::CURRENT;

        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        #[doc(hidden)]
        pub static migrated_plugin_v1: $crate::TableV1 = $crate::TableV1 {
            minor: $crate::ABI_MINOR,
            info: __migrated_plugin_info,
            call: __migrated_plugin_call,
        };

        static __MIGRATED_PLUGIN_STATE: ::std::sync::OnceLock<$crate::plugin::State<$handler>> =
            ::std::sync::OnceLock::new();

        #[allow(unsafe_code)]
        unsafe extern "C" fn __migrated_plugin_info(
            ctx: *mut ::std::ffi::c_void,
            done: $crate::Completion,
        ) {
            // SAFETY: forwarded as the ABI gives them.
            unsafe { $crate::plugin::info::<$handler>(ctx, done) }
        }

        #[allow(unsafe_code)]
        unsafe extern "C" fn __migrated_plugin_call(
            request: *const u8,
            len: usize,
            ctx: *mut ::std::ffi::c_void,
            done: $crate::Completion,
        ) {
            // SAFETY: forwarded as the ABI gives them.
            unsafe {
                $crate::plugin::call::<$handler>(&__MIGRATED_PLUGIN_STATE, request, len, ctx, done)
            }
        }
    };
}
