//! Domain of migrated: folders, messages, the folder mapping, the pure copy planner, error kinds
//! and the source and destination traits. Nothing here does I/O, so all of it is unit-tested
//! without a network.

pub mod account;
pub mod allowance;
pub mod batch;
pub mod contacts;
pub mod destination;
pub mod endpoint;
pub mod error;
pub mod filter;
pub mod folder;
pub mod intake;
pub mod job;
pub mod mapping;
pub mod message;
pub mod named;
pub mod oauth2;
pub mod planner;
pub mod refusal;
pub mod report;
pub mod schedule;
pub mod shard;
pub mod source;
pub mod spec;

pub use account::{Account, SettingValue};
pub use contacts::{
    AddressBook, ContactChanges, ContactData, ContactRef, ContactsConnector, ContactsSession,
};
pub use destination::{
    Append, ContactsDestination, ContactsDestinationSession, MailDestination,
    MailDestinationSession, Put,
};
pub use endpoint::{AdminLogin, AuthMethod, Security};
pub use error::{Cause, DestinationError, ErrorKind, SourceError};
pub use filter::{DateFrom, FilterSpec, MessageFilter};
pub use folder::{FolderInfo, Namespace, SpecialUse};
pub use job::{Action, IllegalAction, JobStatus};
pub use mapping::{
    FolderPlan, Mapping, MappingError, MappingRules, Unrepresentable, map_folders,
    representable_name,
};
pub use message::{Flags, MessageMeta};
pub use named::NamedEndpoint;
pub use oauth2::{AccessToken, AccessTokens, Grant, Mechanism, OAuth2Spec, Provider, TokenError};
pub use planner::{FlagConflicts, FolderSteps, LedgerEntry, PlanOptions, too_large};
pub use report::{
    FolderReport, ItemRow, Phase, PhaseTime, REMOVED_LISTED_PER_FOLDER, Removal, RemovedRow,
    VerifyRow, list_removed,
};
pub use source::{FolderStatus, SourceConnector, SourceSession};
pub use spec::{
    EndpointSpec, FoldersSpec, JobSpec, LimitsSpec, OnRemove, RenameSpec, Secret, SourceAfterCopy,
};
