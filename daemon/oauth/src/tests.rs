//! A token endpoint on loopback (one thread, canned replies) for the exchanges' wording and
//! the renewal rule; the real flows run against the test bed's authorization server.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use super::*;
use migrated_core::Grant;

/// Serves each connection one canned reply, in order, and keeps the request bodies.
fn endpoint(replies: Vec<(u16, String)>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    std::thread::spawn(move || {
        for (status, body) in replies {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = s.read(&mut chunk).unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let len = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if buf.len() >= head_end + 4 + len {
                        kept.lock().unwrap().push(text[head_end + 4..].to_owned());
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(reply.as_bytes()).unwrap();
        }
    });
    (url, seen)
}

fn refresh_spec(url: &str) -> OAuth2Spec {
    OAuth2Spec {
        token_url: Some(url.to_owned()),
        scope: Some("https://mail.google.com/".into()),
        client_id: Some("client".into()),
        client_secret: Some(Secret::new("client-secret")),
        refresh_token: Some(Secret::new("refresh-1")),
        ..OAuth2Spec::default()
    }
}

#[test]
fn a_token_is_kept_until_refused_then_refreshed_with_the_refresh_token() {
    let ok = |t: &str| {
        (
            200,
            format!(r#"{{"access_token":"{t}","token_type":"Bearer","expires_in":3600}}"#),
        )
    };
    let (url, seen) = endpoint(vec![ok("a1"), ok("a2")]);
    let tokens = Tokens::new(&refresh_spec(&url), "alice", Duration::from_secs(5)).unwrap();
    let first = tokens.token().unwrap();
    assert_eq!(first.token.expose(), "a1");
    assert_eq!(
        tokens.token().unwrap().token.expose(),
        "a1",
        "kept, not fetched again"
    );
    tokens.refused(&first.token);
    assert_eq!(tokens.token().unwrap().token.expose(), "a2");
    let bodies = seen.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2);
    assert!(
        bodies[0].contains("grant_type=refresh_token")
            && bodies[0].contains("refresh_token=refresh-1")
            && bodies[0].contains("client_secret=client-secret"),
        "{bodies:?}"
    );
}

#[test]
fn a_short_lived_token_is_renewed_before_it_expires() {
    let (url, _) = endpoint(vec![
        (
            200,
            r#"{"access_token":"s1","token_type":"Bearer","expires_in":1}"#.into(),
        ),
        (
            200,
            r#"{"access_token":"s2","token_type":"Bearer","expires_in":1}"#.into(),
        ),
    ]);
    let tokens = Tokens::new(&refresh_spec(&url), "alice", Duration::from_secs(5)).unwrap();
    assert_eq!(tokens.token().unwrap().token.expose(), "s1");
    // A quarter of its one-second life before it expires, the next one is fetched.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(tokens.token().unwrap().token.expose(), "s2");
}

#[test]
fn a_revoked_refresh_token_is_an_authentication_error_with_the_providers_words() {
    let (url, _) = endpoint(vec![(
        400,
        r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#
            .into(),
    )]);
    let tokens = Tokens::new(&refresh_spec(&url), "alice", Duration::from_secs(5)).unwrap();
    let e = tokens.token().unwrap_err();
    assert_eq!(e.cause, Some(Cause::Authentication));
    assert!(!e.is_temporary());
    assert_eq!(
        e.message,
        format!(
            "the token endpoint {url} refused the refresh token of alice: invalid_grant: Token has been expired or revoked."
        )
    );
    assert!(!e.message.contains("refresh-1"));
}

#[test]
fn an_endpoint_that_cannot_be_reached_is_temporary() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    drop(listener);
    let tokens = Tokens::new(&refresh_spec(&url), "alice", Duration::from_secs(5)).unwrap();
    let e = tokens.token().unwrap_err();
    assert!(e.is_temporary(), "{e:?}");
    assert!(
        e.message
            .starts_with(&format!("the token endpoint {url} gave no token"))
    );
}

#[test]
fn a_key_file_that_is_not_a_service_accounts_is_refused_with_why() {
    let spec = OAuth2Spec {
        grant: Grant::ServiceAccount,
        scope: Some("https://mail.google.com/".into()),
        service_account_key: Some(Secret::new(r#"{"type":"authorized_user"}"#)),
        ..OAuth2Spec::default()
    };
    let e = Tokens::new(&spec, "alice", Duration::from_secs(5)).unwrap_err();
    assert!(
        e.starts_with("service_account_key_file: not a service account key file"),
        "{e}"
    );
}
