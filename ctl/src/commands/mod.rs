//! What each migratectl command does once `main` has parsed it and connected: one module per
//! group of commands, each function returning the command's exit code.

pub(crate) mod alerts;
pub(crate) mod authorize;
pub(crate) mod batches;
pub(crate) mod daemon;
pub(crate) mod endpoints;
pub(crate) mod follow;
pub(crate) mod input;
pub(crate) mod jobs;
pub(crate) mod plan;
pub(crate) mod reports;
pub(crate) mod settings;
