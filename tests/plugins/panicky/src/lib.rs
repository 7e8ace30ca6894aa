//! A mail source plugin that connects without a network and panics when asked for folders
//! (or, with `mode = "wild"`, when asked to connect).

use migrated_core::{
    Account, FolderInfo, FolderStatus, MessageMeta, Namespace, SettingValue, SourceConnector,
    SourceError, SourceSession,
};
use migrated_plugin_api::plugin::MailPlugin;
use migrated_plugin_api::wire::{Info, Kind, SettingInfo, SettingKind};

/// The plugin.
#[derive(Debug)]
pub struct Panicky;

/// Its connector.
#[derive(Debug)]
pub struct Connector {
    wild: bool,
}

/// Its session.
#[derive(Debug)]
pub struct Session;

impl MailPlugin for Panicky {
    type Connector = Connector;

    fn info() -> Info {
        Info {
            name: "panicky".to_owned(),
            version: "0.0.1".to_owned(),
            description: "test plugin that panics".to_owned(),
            kinds: vec![Kind::Mail],
            settings: vec![
                SettingInfo {
                    name: "mode".to_owned(),
                    kind: SettingKind::Choice(vec!["calm".to_owned(), "wild".to_owned()]),
                    default: "calm".to_owned(),
                    help: "wild: panic while connecting".to_owned(),
                },
                SettingInfo {
                    name: "verbose".to_owned(),
                    kind: SettingKind::Bool,
                    default: "false".to_owned(),
                    help: "unused".to_owned(),
                },
            ],
        }
    }

    fn connector(account: Account) -> Result<Connector, SourceError> {
        let wild = account.settings.get("mode") == Some(&SettingValue::Text("wild".to_owned()));
        Ok(Connector { wild })
    }
}

impl SourceConnector for Connector {
    type Session = Session;

    async fn connect(&self) -> Result<Session, SourceError> {
        assert!(!self.wild, "deliberate panic while connecting");
        Ok(Session)
    }
}

impl SourceSession for Session {
    fn namespace(&self) -> Namespace {
        Namespace::default()
    }

    async fn list_folders(&mut self) -> Result<Vec<FolderInfo>, SourceError> {
        panic!("deliberate panic in list_folders")
    }

    async fn open_folder(&mut self, _folder: &str) -> Result<FolderStatus, SourceError> {
        Err(SourceError::permanent("no folders"))
    }

    async fn list_messages(
        &mut self,
        _min_uid: u32,
        _changed_since: Option<u64>,
    ) -> Result<Vec<MessageMeta>, SourceError> {
        Ok(Vec::new())
    }

    async fn fetch_bodies(&mut self, uids: &[u32]) -> Result<Vec<Option<Vec<u8>>>, SourceError> {
        Ok(vec![None; uids.len()])
    }
}

migrated_plugin_api::export_mail_plugin!(Panicky);
