//! The Creating folders phase: destination folders the mapping needs and the destination lacks
//! are created (with their SPECIAL-USE where the mapping asks), and subscriptions copied. A
//! folder the destination refuses to create is reported and skipped; the rest of the run goes on.

use std::collections::{HashMap, HashSet};

use migrated_core::{
    FolderInfo, FolderPlan, MailDestination, MailDestinationSession, SourceConnector,
};

use super::Engine;
use crate::error::EngineError;
use crate::events::Event;
use migrated_core::Phase;

impl<C: SourceConnector + 'static, D: MailDestination + 'static> Engine<C, D> {
    /// Creates what is missing. Returns, by source folder, why a folder could not be created.
    pub(super) async fn create_folders(
        &self,
        dst: &mut D::Session,
        plans: &[FolderPlan],
        dest_entries: &[FolderInfo],
    ) -> Result<HashMap<String, String>, EngineError> {
        let sh = &self.shared;
        (sh.observer)(Event::Phase(Phase::CreatingFolders));
        let existing: HashSet<&str> = dest_entries
            .iter()
            .filter(|e| !e.no_select)
            .map(|e| e.name.as_str())
            .collect();
        let subscribed: HashSet<&str> = dest_entries
            .iter()
            .filter(|e| e.subscribed)
            .map(|e| e.name.as_str())
            .collect();
        let mut folder_errors: HashMap<String, String> = HashMap::new();
        for plan in plans {
            if !plan.destination.eq_ignore_ascii_case("INBOX")
                && !existing.contains(plan.destination.as_str())
            {
                if let Err(e) = dst
                    .create_folder(&plan.destination, plan.create_with_use)
                    .await
                {
                    if e.is_temporary() {
                        return Err(e.into());
                    }
                    tracing::error!(job = %sh.config.job_id, folder = %plan.destination, error = %e, "Folder could not be created.");
                    folder_errors.insert(plan.source.clone(), e.to_string());
                    continue;
                }
                tracing::info!(job = %sh.config.job_id, folder = %plan.destination, "Folder created.");
            }
            if sh.config.subscriptions
                && plan.subscribed
                && !subscribed.contains(plan.destination.as_str())
            {
                dst.subscribe(&plan.destination).await?;
            }
        }
        Ok(folder_errors)
    }
}
