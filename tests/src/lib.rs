//! Test bed for `migrated`: private Dovecot (and Courier-IMAP and Cyrus) instances on loopback, a deterministic mail corpus
//! written straight into their maildirs, a small independent IMAP client, and a verifier that
//! compares two accounts message by message.

mod b64;
pub mod bearer_dav;
pub mod corpus;
pub mod courier;
pub mod cyrus;
pub mod dovecot;
pub mod faketime;
pub mod fault;
pub mod fixture;
pub mod gmail;
pub mod imap;
pub mod link;
pub mod mutf7;
pub mod oauth;
pub mod plugins;
pub mod radicale;
pub mod unpacked;
pub mod vcard;
pub mod verify;

pub use corpus::{
    Corpus, CorpusFolder, CorpusMessage, CorpusSpec, MailServer, SplitMix64, WrittenCorpus,
    append_message, synthetic_message, write_imap, write_maildir,
};
pub use courier::{Courier, CourierOptions};
pub use cyrus::{Cyrus, CyrusOptions};
pub use dovecot::{
    Dovecot, DovecotOAuth2, DovecotOptions, Layout, MasterUser, english_special_use,
    ensure_installed, german_special_use,
};
pub use faketime::faketime_env;
pub use fault::{
    AppendFaultProxy, Direction, Fault, FaultKind, FaultPlan, FaultProxy, Fired, Trigger,
    fault_seed,
};
pub use imap::{Account, FolderInfo, MessageRecord, Session, Tls, login};
pub use link::{LinkModel, LinkProxy};
pub use oauth::{
    AppAccess, Grant, OAuthCounters, OAuthHandle, OAuthOptions, OAuthServer, ServiceAccountKey,
    ServiceAccountOptions, TokenInfo,
};
pub use plugins::plugins_dir;
pub use verify::{FolderDiff, VerifyReport, verify};
