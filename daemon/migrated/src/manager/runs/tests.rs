//! Unit tests of [`super`].

use super::*;
use migrated_core::{Cause, SourceError};

#[test]
fn advice_follows_the_cause_and_the_side_not_the_words() {
    let source_login = EngineError::from(
        SourceError::permanent("NO [AUTHENTICATIONFAILED] go away")
            .with_cause(Cause::Authentication),
    );
    assert!(
        what_to_do(&source_login, "alice", false).starts_with(
            "the source refused the login: check the user and password (or token), then give them again with `migratectl delta alice --source-password-file FILE`"
        )
    );
    let destination_login = EngineError::from(migrated_core::DestinationError::from(
        migrated_imap::ImapError::Auth {
            server: "new:993".into(),
            user: "alice".into(),
            admin: None,
            reply: "NO [AUTHENTICATIONFAILED] Authentication failed.".into(),
        },
    ));
    assert!(
        what_to_do(&destination_login, "alice", false)
            .starts_with("the destination refused the login")
    );
    assert!(
        what_to_do(&destination_login, "alice", true).starts_with(
            "the destination refused the administrator's login on behalf of the user: check that admin_user may log in as this user there"
        )
    );
    let throttled = EngineError::from(
        SourceError::temporary("daily download limit reached").with_cause(Cause::Throttled),
    );
    assert!(
        what_to_do(&throttled, "alice", false).starts_with("the source kept asking to slow down")
    );
    // Words alone choose nothing: a plugin that gives no cause gets the general advice.
    let words = EngineError::from(SourceError::permanent("authentication failed"));
    assert!(what_to_do(&words, "alice", false).starts_with("read the server's words above"));
}
