//! The copy engine: copies one mailbox from a source to a destination, exactly once, and one
//! account's address books likewise. Both sides are core's traits (`SourceConnector` and
//! `MailDestination`, `ContactsConnector` and `ContactsDestination`): the engine knows no
//! protocol and no provider; its unit tests run it against in-memory fakes (`fakes`).
//!
//! A run connects, scans folders, maps them, creates what is missing on the destination, plans
//! every folder against the ledger, and copies the planned batches over several connections.
//! Every APPEND is announced in the store (an intent) before it is sent and recorded after, so a
//! run stopped at any moment (SIGKILL included) resumes without loss and without duplicates.

mod config;
mod contacts;
mod error;
mod events;
#[cfg(test)]
mod fakes;
mod ledger;
mod mail;
mod memory;
mod retry;
mod stop;
mod throttle;
pub mod timings;

pub use config::{CopyConfig, DEFAULT_MEMORY_BUDGET};
pub use contacts::ContactsEngine;
pub use error::EngineError;
pub use events::{Connection, Event, Observer, Side, Summary};
pub use mail::Engine;
pub use memory::MemoryBudget;
pub use stop::StopSignal;
pub use throttle::RateLimit;
