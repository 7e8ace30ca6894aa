//! The Creating folders phase: destination folders the mapping needs and the destination lacks
//! are created (with their SPECIAL-USE where the mapping asks), and subscriptions copied. A
//! folder the destination refuses to create is reported and skipped; the rest of the run goes on.
//!
//! A refused name with characters servers often cannot store (outside the Basic Multilingual
//! Plane, such as an emoji, which Courier refuses; control characters) gets, in its error, the
//! `[folders]` rename rule to paste. With `[folders] unrepresentable = "replace"` the folder is
//! instead created once more with those characters replaced (`replacement`, `_` by default):
//! no table of what which server refuses, only the refusal itself and one more try. The folder's
//! plan then carries the new name and why, which its report row shows; a later run meets the
//! same refusal and finds the replaced folder there.
//!
//! A source folder that only holds children (`\Noselect`) is not created: creating its children
//! makes it a container on the destination too (Dovecot, Courier; Cyrus makes such parents real
//! folders whatever the client does). Only when the destination refuses a child is its
//! container created first, and the log says so.

use std::collections::{HashMap, HashSet};

use migrated_core::{
    FolderInfo, FolderPlan, MailDestination, MailDestinationSession, SourceConnector,
    representable_name,
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
        plans: &mut [FolderPlan],
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
        let containers: Vec<String> = plans
            .iter()
            .filter(|p| p.container_only && !existing.contains(p.destination.as_str()))
            .map(|p| p.destination.clone())
            .collect();
        let mut created_containers: HashSet<&str> = HashSet::new();
        for plan in plans.iter_mut() {
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
                        .map(String::as_str)
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
                match result {
                    Ok(()) => {
                        tracing::info!(job = %sh.config.job_id, folder = %plan.destination, "Folder created.");
                    }
                    Err(e) if e.is_temporary() => return Err(e.into()),
                    Err(e) => {
                        let alternative = sh
                            .config
                            .rules
                            .replacement
                            .as_deref()
                            .and_then(|r| representable_name(&plan.destination, r));
                        let Some(alternative) = alternative else {
                            let error =
                                format!("{e}{}", rename_hint(&plan.canonical, &plan.destination));
                            tracing::error!(job = %sh.config.job_id, folder = %plan.destination, error = %error, "Folder could not be created.");
                            folder_errors.insert(plan.source.clone(), error);
                            continue;
                        };
                        // Once more, under a name with those characters replaced (or into the
                        // folder an earlier run created so).
                        if !existing.contains(alternative.as_str())
                            && let Err(again) =
                                dst.create_folder(&alternative, plan.create_with_use).await
                        {
                            if again.is_temporary() {
                                return Err(again.into());
                            }
                            let error = format!(
                                "{e}; under the name {alternative:?} that [folders] \
                                 unrepresentable = \"replace\" gives it, refused too: {again} \
                                 (give it a name with a [folders] rename rule)"
                            );
                            tracing::error!(job = %sh.config.job_id, folder = %plan.destination, error = %error, "Folder could not be created.");
                            folder_errors.insert(plan.source.clone(), error);
                            continue;
                        }
                        let why = format!(
                            "arrived as {alternative:?}: the destination refused {:?} ({e}), \
                             and [folders] unrepresentable = \"replace\" replaced the characters \
                             it cannot store",
                            plan.destination
                        );
                        tracing::warn!(job = %sh.config.job_id, folder = %plan.destination, renamed = %alternative, refusal = %e, "The destination refused the folder's name: created under a name with the characters it cannot store replaced.");
                        plan.destination = alternative;
                        plan.renamed = Some(why);
                    }
                }
            }
            if sh.config.subscriptions
                && plan.subscribed
                && !subscribed.contains(plan.destination.as_str())
            {
                match dst.subscribe(&plan.destination).await {
                    Ok(()) => {}
                    // A container is only there if a child made it (Gmail's `[Gmail]` holds
                    // folders that map to the destination's own Sent, Trash...): a server that
                    // will not subscribe a folder it lacks is not a reason to stop.
                    Err(e) if plan.container_only && !e.is_temporary() => {
                        tracing::warn!(job = %sh.config.job_id, folder = %plan.destination, refusal = %e, "Subscription of a container (\\Noselect on the source) not copied: the destination has no such folder.");
                    }
                    Err(e) => return Err(e.into()),
                }
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

/// For a refused name with characters servers often cannot store (outside the Basic
/// Multilingual Plane, an emoji, which Courier and other UCS-2 servers refuse; control
/// characters): the `[folders]` rename rule that gives the folder a name they can, to paste
/// into the job file, and the setting that does it for every such folder. Empty for other
/// names.
fn rename_hint(canonical: &str, destination: &str) -> String {
    if representable_name(destination, "_").is_none() {
        return String::new();
    }
    let Some(safe) = representable_name(canonical, "_") else {
        return String::new();
    };
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
             cannot store: a [folders] rename rule to {safe:?} gives it one they can, or \
             unrepresentable = \"replace\" in [folders] does it for every such folder)"
        );
    }
    format!(
        " (the name has characters outside the Basic Multilingual Plane, which some servers \
         cannot store; this rule in the job's [folders] gives it a name they can: \
         rename = [{{ from = '{pattern}', to = '{safe}' }}]; or unrepresentable = \"replace\" \
         in [folders] does it for every such folder)"
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
