//! The IMAP findings of fuzzing, end to end: a scripted server logs the client in normally,
//! then answers one command with a reply that once panicked, aborted or exhausted the client.
//! The session now fails with a clear error naming the server and command, on a tokio worker
//! thread as in the daemon. (The inputs themselves are replayed in fuzz_regressions.rs.)

use std::time::Duration;

use migrated_imap::{AuthMethod, CertCheck, Endpoint, ImapSession, Secret, Security};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Serves one connection: a normal login, then `hostile(tag)` as the answer to `verb`.
async fn serve(listener: TcpListener, verb: &'static str, hostile: fn(&str) -> Vec<u8>) {
    let (stream, _) = listener.accept().await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write
        .write_all(b"* OK [CAPABILITY IMAP4rev1] scripted server ready\r\n")
        .await
        .unwrap();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut words = line.splitn(3, ' ');
        let (tag, word, rest) = (
            words.next().unwrap_or(""),
            words.next().unwrap_or("").to_ascii_uppercase(),
            words.next().unwrap_or(""),
        );
        // `UID COPY` is named by its second word.
        let word = if word == "UID" {
            rest.split(' ').next().unwrap_or("").to_ascii_uppercase()
        } else {
            word
        };
        let reply: Vec<u8> = match word.as_str() {
            w if w == verb => hostile(tag),
            "LOGIN" => format!("{tag} OK logged in\r\n").into_bytes(),
            "CAPABILITY" => {
                format!("* CAPABILITY IMAP4rev1 UIDPLUS\r\n{tag} OK done\r\n").into_bytes()
            }
            "LIST" => format!("* LIST (\\Noselect) \"/\" \"\"\r\n{tag} OK done\r\n").into_bytes(),
            _ => format!("{tag} BAD unknown\r\n").into_bytes(),
        };
        if write.write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// Logs in, then runs `STATUS "INBOX"` or `UID COPY 1 "Archive"` against the scripted server.
async fn against(verb: &'static str, hostile: fn(&str) -> Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(serve(listener, verb, hostile));
    let endpoint = Endpoint {
        host: "127.0.0.1".into(),
        port,
        security: Security::Plain,
        cert_check: CertCheck::System,
        auth: AuthMethod::Login,
        user: "u".into(),
        secret: Secret::new("p"),
        admin: None,
        oauth: None,
        timeout: Duration::from_secs(5),
    };
    let mut s = ImapSession::connect(&endpoint)
        .await
        .expect("the login is normal");
    let result = match verb {
        "STATUS" => s.status("INBOX").await.map(|_| ()),
        _ => s.copy(&[1], "Archive").await.map(|_| ()),
    };
    server.abort();
    result
        .expect_err("the hostile reply must not pass")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_the_imap_parser_panics_on_is_a_clear_error() {
    // imap-proto 0.17 slices the text after a response code at byte 1, inside the `é`.
    let e = against("STATUS", |tag| {
        format!("{tag} OK [UIDNEXT 5]\u{e9} done\r\n").into_bytes()
    })
    .await;
    assert!(e.contains("127.0.0.1") && e.contains("STATUS"), "{e}");
    assert!(e.contains("the IMAP parser cannot read"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_nested_thousands_deep_is_refused_not_a_stack_overflow() {
    let e = against("STATUS", |_| {
        let mut r = b"* 1 FETCH (BODYSTRUCTURE ".to_vec();
        r.extend(std::iter::repeat_n(b'(', 5000));
        r.extend_from_slice(b"\r\n");
        r
    })
    .await;
    assert!(e.contains("127.0.0.1") && e.contains("STATUS"), "{e}");
    assert!(e.contains("nesting lists deeper than 100"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copyuid_naming_four_billion_uids_is_an_error_not_16_gib() {
    let e = against("COPY", |tag| {
        format!("{tag} OK [COPYUID 1 1:4294967295 1:4294967295] done\r\n").into_bytes()
    })
    .await;
    assert!(e.contains("127.0.0.1") && e.contains("UID COPY"), "{e}");
    assert!(e.contains("naming 4294967295 UIDs"), "{e}");
}
