//! The Creating folders phase: destination folders the mapping needs and the destination lacks
//! are created (with their SPECIAL-USE where the mapping asks), and subscriptions copied. A
//! folder the destination refuses to create is reported and skipped; the rest of the run goes on.
//!
//! A source folder that only holds children (`\Noselect`) is not created: creating its children
//! makes it a container on the destination too (Dovecot, Courier; Cyrus makes such parents real
//! folders whatever the client does). Only when the destination refuses a child is its
//! container created first, and the log says so.

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
        // Containers left to the children that create them.
        let containers: Vec<&str> = plans
            .iter()
            .filter(|p| p.container_only && !existing.contains(p.destination.as_str()))
            .map(|p| p.destination.as_str())
            .collect();
        let mut created_containers: HashSet<&str> = HashSet::new();
        for plan in plans {
            if !plan.destination.eq_ignore_ascii_case("INBOX")
                && !plan.container_only
                && !existing.contains(plan.destination.as_str())
            {
                let mut result = dst
                    .create_folder(&plan.destination, plan.create_with_use)
                    .await;
                if let Err(e) = &result
                    && !e.is_temporary()
                {
                    // Some servers want the parent first: create the containers above it, then
                    // try once more.
                    let above: Vec<&str> = containers
                        .iter()
                        .copied()
                        .filter(|c| is_ancestor(c, &plan.destination))
                        .filter(|c| !created_containers.contains(c))
                        .collect();
                    if !above.is_empty() {
                        for c in above {
                            if dst.create_folder(c, None).await.is_ok() {
                                tracing::warn!(job = %sh.config.job_id, folder = %c, child = %plan.destination, refusal = %e, "The destination refused a folder whose parent does not exist: created its parent, which is a container (\\Noselect) on the source, as a folder first.");
                                created_containers.insert(c);
                            }
                        }
                        result = dst
                            .create_folder(&plan.destination, plan.create_with_use)
                            .await;
                    }
                }
                if let Err(e) = result {
                    if e.is_temporary() {
                        return Err(e.into());
                    }
                    let error = format!("{e}{}", rename_hint(&plan.canonical, &plan.destination));
                    tracing::error!(job = %sh.config.job_id, folder = %plan.destination, error = %error, "Folder could not be created.");
                    folder_errors.insert(plan.source.clone(), error);
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

/// Whether destination folder `parent` is above `child`: a strict prefix followed by the
/// hierarchy separator (any character that is not a letter or digit).
fn is_ancestor(parent: &str, child: &str) -> bool {
    child.len() > parent.len()
        && child.starts_with(parent)
        && child[parent.len()..]
            .chars()
            .next()
            .is_some_and(|c| !c.is_alphanumeric())
}

/// For a refused name with characters outside the Basic Multilingual Plane (an emoji, which
/// Courier and other UCS-2 servers cannot store): the `[folders]` rename rule that gives the
/// folder a name they can, to paste into the job file. Empty for other names.
fn rename_hint(canonical: &str, destination: &str) -> String {
    if !destination.chars().any(|c| u32::from(c) > 0xFFFF) {
        return String::new();
    }
    let safe: String = canonical
        .chars()
        .map(|c| if u32::from(c) > 0xFFFF { '_' } else { c })
        .collect();
    let mut pattern = String::from("^");
    for c in canonical.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('$');
    if pattern.contains('\'') || safe.contains('\'') {
        return format!(
            " (the name has characters outside the Basic Multilingual Plane, which some servers \
             cannot store: a [folders] rename rule to {safe:?} gives it one they can)"
        );
    }
    format!(
        " (the name has characters outside the Basic Multilingual Plane, which some servers \
         cannot store; this rule in the job's [folders] gives it a name they can: \
         rename = [{{ from = '{pattern}', to = '{safe}' }}])"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_name_outside_the_bmp_gets_a_rename_rule_others_nothing() {
        assert_eq!(
            super::rename_hint("Projekte/2019", "INBOX.Projekte.2019"),
            ""
        );
        let hint = super::rename_hint("Post 📬 日本", "INBOX.Post 📬 日本");
        assert!(
            hint.contains("rename = [{ from = '^Post 📬 日本$', to = 'Post _ 日本' }]"),
            "{hint}"
        );
        let hint = super::rename_hint("a.b/📬", "a.b/📬");
        assert!(hint.contains(r"from = '^a\.b/📬$'"), "{hint}");
    }

    #[test]
    fn ancestors_end_at_a_separator() {
        assert!(super::is_ancestor("INBOX.Kunden", "INBOX.Kunden.Müller"));
        assert!(super::is_ancestor("Kunden", "Kunden/Müller/2019"));
        assert!(!super::is_ancestor("Kunden", "Kundenliste"));
        assert!(!super::is_ancestor("Kunden", "Kunden"));
    }
}
