//! Folder mapping: which source folder lands in which destination folder.
//!
//! Source names are first reduced to a canonical path (namespace prefix removed, components joined
//! with `/`), so that `INBOX.Sent` on a Courier-style server and `Sent` on another compare equal.
//! Include/exclude patterns and renames work on that canonical path; SPECIAL-USE roles then send
//! Sent, Trash, Drafts, Junk and Archive to the destination's folders of the same role whatever
//! their localized names; finally the path is rebuilt with the destination's prefix and separator.

use std::collections::HashMap;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::folder::{FolderInfo, Namespace, SpecialUse};

/// What the administrator asked for: include/exclude patterns and renames, all regular
/// expressions matched against the canonical source path (`Projects/2019`, `INBOX`).
#[derive(Debug, Clone, Default)]
pub struct MappingRules {
    /// When not empty, only folders whose canonical path matches one of these are copied.
    pub include: Vec<Regex>,
    /// Folders whose canonical path matches one of these are not copied.
    pub exclude: Vec<Regex>,
    /// `(pattern, replacement)` applied in order to the canonical path (`$1` refers to groups).
    /// A renamed folder keeps its new name even when it has a SPECIAL-USE role.
    pub renames: Vec<(Regex, String)>,
    /// `[folders] unrepresentable = "replace"`: what replaces, in the name of a folder the
    /// destination refuses to create, each character servers often cannot store (see
    /// [`representable_name`]), for one more CREATE. `None` (the default, `"fail"`): the
    /// refusal stands, the folder fails and its messages count as failed.
    pub replacement: Option<String>,
}

/// What becomes of a folder the destination refuses to create under the name the mapping
/// gives it (`[folders] unrepresentable`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unrepresentable {
    /// The folder fails, its messages count as failed, and the error proposes the rename rule
    /// that gives it a name the destination can hold.
    #[default]
    Fail,
    /// The characters servers often cannot store are replaced by `[folders] replacement` and
    /// the folder created once more under that name; the report says so.
    Replace,
}

/// An invalid pattern, named so the administrator can find it.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    /// A pattern that does not compile.
    #[error("folder {what} pattern {pattern:?} is not a valid regular expression: {source}")]
    BadPattern {
        /// `include`, `exclude` or `rename`.
        what: &'static str,
        /// The pattern as given.
        pattern: String,
        /// The regex compiler's explanation.
        source: regex::Error,
    },
    /// A `[folders] replacement` no destination could be trusted to hold.
    #[error(
        "replacement = {replacement:?} (with unrepresentable = \"replace\") {why}; use characters every server stores in a \
         name, such as \"_\" or \"-\""
    )]
    BadReplacement {
        /// The replacement as given.
        replacement: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// The longest `[folders] replacement`, in characters.
const MAX_REPLACEMENT: usize = 8;

/// Whether a character in a folder name is one servers often cannot store: outside the Basic
/// Multilingual Plane (an emoji: Courier and other servers that keep names in UCS-2 refuse
/// them) or a control character.
pub fn is_unrepresentable(c: char) -> bool {
    u32::from(c) > 0xFFFF || c.is_control()
}

/// `name` with every character servers often cannot store ([`is_unrepresentable`]) replaced by
/// `replacement`; `None` when it has none, so that there is no other name to try.
pub fn representable_name(name: &str, replacement: &str) -> Option<String> {
    if !name.chars().any(is_unrepresentable) {
        return None;
    }
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if is_unrepresentable(c) {
            out.push_str(replacement);
        } else {
            out.push(c);
        }
    }
    Some(out)
}

impl MappingRules {
    /// Compiles the rules from their textual form (job files, the control API).
    ///
    /// # Errors
    ///
    /// [`MappingError::BadPattern`] naming the first pattern that does not compile.
    pub fn compile(
        include: &[String],
        exclude: &[String],
        renames: &[(String, String)],
    ) -> Result<Self, MappingError> {
        let compile = |what, pattern: &String| {
            Regex::new(pattern).map_err(|source| MappingError::BadPattern {
                what,
                pattern: pattern.clone(),
                source,
            })
        };
        Ok(Self {
            include: include
                .iter()
                .map(|p| compile("include", p))
                .collect::<Result<_, _>>()?,
            exclude: exclude
                .iter()
                .map(|p| compile("exclude", p))
                .collect::<Result<_, _>>()?,
            renames: renames
                .iter()
                .map(|(p, r)| Ok((compile("rename", p)?, r.clone())))
                .collect::<Result<_, MappingError>>()?,
            replacement: None,
        })
    }

    /// Sets what a folder the destination refuses to create becomes (`[folders]
    /// unrepresentable` and `replacement`).
    ///
    /// # Errors
    ///
    /// [`MappingError::BadReplacement`] when `replace` is asked with a replacement that is
    /// empty, longer than 8 characters, or has a character servers cannot be trusted with in a
    /// name: one [`is_unrepresentable`], a hierarchy separator (`/`, `.`), a wildcard of LIST
    /// (`*`, `%`), `"` or `\`.
    pub fn with_unrepresentable(
        mut self,
        policy: Unrepresentable,
        replacement: &str,
    ) -> Result<Self, MappingError> {
        if policy == Unrepresentable::Fail {
            self.replacement = None;
            return Ok(self);
        }
        let bad = |why| {
            Err(MappingError::BadReplacement {
                replacement: replacement.to_owned(),
                why,
            })
        };
        if replacement.is_empty() {
            return bad("is empty: a replaced character would vanish and names could collide");
        }
        if replacement.chars().count() > MAX_REPLACEMENT {
            return bad("is longer than 8 characters");
        }
        if replacement.chars().any(is_unrepresentable) {
            return bad("has itself a character servers often cannot store");
        }
        if replacement.chars().any(|c| "/.*%\"\\".contains(c)) {
            return bad("has a hierarchy separator, a LIST wildcard, a quote or a backslash");
        }
        self.replacement = Some(replacement.to_owned());
        Ok(self)
    }
}

impl MappingRules {
    /// Why the include and exclude patterns leave out the folder at this canonical path, or
    /// `None` when they let it in.
    pub fn left_out(&self, canonical: &str) -> Option<String> {
        if !self.include.is_empty() && !self.include.iter().any(|r| r.is_match(canonical)) {
            return Some("not matched by any include pattern".into());
        }
        self.exclude
            .iter()
            .find(|r| r.is_match(canonical))
            .map(|r| format!("matched by exclude pattern {:?}", r.as_str()))
    }
}

/// One source folder and where it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderPlan {
    /// Name on the source server, prefix included.
    pub source: String,
    /// Canonical path (prefix removed, `/`-separated), used for patterns and reports.
    pub canonical: String,
    /// Name on the destination server, prefix included.
    pub destination: String,
    /// The source folder is only a container (`\Noselect`): copy nothing, and create it only
    /// when the destination refuses a child without it.
    pub container_only: bool,
    /// The role the folder has on the source, if any.
    pub special_use: Option<SpecialUse>,
    /// The destination has no folder with this role yet: create it with `USE (...)`.
    pub create_with_use: Option<SpecialUse>,
    /// Subscribed on the source: subscribe on the destination too.
    pub subscribed: bool,
    /// Why the folder arrived under another name than the mapping gave it (the destination
    /// refused that one and `[folders] unrepresentable = "replace"` gave it this one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed: Option<String>,
}

/// The outcome of mapping: folders to copy, and folders left out with the reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapping {
    /// Folders to create and copy, parents before children.
    pub folders: Vec<FolderPlan>,
    /// `(source name, reason)` for every folder that is not copied.
    pub skipped: Vec<(String, String)>,
}

/// The canonical path of a source folder: prefix removed, components joined with `/`.
pub fn canonical_path(name: &str, delimiter: Option<char>, ns: &Namespace) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        return "INBOX".to_owned();
    }
    let rest = name.strip_prefix(ns.prefix.as_str()).unwrap_or(name);
    match delimiter {
        Some(d) if d != '/' => rest
            .split(d)
            .map(|c| c.replace('/', "_"))
            .collect::<Vec<_>>()
            .join("/"),
        _ => rest.to_owned(),
    }
}

/// The destination name of a canonical path: components joined with the destination's separator
/// behind its prefix. A separator character inside a component becomes `_`, since it would
/// otherwise split the folder in two.
pub fn destination_name(canonical: &str, ns: &Namespace) -> String {
    if canonical.eq_ignore_ascii_case("INBOX") {
        return "INBOX".to_owned();
    }
    let joined = canonical
        .split('/')
        .map(|c| c.replace(ns.delimiter, "_"))
        .collect::<Vec<_>>()
        .join(&ns.delimiter.to_string());
    format!("{}{}", ns.prefix, joined)
}

/// The longest name the rename rules may give a folder: longer than any mailbox name servers
/// accept in practice, and small enough to bound what a runaway rule costs.
const MAX_RENAMED: usize = 4096;

/// Maps every source folder to its destination.
///
/// Virtual folders (`\All`, `\Flagged`) are skipped: their messages live in other folders and
/// copying them would duplicate mail. Parents appear before their children in the result.
pub fn map_folders(
    source: &[FolderInfo],
    source_ns: &Namespace,
    destination: &[FolderInfo],
    destination_ns: &Namespace,
    rules: &MappingRules,
) -> Mapping {
    let mut by_role: HashMap<SpecialUse, &str> = HashMap::new();
    for folder in destination {
        if let Some(role) = folder.special_use {
            by_role.entry(role).or_insert(folder.name.as_str());
        }
    }
    let mut mapping = Mapping::default();
    for folder in source {
        let canonical = canonical_path(&folder.name, folder.delimiter, source_ns);
        if let Some(role) = folder.special_use.filter(|r| r.is_virtual()) {
            mapping.skipped.push((
                folder.name.clone(),
                format!(
                    "virtual {} folder: its messages are copied from their own folders",
                    role.attribute()
                ),
            ));
            continue;
        }
        if let Some(reason) = rules.left_out(&canonical) {
            mapping.skipped.push((folder.name.clone(), reason));
            continue;
        }
        let mut renamed = canonical.clone();
        for (pattern, replacement) in &rules.renames {
            renamed = pattern
                .replace_all(&renamed, replacement.as_str())
                .into_owned();
            // Checked after every rule: rules that each double the name (`$0$0`) would
            // otherwise reach gigabytes in thirty steps.
            if renamed.len() > MAX_RENAMED {
                break;
            }
        }
        if renamed.len() > MAX_RENAMED {
            mapping.skipped.push((
                folder.name.clone(),
                format!(
                    "the rename rules make its name longer than {MAX_RENAMED} bytes; check [folders] rename"
                ),
            ));
            continue;
        }
        let mut create_with_use = None;
        let destination = match folder.special_use {
            Some(role) if renamed == canonical => match by_role.get(&role) {
                Some(existing) => (*existing).to_owned(),
                None => {
                    create_with_use = Some(role);
                    destination_name(role.default_name(), destination_ns)
                }
            },
            _ => destination_name(&renamed, destination_ns),
        };
        mapping.folders.push(FolderPlan {
            source: folder.name.clone(),
            canonical,
            destination,
            container_only: folder.no_select,
            special_use: folder.special_use,
            create_with_use,
            subscribed: folder.subscribed,
            renamed: None,
        });
    }
    // Parents first: a destination name is never longer than its children's.
    mapping.folders.sort_by(|a, b| {
        a.destination
            .len()
            .cmp(&b.destination.len())
            .then(a.destination.cmp(&b.destination))
    });
    mapping
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str, delimiter: char, role: Option<SpecialUse>) -> FolderInfo {
        FolderInfo {
            name: name.into(),
            delimiter: Some(delimiter),
            no_select: false,
            special_use: role,
            subscribed: true,
        }
    }

    fn courier() -> Namespace {
        Namespace {
            prefix: "INBOX.".into(),
            delimiter: '.',
        }
    }

    fn slash() -> Namespace {
        Namespace {
            prefix: String::new(),
            delimiter: '/',
        }
    }

    fn find<'a>(m: &'a Mapping, source: &str) -> &'a FolderPlan {
        m.folders
            .iter()
            .find(|f| f.source == source)
            .expect("folder mapped")
    }

    #[test]
    fn courier_prefix_and_separator_become_slash_paths() {
        let src = [
            folder("INBOX", '.', None),
            folder("INBOX.Projekte.Übersicht", '.', None),
        ];
        let m = map_folders(&src, &courier(), &[], &slash(), &MappingRules::default());
        assert_eq!(find(&m, "INBOX").destination, "INBOX");
        assert_eq!(
            find(&m, "INBOX.Projekte.Übersicht").destination,
            "Projekte/Übersicht"
        );
        assert_eq!(
            find(&m, "INBOX.Projekte.Übersicht").canonical,
            "Projekte/Übersicht"
        );
    }

    #[test]
    fn slash_paths_become_courier_paths() {
        let src = [folder("a/b", '/', None), folder("x.y", '/', None)];
        let m = map_folders(&src, &slash(), &[], &courier(), &MappingRules::default());
        assert_eq!(find(&m, "a/b").destination, "INBOX.a.b");
        // A dot inside a component would split it on a dot-separated server.
        assert_eq!(find(&m, "x.y").destination, "INBOX.x_y");
    }

    #[test]
    fn special_use_folders_land_in_the_destination_folder_of_the_same_role() {
        let src = [
            folder("INBOX.Gesendete Objekte", '.', Some(SpecialUse::Sent)),
            folder("INBOX.Papierkorb", '.', Some(SpecialUse::Trash)),
        ];
        let dst = [folder("Sent Items", '/', Some(SpecialUse::Sent))];
        let m = map_folders(&src, &courier(), &dst, &slash(), &MappingRules::default());
        let sent = find(&m, "INBOX.Gesendete Objekte");
        assert_eq!(sent.destination, "Sent Items");
        assert_eq!(sent.create_with_use, None);
        let trash = find(&m, "INBOX.Papierkorb");
        assert_eq!(trash.destination, "Trash");
        assert_eq!(trash.create_with_use, Some(SpecialUse::Trash));
    }

    #[test]
    fn virtual_folders_are_skipped_with_a_reason() {
        let src = [
            folder("[Gmail]/All Mail", '/', Some(SpecialUse::All)),
            folder("INBOX", '/', None),
        ];
        let m = map_folders(&src, &slash(), &[], &slash(), &MappingRules::default());
        assert_eq!(m.folders.len(), 1);
        assert!(m.skipped[0].1.contains("\\All"));
    }

    #[test]
    fn include_exclude_and_renames_use_the_canonical_path() {
        let rules = MappingRules::compile(
            &["^(INBOX|Projekte)".into()],
            &["^Projekte/Alt".into()],
            &[("^Projekte".into(), "Archive/Projekte".into())],
        )
        .unwrap();
        let src = [
            folder("INBOX", '.', None),
            folder("INBOX.Projekte.Neu", '.', None),
            folder("INBOX.Projekte.Alt", '.', None),
            folder("INBOX.Privat", '.', None),
        ];
        let m = map_folders(&src, &courier(), &[], &slash(), &rules);
        assert_eq!(
            find(&m, "INBOX.Projekte.Neu").destination,
            "Archive/Projekte/Neu"
        );
        assert_eq!(m.folders.len(), 2);
        assert_eq!(m.skipped.len(), 2);
    }

    #[test]
    fn renames_that_grow_a_name_without_bound_skip_the_folder() {
        // 28 rules each doubling every character took minutes and gigabytes for one folder
        // (fuzz/regressions/job_file/rename-doubling.toml).
        let doubling: Vec<(String, String)> =
            (0..28).map(|_| (".".into(), "$0$0".into())).collect();
        let rules = MappingRules::compile(&[], &[], &doubling).unwrap();
        let src = [folder("INBOX.Projects", '.', None)];
        let m = map_folders(&src, &courier(), &[], &slash(), &rules);
        assert!(m.folders.is_empty(), "{m:?}");
        assert_eq!(m.skipped.len(), 1);
        assert!(m.skipped[0].1.contains("longer than 4096 bytes"), "{m:?}");
    }

    #[test]
    fn a_bad_pattern_is_named_in_the_error() {
        let err = MappingRules::compile(&[], &["(".into()], &[]).unwrap_err();
        assert!(err.to_string().contains("exclude pattern \"(\""), "{err}");
    }

    #[test]
    fn names_with_characters_outside_the_bmp_or_controls_get_a_representable_one() {
        assert_eq!(representable_name("INBOX.Projekte.Übersicht", "_"), None);
        assert_eq!(
            representable_name("INBOX.Post 📬 日本", "_").as_deref(),
            Some("INBOX.Post _ 日本")
        );
        assert_eq!(
            representable_name("a\u{7}b😀😀", "-").as_deref(),
            Some("a-b--")
        );
    }

    #[test]
    fn a_replacement_servers_cannot_hold_is_refused_naming_it() {
        let rules = || MappingRules::compile(&[], &[], &[]).unwrap();
        for bad in ["", "📬", ".", "a/b", "*", "%", "\"", "\\", "123456789"] {
            let err = rules()
                .with_unrepresentable(Unrepresentable::Replace, bad)
                .unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("replacement = {bad:?} (with unrepresentable")),
                "{err}"
            );
        }
        let ok = rules()
            .with_unrepresentable(Unrepresentable::Replace, "_")
            .unwrap();
        assert_eq!(ok.replacement.as_deref(), Some("_"));
        // "fail" ignores the replacement: there is nothing to check.
        let fail = rules()
            .with_unrepresentable(Unrepresentable::Fail, "")
            .unwrap();
        assert_eq!(fail.replacement, None);
    }

    #[test]
    fn parents_come_before_children() {
        let src = [
            folder("a/b/c", '/', None),
            folder("a", '/', None),
            folder("a/b", '/', None),
        ];
        let m = map_folders(&src, &slash(), &[], &slash(), &MappingRules::default());
        let order: Vec<_> = m.folders.iter().map(|f| f.destination.as_str()).collect();
        assert_eq!(order, ["a", "a/b", "a/b/c"]);
    }
}
