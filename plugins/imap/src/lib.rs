//! The generic IMAP source plugin of migrated.
//!
//! Built as a `cdylib`, it is what the daemon loads from its plugin directory for jobs whose
//! `source.plugin` is `imap` (the default). It is also an `rlib`, so that tests and the
//! benchmark can run the same source in-process and measure what the ABI costs.

mod source;

use migrated_core::SourceError;
use migrated_imap::Endpoint;
use migrated_plugin_api::plugin::MailPlugin;
use migrated_plugin_api::wire::{Account, Info, Kind};

pub use source::{ImapSource, ImapSourceSession};

/// The plugin.
#[derive(Debug)]
pub struct ImapPlugin;

impl MailPlugin for ImapPlugin {
    type Connector = ImapSource;

    fn info() -> Info {
        Info {
            name: "imap".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "Any IMAP4rev1 server: folders by SPECIAL-USE and namespace, flags, \
                          keywords and dates kept; CONDSTORE deltas where offered"
                .to_owned(),
            kinds: vec![Kind::Mail],
            settings: Vec::new(),
        }
    }

    fn connector(account: Account) -> Result<ImapSource, SourceError> {
        Endpoint::try_from(account)
            .map(ImapSource::new)
            .map_err(SourceError::permanent)
    }
}

migrated_plugin_api::export_mail_plugin!(ImapPlugin);
