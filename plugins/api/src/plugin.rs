//! The plugin side: a [`MailPlugin`] and [`crate::export_mail_plugin!`] are all a mail source
//! needs. This module runs the plugin's tokio runtime, keeps its sessions, decodes requests,
//! catches panics and encodes replies.

use std::collections::HashMap;
use std::ffi::c_void;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use migrated_core::{SourceConnector, SourceError, SourceSession};

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

type Session<P> = <<P as MailPlugin>::Connector as SourceConnector>::Session;

/// A plugin's state: its runtime and open sessions. [`crate::export_mail_plugin!`] keeps one
/// in a static.
pub struct State<P: MailPlugin> {
    runtime: tokio::runtime::Runtime,
    sessions: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<Session<P>>>>>,
    next: AtomicU64,
}

impl<P: MailPlugin> std::fmt::Debug for State<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").finish_non_exhaustive()
    }
}

impl<P: MailPlugin> State<P> {
    /// A runtime with two worker threads named after the plugin.
    ///
    /// # Panics
    ///
    /// If the operating system refuses threads; the caller turns that into an error reply.
    pub fn new() -> Self {
        let name = P::info().name;
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

    fn session(&self, id: u64) -> Result<Arc<tokio::sync::Mutex<Session<P>>>, WireError> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&id)
            .cloned()
            .ok_or_else(|| WireError {
                temporary: false,
                message: format!("plugin {}: no session {id}", P::info().name),
            })
    }

    async fn handle(&self, request: Request, reporter: Reporter) -> Result<Reply, WireError> {
        match request {
            Request::Connect { account } => {
                let connector = P::connector(account)?;
                let notes = reporter;
                let session = connector
                    .connect_observed(Box::new(move || notes.note(Note::Authenticating)))
                    .await?;
                let namespace = session.namespace();
                let id = self.next.fetch_add(1, Ordering::Relaxed);
                self.sessions
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(id, Arc::new(tokio::sync::Mutex::new(session)));
                Ok(Reply::Connected {
                    session: id,
                    namespace,
                })
            }
            Request::ListFolders { session } => {
                let s = self.session(session)?;
                let folders = s.lock().await.list_folders().await?;
                Ok(Reply::Folders(folders))
            }
            Request::OpenFolder { session, folder } => {
                let s = self.session(session)?;
                let status = s.lock().await.open_folder(&folder).await?;
                Ok(Reply::Opened(status))
            }
            Request::ListMessages {
                session,
                cursor,
                changed_since,
                limit,
            } => {
                let s = self.session(session)?;
                let (items, next) = s
                    .lock()
                    .await
                    .list_messages_page(cursor, changed_since, limit)
                    .await?;
                Ok(Reply::Messages { items, next })
            }
            Request::FetchBodies { session, uids } => {
                let s = self.session(session)?;
                let bodies = s.lock().await.fetch_bodies(&uids).await?;
                Ok(Reply::Bodies(
                    bodies
                        .into_iter()
                        .map(|b| b.map(serde_bytes::ByteBuf::from))
                        .collect(),
                ))
            }
            Request::Close { session } => {
                // Dropping the session closes its connection.
                self.sessions
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&session);
                Ok(Reply::Closed)
            }
        }
    }
}

impl<P: MailPlugin> Default for State<P> {
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
        match encoded {
            Ok((status, bytes)) => self.send(status, &bytes),
            Err(message) => {
                let e = WireError {
                    temporary: false,
                    message,
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
pub unsafe fn info<P: MailPlugin>(ctx: *mut c_void, done: Completion) {
    let reporter = Reporter { ctx, done };
    match std::panic::catch_unwind(P::info) {
        Ok(info) => match wire::encode(&info) {
            Ok(bytes) => reporter.send(STATUS_OK, &bytes),
            Err(message) => reporter.finish(Err(WireError {
                temporary: false,
                message,
            })),
        },
        Err(p) => reporter.finish(Err(WireError {
            temporary: false,
            message: format!("plugin panicked describing itself: {}", panic_message(&*p)),
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
pub unsafe fn call<P: MailPlugin>(
    state: &'static OnceLock<State<P>>,
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
                        P::info().name,
                        panic_message(&*e.into_panic())
                    ),
                }),
                Err(e) => Err(WireError {
                    temporary: true,
                    message: format!("plugin {}: request cancelled: {e}", P::info().name),
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
            message: format!("plugin {}: {message}", P::info().name),
        })),
        Err(p) => reporter.finish(Err(WireError {
            temporary: false,
            message: format!("plugin {} panicked: {}", P::info().name, panic_message(&*p)),
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

        static __MIGRATED_PLUGIN_STATE: ::std::sync::OnceLock<$crate::plugin::State<$plugin>> =
            ::std::sync::OnceLock::new();

        #[allow(unsafe_code)]
        unsafe extern "C" fn __migrated_plugin_info(
            ctx: *mut ::std::ffi::c_void,
            done: $crate::Completion,
        ) {
            // SAFETY: forwarded as the ABI gives them.
            unsafe { $crate::plugin::info::<$plugin>(ctx, done) }
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
                $crate::plugin::call::<$plugin>(&__MIGRATED_PLUGIN_STATE, request, len, ctx, done)
            }
        }
    };
}
