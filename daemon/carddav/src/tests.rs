//! Unit tests of [`super`].

use super::*;

#[test]
fn line_ends_become_crlf_once() {
    assert_eq!(crlf("A\nB\r\nC\n"), b"A\r\nB\r\nC\r\n");
}

#[test]
fn hrefs_become_urls_and_segments() {
    let a = Account {
        host: "::1".into(),
        port: 5232,
        security: "plain".into(),
        ca_file: None,
        danger_accept_invalid_certs: false,
        tls_fingerprint: None,
        auth: "login".into(),
        user: "u".into(),
        secret: Secret::new("p"),
        timeout_secs: 5,
        settings: Default::default(),
        path: None,
        admin_user: None,
        admin_login: None,
        admin_separator: None,
    };
    let c = Client::new(DavEndpoint::from_account(&a).unwrap()).unwrap();
    assert_eq!(c.url("/a/b/"), "http://[::1]:5232/a/b/");
    assert_eq!(c.url("https://x/y"), "https://x/y");
    assert_eq!(last_segment("/alice/work/"), "work");
    let starttls = Account {
        security: "starttls".into(),
        ..a
    };
    assert!(
        DavEndpoint::from_account(&starttls)
            .unwrap_err()
            .contains("HTTPS")
    );
}

/// Tokens handed out in order: `refused` moves to the next.
#[derive(Debug)]
struct Sequence {
    tokens: Vec<&'static str>,
    at: Mutex<usize>,
}

impl AccessTokens for Sequence {
    fn token(&self) -> Result<migrated_core::AccessToken, TokenError> {
        let at = *self.at.lock().unwrap();
        Ok(migrated_core::AccessToken {
            token: Secret::new(self.tokens[at.min(self.tokens.len() - 1)]),
            expires_at: None,
        })
    }

    fn refused(&self, token: &Secret) {
        let mut at = self.at.lock().unwrap();
        if self.tokens.get(*at).is_some_and(|t| *t == token.expose()) {
            *at += 1;
        }
    }
}

/// A server taking only `Bearer good` (as Google refuses an expired token); returns its
/// port and the Authorization headers it saw.
fn bearer_server(requests: usize) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let thread = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..requests {
            let (mut stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut auth = String::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.strip_prefix("authorization: ") {
                    auth = v.trim().to_owned();
                }
            }
            let reply = if auth == "Bearer good" {
                "HTTP/1.1 200 OK\r\nETag: \"e1\"\r\nContent-Length: 5\r\nConnection: close\r\n\r\nvcard"
            } else {
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            };
            stream.write_all(reply.as_bytes()).unwrap();
            seen.push(auth);
        }
        seen
    });
    (port, thread)
}

fn bearer_client(port: u16, tokens: Vec<&'static str>) -> Client {
    let endpoint = DavEndpoint {
        origin: format!("http://127.0.0.1:{port}"),
        path: "/".into(),
        user: "alice".into(),
        secret: Secret::default(),
        bearer: true,
        tokens: Some(Arc::new(Sequence {
            tokens,
            at: Mutex::new(0),
        })),
        ca_file: None,
        tls_fingerprint: None,
        danger_accept_invalid_certs: false,
        timeout: Duration::from_secs(10),
    };
    Client::new(endpoint).unwrap()
}

#[test]
fn a_token_refused_with_401_is_replaced_and_the_request_sent_once_more() {
    let (port, server) = bearer_server(2);
    let client = bearer_client(port, vec!["expired", "good"]);
    let card = client.get("/alice/book/a.vcf").unwrap().unwrap();
    assert_eq!(
        (card.data.as_slice(), card.etag.as_str()),
        (&b"vcard"[..], "\"e1\"")
    );
    assert_eq!(server.join().unwrap(), ["Bearer expired", "Bearer good"]);
}

#[test]
fn a_second_refusal_is_an_authentication_error_with_the_servers_challenge() {
    let (port, server) = bearer_server(2);
    let client = bearer_client(port, vec!["expired", "revoked", "good"]);
    let err = client.get("/alice/book/a.vcf").unwrap_err();
    assert_eq!(err.cause(), Some(migrated_core::Cause::Authentication));
    assert!(
        err.to_string().contains("HTTP 401") && err.to_string().contains("error=\"invalid_token\""),
        "{err}"
    );
    assert_eq!(server.join().unwrap(), ["Bearer expired", "Bearer revoked"]);
}

#[test]
fn causes_come_from_the_status() {
    use migrated_core::Cause;
    let http = |status| DavError::Http {
        server: "s".into(),
        what: "PUT /a".into(),
        status,
        reply: String::new(),
    };
    assert_eq!(http(401).cause(), Some(Cause::Authentication));
    assert_eq!(http(507).cause(), Some(Cause::Quota));
    assert_eq!(http(429).cause(), Some(Cause::Throttled));
    assert_eq!(http(412).cause(), None);
    let down = DavError::Network {
        server: "s".into(),
        what: "GET /".into(),
        detail: "connection refused".into(),
    };
    assert_eq!(down.cause(), Some(Cause::Network));
}
