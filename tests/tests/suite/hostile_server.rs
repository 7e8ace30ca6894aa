//! A scripted IMAP server that answers the folder listing with hostile replies: malformed data,
//! a literal announced larger than what is sent, 10,000 unsolicited replies, an endless line.
//! The client fails cleanly with a clear error naming the server and command (or copes), and
//! never hangs or panics.

use std::time::{Duration, Instant};

use migrated_imap::{AuthMethod, CertCheck, Endpoint, ImapSession, Secret, Security};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Clone, Copy)]
enum Hostile {
    Malformed,
    ShortLiteral,
    Unsolicited,
    EndlessLine,
    HugeLiteral,
}

/// Serves one connection: a normal login, then the hostile answer to `LIST "" "*"`.
async fn serve(listener: TcpListener, script: Hostile) {
    let (stream, _) = listener.accept().await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write
        .write_all(b"* OK [CAPABILITY IMAP4rev1] scripted server ready\r\n")
        .await
        .unwrap();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut words = line.splitn(3, ' ');
        let (tag, verb, rest) = (
            words.next().unwrap_or(""),
            words.next().unwrap_or("").to_ascii_uppercase(),
            words.next().unwrap_or(""),
        );
        let reply: Vec<u8> = match verb.as_str() {
            "LOGIN" => format!("{tag} OK logged in\r\n").into_bytes(),
            "CAPABILITY" => format!("* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n").into_bytes(),
            "LOGOUT" => format!("* BYE\r\n{tag} OK bye\r\n").into_bytes(),
            "LSUB" => format!("{tag} OK done\r\n").into_bytes(),
            "LIST" if rest.starts_with("\"\" \"\"") => {
                format!("* LIST (\\Noselect) \"/\" \"\"\r\n{tag} OK done\r\n").into_bytes()
            }
            "LIST" => match script {
                Hostile::Malformed => {
                    format!("* LIST garbage((( \"/\r\n{tag} OK done\r\n").into_bytes()
                }
                Hostile::ShortLiteral => b"* LIST () \"/\" {100}\r\nshort".to_vec(),
                Hostile::Unsolicited => {
                    let mut r = b"* 1 EXISTS\r\n".repeat(10_000);
                    r.extend_from_slice(
                        format!("* LIST () \"/\" \"INBOX\"\r\n{tag} OK done\r\n").as_bytes(),
                    );
                    r
                }
                Hostile::HugeLiteral => b"* LIST () \"/\" {999999999999}\r\n".to_vec(),
                Hostile::EndlessLine => {
                    write.write_all(b"* LIST () \"/\" \"").await.unwrap();
                    let chunk = vec![b'a'; 1 << 20];
                    // 256 MB without an end, unless the client hangs up first.
                    for _ in 0..256 {
                        if write.write_all(&chunk).await.is_err() {
                            return;
                        }
                    }
                    Vec::new()
                }
            },
            _ => format!("{tag} BAD unknown\r\n").into_bytes(),
        };
        if write.write_all(&reply).await.is_err() {
            return;
        }
    }
}

async fn list_against(script: Hostile) -> (Result<usize, String>, Duration) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(serve(listener, script));
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
        timeout: Duration::from_secs(3),
    };
    let t = Instant::now();
    let result = async {
        let mut s = ImapSession::connect(&endpoint)
            .await
            .map_err(|e| e.to_string())?;
        s.list().await.map(|l| l.len()).map_err(|e| e.to_string())
    }
    .await;
    let took = t.elapsed();
    server.abort();
    (result, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_reply_is_a_clear_error() {
    let (r, _) = list_against(Hostile::Malformed).await;
    let e = r.expect_err("malformed LIST data must not pass");
    assert!(e.contains("127.0.0.1") && e.contains("LIST"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_literal_announced_larger_than_sent_times_out_cleanly() {
    let (r, took) = list_against(Hostile::ShortLiteral).await;
    let e = r.expect_err("a truncated literal must not pass");
    assert!(e.contains("127.0.0.1"), "{e}");
    assert!(took < Duration::from_secs(15), "took {took:?}: {e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_unsolicited_replies_do_not_derail_a_command() {
    let (r, _) = list_against(Hostile::Unsolicited).await;
    assert_eq!(r, Ok(1), "the folder after 10,000 unsolicited EXISTS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_line_is_an_error_not_a_hang() {
    let (r, took) = list_against(Hostile::EndlessLine).await;
    let e = r.expect_err("an endless line must not pass");
    println!("endless line: {e} after {took:?}");
    assert!(e.contains("127.0.0.1"), "{e}");
    assert!(took < Duration::from_secs(60), "took {took:?}: {e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_literal_announced_beyond_the_limit_is_refused_at_once() {
    let (r, took) = list_against(Hostile::HugeLiteral).await;
    let e = r.expect_err("a 1 TB literal must not be awaited");
    println!("huge literal: {e} after {took:?}");
    assert!(e.contains("127.0.0.1"), "{e}");
    assert!(e.contains("literal of 999999999999 bytes"), "{e}");
    assert!(e.contains("sent an unexpected reply to LIST"), "{e}");
    assert!(
        !e.contains("closed the connection"),
        "migrated closed it: {e}"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}: {e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_starttls_is_refused_before_the_password_is_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // A server that offers no STARTTLS: it answers every command with BAD and keeps what it
    // was sent.
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        write
            .write_all(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] no TLS here\r\n")
            .await
            .unwrap();
        let mut received = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            let tag = line.split(' ').next().unwrap_or("*").to_owned();
            received.push(line);
            let reply = format!("{tag} BAD unknown command\r\n");
            if write.write_all(reply.as_bytes()).await.is_err() {
                break;
            }
        }
        received
    });
    let endpoint = Endpoint {
        host: "127.0.0.1".into(),
        port,
        security: Security::StartTls,
        cert_check: CertCheck::System,
        auth: AuthMethod::Login,
        user: "u".into(),
        secret: Secret::new("never-sent-secret"),
        admin: None,
        oauth: None,
        timeout: Duration::from_secs(3),
    };
    let e = ImapSession::connect(&endpoint)
        .await
        .expect_err("no STARTTLS, no session")
        .to_string();
    assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
    assert!(e.contains("does not offer STARTTLS"), "{e}");
    assert!(e.contains("security = \"plain\""), "says what to do: {e}");
    assert!(!e.contains("never-sent-secret"), "{e}");
    let received = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the client hung up")
        .unwrap();
    assert_eq!(received, ["S1 STARTTLS"], "nothing but STARTTLS was sent");
}
