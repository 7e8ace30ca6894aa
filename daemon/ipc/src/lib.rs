//! The control API of migrated, shared by the daemon and migratectl.
//!
//! One set of requests and replies ([`Request`], [`Response`]) travels over two transports: the
//! Unix socket (this crate's [`framing`]: a 4-byte big-endian length, then a JSON document) and
//! D-Bus. A socket session starts with [`Request::Hello`] carrying [`PROTOCOL_VERSION`]; the
//! daemon answers with its own and refuses a major version it does not speak.

pub mod client;
pub mod dbus;
pub mod framing;
pub mod lifecycle;
pub mod protocol;
pub mod report;
pub mod text;

pub use client::{Client, ClientError, Subscription};
pub use framing::{FrameError, read_frame, write_frame};
// The report rows are core's: the store keeps and the API sends the same types.
pub use lifecycle::{EndpointRow, PreflightRow};
pub use migrated_core::{FolderReport, ItemRow, VerifyRow};
pub use protocol::{
    AlertLevel, AlertRow, BatchSummary, CheckRow, ControlError, ErrorKind, EventRow, JobDetail,
    JobSummary, JobThroughput, MAX_PAGE, PROTOCOL_VERSION, PluginRow, PluginSetting,
    RejectedPlugin, Request, Response, ThroughputSample,
};
