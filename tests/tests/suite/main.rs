//! The end-to-end tests of migrated, in one test binary: one module per subject, all sharing
//! [`common`] (a Dovecot pair with a corpus, a daemon under test). One binary links once where
//! twenty linked twenty times. Run one subject with `cargo test -p migrated-tests --test suite
//! -- faults::` (the module path filters), one test by its full name.
//!
//! The tests run in one process, on the harness's threads: whatever a test keeps per process
//! (temporary directories named after the process id, statics such as the store counter in
//! [`common`] or a plugin loaded once) carries a name of its module, and nothing here changes
//! the process's environment, signal handlers or limits, which every other test would share.

mod common;

mod admin_logins;
mod alerts;
mod batch;
mod carry;
mod certificates;
mod cockpit;
mod contacts;
mod courier;
mod crash;
mod cyrus;
mod daemon;
mod dbus;
mod dovecot_testbed;
mod dropin;
mod engine;
mod exchange;
mod faults;
mod fuzz_regressions;
mod gmail;
mod gmail_emulator;
mod hostile_replies;
mod hostile_server;
mod imap_client;
mod lifecycle;
mod lifecycle_batch;
mod link_testbed;
mod oauth_logins;
mod oauth_testbed;
mod packaging;
mod plugins;
mod radicale_testbed;
mod shards;
mod store_faults;
mod store_upgrade;
