//! The IMAP client crate against a real Dovecot: TLS modes, certificate checks, login methods,
//! NAMESPACE, modified UTF-7 names, APPENDUID with MULTIAPPEND, checked UID FETCH, timeouts.

use std::time::Duration;

use migrated_imap::{
    AppendItem, AuthMethod, CertCheck, Endpoint, ImapError, ImapSession, Secret, Security,
};
use testbed::{Dovecot, DovecotOptions, Layout};

fn endpoint(d: &Dovecot, security: Security, port: u16, cert_check: CertCheck) -> Endpoint {
    Endpoint {
        host: "127.0.0.1".into(),
        port,
        security,
        cert_check,
        auth: AuthMethod::Login,
        user: "alice".into(),
        secret: Secret::new(d.password("alice").unwrap()),
        admin: None,
        oauth: None,
        timeout: Duration::from_secs(10),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_starttls_and_certificate_checks() {
    let d = Dovecot::start(DovecotOptions::default()).await.unwrap();
    let ca = CertCheck::CaFile(d.ca_file().to_owned());

    let mut s = ImapSession::connect(&endpoint(&d, Security::Tls, d.imaps_port(), ca.clone()))
        .await
        .expect("implicit TLS with the CA file");
    assert!(s.has("IMAP4rev1"));
    s.list().await.unwrap();
    s.logout().await;

    let s = ImapSession::connect(&endpoint(&d, Security::StartTls, d.imap_port(), ca.clone()))
        .await
        .expect("STARTTLS with the CA file");
    s.logout().await;

    // Certificate checks are on by default: the test CA is not a system root.
    let err = ImapSession::connect(&endpoint(
        &d,
        Security::Tls,
        d.imaps_port(),
        CertCheck::System,
    ))
    .await
    .expect_err("unknown issuer refused");
    assert!(matches!(err, ImapError::Tls { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("127.0.0.1"), "names the host: {text}");
    assert!(
        text.to_lowercase().contains("certificate") || text.contains("UnknownIssuer"),
        "says why: {text}"
    );

    let s = ImapSession::connect(&endpoint(
        &d,
        Security::Tls,
        d.imaps_port(),
        CertCheck::DangerAcceptAnyCertificate,
    ))
    .await
    .expect("explicitly skipped verification");
    s.logout().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_authenticate_plain_and_xoauth2_work() {
    let d = Dovecot::start(DovecotOptions::default()).await.unwrap();
    let mut e = endpoint(&d, Security::Plain, d.imap_port(), CertCheck::System);
    e.auth = AuthMethod::Plain;
    ImapSession::connect(&e)
        .await
        .expect("AUTHENTICATE PLAIN")
        .logout()
        .await;
    e.auth = AuthMethod::Login;
    ImapSession::connect(&e)
        .await
        .expect("LOGIN")
        .logout()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_utf7_names_appenduid_and_checked_fetch() {
    let courier = Dovecot::start(DovecotOptions {
        layout: Layout::MaildirPlusPlus,
        ..DovecotOptions::default()
    })
    .await
    .unwrap();
    let fs = Dovecot::start(DovecotOptions {
        layout: Layout::Fs,
        ..DovecotOptions::default()
    })
    .await
    .unwrap();
    let s = ImapSession::connect(&endpoint(
        &courier,
        Security::Plain,
        courier.imap_port(),
        CertCheck::System,
    ))
    .await
    .unwrap();
    assert_eq!(s.namespace(), ("INBOX.", '.'));
    s.logout().await;

    let mut s = ImapSession::connect(&endpoint(
        &fs,
        Security::Plain,
        fs.imap_port(),
        CertCheck::System,
    ))
    .await
    .unwrap();
    assert_eq!(s.namespace(), ("", '/'));
    let name = "Zürich & Genève/Überblick 📬";
    s.create(name, None).await.unwrap();
    s.create(name, None)
        .await
        .expect("creating an existing folder is not an error");
    // The independent test client sees the same decoded name.
    let mut t = testbed::login(&fs.account("alice").unwrap()).await.unwrap();
    let names: Vec<String> = t
        .list_folders()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert!(names.iter().any(|n| n == name), "{names:?}");
    assert!(s.list().await.unwrap().iter().any(|f| f.name == name));

    let bodies: Vec<Vec<u8>> = (0..5)
        .map(|i| testbed::synthetic_message(i, 2000 + i as usize * 100))
        .collect();
    let items: Vec<AppendItem<'_>> = bodies
        .iter()
        .map(|b| AppendItem {
            flags: "(\\Seen $Label1)",
            internal_date: "01-Feb-2011 10:20:30 +0100",
            body: b,
        })
        .collect();
    assert!(s.has("MULTIAPPEND") && s.has("LITERAL+"));
    let uids = s.append(name, &items).await.unwrap().expect("APPENDUID");
    assert_eq!(uids.len(), 5);
    s.open(name, true).await.unwrap();
    let mut asked = uids.clone();
    asked.push(uids[4] + 100);
    let fetched = s.fetch_bodies(&asked).await.unwrap();
    assert_eq!(fetched.len(), 6);
    for (got, want) in fetched.iter().zip(&bodies) {
        assert_eq!(got.as_deref(), Some(want.as_slice()), "byte for byte");
    }
    assert_eq!(
        fetched[5], None,
        "a UID that did not come back is reported missing"
    );
    let meta = s.fetch_meta(1, None).await.unwrap();
    assert_eq!(meta.len(), 5);
    // Dovecot keeps the instant and answers in UTC.
    assert_eq!(meta[0].internal_date, "01-Feb-2011 09:20:30 +0000");
    assert!(meta[0].flags.iter().any(|f| f == "$Label1"));
    s.logout().await;
}

#[tokio::test]
async fn a_silent_server_times_out_with_a_clear_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let (_socket, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let e = Endpoint {
        host: "127.0.0.1".into(),
        port,
        security: Security::Plain,
        cert_check: CertCheck::System,
        auth: AuthMethod::Login,
        user: "u".into(),
        secret: Secret::new("p"),
        admin: None,
        oauth: None,
        timeout: Duration::from_millis(500),
    };
    let err = ImapSession::connect(&e).await.expect_err("no greeting");
    assert!(matches!(err, ImapError::Timeout { .. }), "{err}");
    assert!(err.is_temporary());
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    hold.abort();
}
