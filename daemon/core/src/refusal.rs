//! A message the destination refused, said in its administrator's terms: what the server did
//! (its reply, quoted whole), what would change it, and whether later runs send it again.
//!
//! A message refused [`REFUSALS_FOR_GOOD`] times in a row with the same reply is refused for
//! good: later runs (deltas) do not send it again and report it as such, with the count and the
//! last reply. Three, because one refusal may be a passing state of the server (a quota, a
//! setting being changed) and a server that refuses the same bytes three times the same way
//! will refuse them the fourth; sending them again costs a fetch and an APPEND on every delta
//! for ever. What clears it: `migratectl reset` (which forgets everything the job copied), a
//! different destination (another folder or server, or the folder made anew: its UIDVALIDITY
//! changes), or the message fixed at the source (a new message there, with a new UID).

/// After this many refusals in a row with the same reply, a message is refused for good.
pub const REFUSALS_FOR_GOOD: u32 = 3;

/// What would make the destination take a message it refused this way, for the replies whose
/// cause is known (`None` for the others: the reply then speaks for itself).
pub fn advice(reply: &str) -> Option<&'static str> {
    let r = reply.to_ascii_lowercase();
    if r.contains("invalid header") {
        // Cyrus (imap/message.c): a header line without a colon, or with a space before it.
        Some(
            "Cyrus refuses a message whose header has a line without a colon, or a space \
             before the colon, and no setting of its changes that: the message must be fixed \
             at the source, as migrated never alters a message; Cyrus also replaces 8-bit \
             bytes in headers with X unless imapd.conf says munge8bit: no",
        )
    } else if r.contains("non-ascii") || r.contains("8-bit") || r.contains("8bit") {
        // Cyrus with `reject8bit: yes`.
        Some(
            "the server refuses 8-bit bytes in headers: Cyrus does with reject8bit: yes in \
             imapd.conf, and with reject8bit: no and munge8bit: no keeps them as they are",
        )
    } else if r.contains("bare newline") || r.contains("nul character") {
        Some("the message must be fixed at the source, as migrated never alters a message")
    } else {
        None
    }
}

/// The words for a message the destination refused just now, the `count`-th time in a row
/// with this `reply` (the destination's whole error, its reply quoted).
pub fn refused(reply: &str, count: u32) -> String {
    let mut out = reply.to_owned();
    if let Some(a) = advice(reply) {
        out.push_str(&format!(" ({a})"));
    }
    if count >= REFUSALS_FOR_GOOD {
        out.push_str(&format!(
            "; refused for good: refused {count} times in a row with this reply, so later runs \
             do not send it again (migratectl reset tries it again)"
        ));
    } else {
        out.push_str(&format!(
            "; refused {count} of {REFUSALS_FOR_GOOD} times: a message refused \
             {REFUSALS_FOR_GOOD} times in a row with the same reply is not sent again"
        ));
    }
    out
}

/// The words for a message refused for good, not sent by this run.
pub fn given_up(reply: &str, count: u32) -> String {
    let mut out = format!(
        "refused for good, not sent again: the destination refused it {count} times in a row, \
         last with: {reply}"
    );
    if let Some(a) = advice(reply) {
        out.push_str(&format!(" ({a})"));
    }
    out.push_str("; migratectl reset tries it again");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cyrus_invalid_header_is_said_with_its_reply_and_what_would_change_it() {
        let reply =
            "127.0.0.1:1143 refused APPEND to \"INBOX\": NO Message contains invalid header";
        let first = refused(reply, 1);
        assert!(first.contains(reply), "{first}");
        assert!(
            first.contains("fixed at the source") && first.contains("munge8bit: no"),
            "{first}"
        );
        assert!(first.contains("refused 1 of 3 times"), "{first}");
        let third = refused(reply, 3);
        assert!(
            third.contains("refused for good: refused 3 times in a row"),
            "{third}"
        );
        let skipped = given_up(reply, 3);
        assert!(
            skipped.starts_with("refused for good, not sent again")
                && skipped.contains(reply)
                && skipped.contains("migratectl reset"),
            "{skipped}"
        );
        // An unknown reply speaks for itself.
        assert_eq!(advice("NO [OVERQUOTA] Quota exceeded"), None);
    }
}
