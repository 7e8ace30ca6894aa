//! The plugin ABI of migrated.
//!
//! A source plugin is a shared library (`cdylib`) that exports two symbols:
//!
//! - [`VERSION_SYMBOL`] (`migrated_plugin_abi`): an [`AbiVersion`], two `u32`. Its shape never
//!   changes, so the daemon can always tell which ABI a library was built for and name both
//!   versions when they differ.
//! - [`TABLE_SYMBOL`] (`migrated_plugin_v1`, the major version in the name): a [`TableV1`] of
//!   `extern "C"` functions.
//!
//! No Rust type crosses the boundary: requests ([`wire::Request`]) and replies
//! ([`wire::Reply`]) travel as MessagePack (rmp-serde, fields by name). A call returns at once;
//! the plugin works on its own tokio runtime and reports through a [`Completion`] callback:
//! any number of notes ([`STATUS_NOTE`]) and then exactly one final reply ([`STATUS_OK`] or
//! [`STATUS_ERROR`]). A panic inside the plugin is caught there and becomes an error reply.
//!
//! Versioning: a daemon refuses a plugin whose major version differs from its own. Minor
//! versions only add (new requests, new optional fields); a plugin answers a request it does
//! not know with an error, never a crash. The daemon loads each library once and never unloads
//! it.
//!
//! Writing a plugin: implement [`plugin::MailPlugin`] (a [`migrated_core::SourceConnector`]
//! and a description) and call [`export_mail_plugin!`]. See `plugins/imap` for a complete one.

use std::ffi::c_void;

pub mod plugin;
pub mod wire;

#[cfg(feature = "host")]
pub mod host;

/// The major version of this ABI. A change of any type in [`wire`] or of [`TableV1`] that is
/// not a pure addition bumps it, and renames [`TABLE_SYMBOL`].
pub const ABI_MAJOR: u32 = 1;
/// The minor version: additions only. 1.1 added [`wire::Request::FetchPart`], 1.2
/// [`wire::WireError::cause`], 1.3 the administrator's login in [`wire::Account`]
/// (`admin_user`, `admin_login`, `admin_separator`), 1.4 `auth = "oauth2"` (the secret is an
/// access token the daemon fetched for this connection; the plugin picks OAUTHBEARER or
/// XOAUTH2 from what the server announces), 1.5 [`wire::Request::OpenFolderSince`] (QRESYNC:
/// what vanished since the last pass) and [`wire::Request::RemoveCopied`] (move mode), 1.6
/// [`wire::Request::RenewToken`] (contacts: the OAuth 2 token HTTP requests carry, renewed
/// during a session).
pub const ABI_MINOR: u32 = 6;

/// The first minor version whose contacts plugins take OAuth 2 logins: HTTP sends a token with
/// every request, so they need [`wire::Request::RenewToken`].
pub const CONTACTS_OAUTH2_MINOR: u32 = 6;

/// The first minor version whose plugins answer [`wire::Request::OpenFolderSince`] and
/// [`wire::Request::RemoveCopied`].
pub const QRESYNC_MINOR: u32 = 5;

/// The first minor version whose plugins log in as an administrator on behalf of a user
/// ([`wire::Account::admin_user`]); the daemon sends an older plugin no such account.
pub const ADMIN_LOGIN_MINOR: u32 = 3;

/// The first minor version whose plugins take OAuth 2 logins (`auth = "oauth2"`).
pub const OAUTH2_MINOR: u32 = 4;

/// The symbol of the [`AbiVersion`] every plugin exports (NUL-terminated for `dlsym`).
pub const VERSION_SYMBOL: &[u8] = b"migrated_plugin_abi\0";
/// The symbol of the [`TableV1`] (NUL-terminated for `dlsym`).
pub const TABLE_SYMBOL: &[u8] = b"migrated_plugin_v1\0";

/// The final reply: the payload is a MessagePack [`wire::Reply`].
pub const STATUS_OK: u32 = 0;
/// The final reply: the payload is a MessagePack [`wire::WireError`].
pub const STATUS_ERROR: u32 = 1;
/// Not final: the payload is a MessagePack [`wire::Note`]; more calls follow.
pub const STATUS_NOTE: u32 = 2;

/// The ABI a library was built for.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbiVersion {
    /// Must equal the daemon's [`ABI_MAJOR`].
    pub major: u32,
    /// Any; the daemon uses nothing newer than the plugin announces.
    pub minor: u32,
}

impl AbiVersion {
    /// The version this crate implements.
    pub const CURRENT: Self = Self {
        major: ABI_MAJOR,
        minor: ABI_MINOR,
    };
}

impl std::fmt::Display for AbiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// How a plugin reports: `ctx` is the caller's, passed back untouched; `status` one of
/// [`STATUS_OK`], [`STATUS_ERROR`], [`STATUS_NOTE`]; `data`/`len` the MessagePack payload, valid
/// only during the call (the receiver copies it). After a final status, `ctx` is dead.
pub type Completion =
    unsafe extern "C" fn(ctx: *mut c_void, status: u32, data: *const u8, len: usize);

/// The functions of ABI version 1.
#[repr(C)]
#[derive(Debug)]
pub struct TableV1 {
    /// The plugin's minor version, so that a newer daemon does not call what is not there.
    pub minor: u32,
    /// Describes the plugin: calls `done` once, before returning, with [`STATUS_OK`] and a
    /// MessagePack [`wire::Info`].
    pub info: unsafe extern "C" fn(ctx: *mut c_void, done: Completion),
    /// Starts a request (`request`/`len`: a MessagePack [`wire::Request`], read before `call`
    /// returns). Returns at once; `done` is called later, from any thread, as described in
    /// [`Completion`].
    pub call:
        unsafe extern "C" fn(request: *const u8, len: usize, ctx: *mut c_void, done: Completion),
}
