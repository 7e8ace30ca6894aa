//! The control API's transports. Both hand requests to the daemon loop as [`crate::daemon::Msg`]
//! and relay its replies; neither touches job state.

pub(crate) mod socket;
