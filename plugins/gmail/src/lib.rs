//! The Gmail source plugin of migrated.
//!
//! Gmail shows one message in every folder of its labels, each time with another UID, and again
//! in `[Gmail]/All Mail`. A generic IMAP copy therefore uploads a message once per label. This
//! source reads All Mail once (found by its `\All` role, whatever its localized name), with
//! X-GM-MSGID and X-GM-LABELS, and shows the engine one folder per destination folder:
//!
//! - `labels = "folders"` (default): INBOX, Sent, Drafts, one folder per user label (nested
//!   labels become nested folders), and an archive folder for mail without any label. A message
//!   with several labels is in several of these folders with one content key (its X-GM-MSGID):
//!   the engine uploads it once and places the other copies with `UID COPY` on the destination.
//! - `labels = "keywords"`: one copy per message, in INBOX, Sent, Drafts or the archive folder,
//!   its user labels as IMAP keywords.
//!
//! `\Starred` is the `\Flagged` flag (Gmail sends both); `\Important` is dropped unless
//! `important = true`. Trash and Spam are not in All Mail: they are read as the folders they
//! are. `[Gmail]/All Mail`, `Starred` and `Important` never become folders of their own.

mod labels;
mod source;

use migrated_core::SourceError;
use migrated_imap::Endpoint;
use migrated_plugin_api::plugin::MailPlugin;
use migrated_plugin_api::wire::{Account, Info, Kind, SettingInfo, SettingKind};

pub use labels::{Policy, keyword};
pub use source::{GmailSession, GmailSource};

/// The plugin.
#[derive(Debug)]
pub struct GmailPlugin;

impl MailPlugin for GmailPlugin {
    type Connector = GmailSource;

    fn info() -> Info {
        let text = |s: &str| s.to_owned();
        Info {
            name: text("gmail"),
            version: text(env!("CARGO_PKG_VERSION")),
            description: text(
                "Gmail over IMAP (X-GM-EXT-1): All Mail read once, each message uploaded once \
                 whatever its labels",
            ),
            kinds: vec![Kind::Mail],
            settings: vec![
                SettingInfo {
                    name: text("labels"),
                    kind: SettingKind::Choice(vec![text("folders"), text("keywords")]),
                    default: text("folders"),
                    help: text(
                        "folders: one folder per label, a message uploaded once and copied on \
                         the destination into its other labels; keywords: one copy, labels as \
                         keywords",
                    ),
                },
                SettingInfo {
                    name: text("important"),
                    kind: SettingKind::Bool,
                    default: text("false"),
                    help: text(
                        "keep Gmail's \\Important label (as an Important folder, or the \
                         $Important keyword)",
                    ),
                },
                SettingInfo {
                    name: text("daily_download_mb"),
                    kind: SettingKind::Number,
                    default: text("2500"),
                    help: text(
                        "Gmail's IMAP download limit per account and day (MB): past it the job \
                         waits, shown as Throttled, until the next day (UTC) instead of failing",
                    ),
                },
                SettingInfo {
                    name: text("archive_folder"),
                    kind: SettingKind::Text,
                    default: text("Archive"),
                    help: text("where mail with no label (archived in Gmail) goes"),
                },
            ],
        }
    }

    fn connector(account: Account) -> Result<GmailSource, SourceError> {
        let policy = Policy::from_settings(&account.settings)?;
        let endpoint = Endpoint::try_from(account).map_err(SourceError::permanent)?;
        Ok(GmailSource::new(endpoint, policy))
    }
}

migrated_plugin_api::export_mail_plugin!(GmailPlugin);
