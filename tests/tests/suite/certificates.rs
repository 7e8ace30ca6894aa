//! Servers with certificates as administrators of legacy servers have them: self-signed, made
//! with `openssl req -x509` (which marks them `CA:TRUE`, and which webpki alone refuses as
//! `CaUsedAsEndEntity`). Named as `ca_file`, such a certificate is trusted, on the source (the
//! IMAP plugin) and on the destination; so is a pinned `tls_fingerprint`. Everything else is
//! still refused, in plain words (self-signed, expired, wrong name, unknown issuer, another
//! fingerprint) that name the setting which fixes it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::common::daemon::{Daemon, stdout};
use migrated_engine::Engine;
use migrated_imap::{
    AuthMethod, CertCheck, Endpoint, ImapDestination, ImapError, ImapSession, Secret, Security,
};
use migrated_store::Store;
use testbed::{CorpusSpec, Dovecot, DovecotOptions, Layout, english_special_use, write_maildir};

/// Makes a self-signed certificate for `cn` as an administrator would:
/// `openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=<cn> -days <days>`, at the wall-clock
/// time `at` (libfaketime's `FAKETIME`) when given.
fn self_signed(
    dir: &Path,
    name: &str,
    cn: &str,
    days: u32,
    at: Option<&str>,
) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    let mut cmd = Command::new("openssl");
    cmd.args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj"])
        .arg(format!("/CN={cn}"))
        .args(["-days", &days.to_string(), "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert);
    if let Some(at) = at {
        let lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
        assert!(
            Path::new(lib).exists(),
            "{lib} is missing: install libfaketime"
        );
        cmd.env("LD_PRELOAD", lib).env("FAKETIME", format!("@{at}"));
    }
    let out = cmd.output().expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("CA:TRUE"),
        "openssl req -x509 marks the certificate CA:TRUE"
    );
    (cert, key)
}

fn openssl_fingerprint(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // "sha256 Fingerprint=AB:CD:..."
    format!("sha256:{}", text.trim().rsplit('=').next().unwrap())
}

fn endpoint(d: &Dovecot, cert_check: CertCheck) -> Endpoint {
    Endpoint {
        host: "127.0.0.1".into(),
        port: d.imaps_port(),
        security: Security::Tls,
        cert_check,
        auth: AuthMethod::Login,
        user: "alice".into(),
        secret: Secret::new(d.password("alice").unwrap()),
        admin: None,
        oauth: None,
        timeout: Duration::from_secs(10),
    }
}

async fn refusal(d: &Dovecot, check: CertCheck) -> String {
    let err = ImapSession::connect(&endpoint(d, check))
        .await
        .expect_err("certificate refused");
    assert!(matches!(err, ImapError::Tls { .. }), "{err}");
    let text = err.to_string();
    eprintln!("refused: {text}");
    assert!(
        !text.contains("CaUsedAsEndEntity") && !text.contains("Other("),
        "{text}"
    );
    text
}

fn work_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("migrated-certs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_certificate_named_as_ca_file_or_pinned_is_trusted_and_nothing_else() {
    let dir = work_dir("refusals");
    let (cert, key) = self_signed(&dir, "good", "127.0.0.1", 365, None);
    let (other, _) = self_signed(&dir, "other", "127.0.0.1", 365, None);
    let d = Dovecot::start_with_certificate(DovecotOptions::default(), cert.clone(), key)
        .await
        .unwrap();

    // Named as ca_file: trusted (what `openssl s_client -CAfile` and imapsync do).
    let s = ImapSession::connect(&endpoint(&d, CertCheck::CaFile(cert.clone())))
        .await
        .expect("the self-signed certificate named as ca_file is trusted");
    s.logout().await;
    // Pinned by the fingerprint openssl prints.
    let fp = openssl_fingerprint(&cert);
    let pin = migrated_imap::tls::parse_fingerprint(&fp).unwrap();
    let s = ImapSession::connect(&endpoint(&d, CertCheck::Fingerprint(pin)))
        .await
        .expect("the pinned certificate is trusted");
    s.logout().await;

    // Self-signed, not trusted: says so, prints the fingerprint, names both settings.
    let text = refusal(&d, CertCheck::System).await;
    assert!(text.contains("is self-signed"), "{text}");
    assert!(text.contains(&fp), "prints the fingerprint {fp}: {text}");
    assert!(
        text.contains("ca_file") && text.contains("tls_fingerprint"),
        "{text}"
    );
    assert_eq!(
        text.matches("self-signed and").count(),
        1,
        "said once: {text}"
    );
    // Another certificate in ca_file.
    let text = refusal(&d, CertCheck::CaFile(other.clone())).await;
    assert!(text.contains("is self-signed and not in ca_file"), "{text}");
    // Another pin.
    let wrong_pin = migrated_imap::tls::parse_fingerprint(&openssl_fingerprint(&other)).unwrap();
    let text = refusal(&d, CertCheck::Fingerprint(wrong_pin)).await;
    assert!(
        text.contains(&format!("has the fingerprint {fp}, not the pinned")),
        "{text}"
    );
    drop(d);

    // Wrong name.
    let (cert, key) = self_signed(&dir, "name", "mail.example.org", 365, None);
    let d = Dovecot::start_with_certificate(DovecotOptions::default(), cert.clone(), key)
        .await
        .unwrap();
    let text = refusal(&d, CertCheck::CaFile(cert)).await;
    assert!(
        text.contains("is made out for mail.example.org, not for 127.0.0.1"),
        "{text}"
    );
    assert!(
        text.contains("connect with a name it lists as host"),
        "{text}"
    );
    drop(d);

    // Expired: made in 2020 for a day.
    let (cert, key) = self_signed(&dir, "old", "127.0.0.1", 1, Some("2020-01-01 00:00:00"));
    let d = Dovecot::start_with_certificate(DovecotOptions::default(), cert.clone(), key)
        .await
        .unwrap();
    let text = refusal(&d, CertCheck::CaFile(cert)).await;
    assert!(text.contains("expired on 2020-01-02"), "{text}");
    assert!(
        text.contains("renew the certificate on the server"),
        "{text}"
    );
    drop(d);

    // Signed by a CA this machine does not trust (the bed's own CA).
    let d = Dovecot::start(DovecotOptions::default()).await.unwrap();
    let text = refusal(&d, CertCheck::System).await;
    assert!(
        text.contains(
            "is signed by an issuer (migrated testbed CA) not in this machine's trusted roots"
        ),
        "{text}"
    );
    assert!(text.contains("ca_file"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_between_two_self_signed_servers_trusts_them_through_ca_file_and_tls_fingerprint()
 {
    let dir = work_dir("migration");
    let (src_cert, src_key) = self_signed(&dir, "src", "127.0.0.1", 365, None);
    let (dst_cert, dst_key) = self_signed(&dir, "dst", "127.0.0.1", 365, None);
    let (src, dst) = tokio::join!(
        Dovecot::start_with_certificate(DovecotOptions::default(), src_cert.clone(), src_key),
        Dovecot::start_with_certificate(
            DovecotOptions {
                layout: Layout::Fs,
                special_use: english_special_use(),
                ..DovecotOptions::default()
            },
            dst_cert.clone(),
            dst_key,
        )
    );
    let (src, dst) = (src.unwrap(), dst.unwrap());
    let corpus = write_maildir(
        &src,
        "alice",
        &CorpusSpec {
            seed: 81,
            messages: 40,
            max_attachment: 0,
            size_factor: 0.5,
        },
    )
    .unwrap();
    let store = Store::open(
        &dir.join("store"),
        migrated_store::StoreKey::from_bytes([42; 32]),
    )
    .unwrap();
    // The source (through the IMAP plugin, so across the plugin boundary) pinned by
    // fingerprint, the destination by its certificate as ca_file.
    let pin = migrated_imap::tls::parse_fingerprint(&openssl_fingerprint(&src_cert)).unwrap();
    let engine = Engine::new(
        testbed::plugins::imap_source(&endpoint(&src, CertCheck::Fingerprint(pin))),
        ImapDestination::new(endpoint(&dst, CertCheck::CaFile(dst_cert))),
        store,
        migrated_engine::CopyConfig::new("job-certs"),
        Arc::new(|_| {}),
    );
    let summary = engine
        .run()
        .await
        .expect("both self-signed servers trusted");
    assert_eq!(
        summary.copied,
        corpus.total_messages() as u64,
        "{summary:?}"
    );
    let report = testbed::verify(
        &src.account("alice").unwrap(),
        &dst.account("alice").unwrap(),
        &corpus.mapping_to(&dst),
    )
    .await
    .unwrap();
    assert!(report.is_exact(), "{report}");

    // The source with the destination's certificate as ca_file: refused through the plugin,
    // in the same words.
    let store = Store::open(
        &dir.join("store2"),
        migrated_store::StoreKey::from_bytes([42; 32]),
    )
    .unwrap();
    let engine = Engine::new(
        testbed::plugins::imap_source(&endpoint(&src, CertCheck::CaFile(dir.join("dst.pem")))),
        ImapDestination::new(endpoint(&dst, CertCheck::CaFile(dir.join("dst.pem")))),
        store,
        migrated_engine::CopyConfig::new("job-certs-2"),
        Arc::new(|_| {}),
    );
    let err = engine
        .run()
        .await
        .expect_err("the source's certificate is not trusted");
    let text = format!("{err:#}");
    assert!(text.contains("is self-signed and not in ca_file"), "{text}");
    assert_eq!(
        text.matches("is self-signed").count(),
        1,
        "said once: {text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// One side of a job file over TLS: `host`, `port`, `security = "tls"`, the password in a file
/// beside it, and `trust` (a `tls_fingerprint` or `ca_file` line, or nothing).
fn tls_side(dir: &Path, section: &str, port: u16, password: &str, trust: &str) -> String {
    let pass = dir.join(format!("{section}.pass"));
    std::fs::write(&pass, password).unwrap();
    format!(
        "[{section}]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"tls\"\nuser = \"alice\"\npassword_file = \"{}\"\n{trust}\n",
        pass.display()
    )
}

fn pin(fp: &str) -> String {
    format!("tls_fingerprint = \"{fp}\"")
}

/// `migratectl --json test` of a job file: the rows, and whether it exited 0.
fn json_test(d: &Daemon, job: &Path) -> (Vec<serde_json::Value>, bool) {
    let out = d.ctl(&["--json", "test", job.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let v: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{e}: {text}\n{}", String::from_utf8_lossy(&out.stderr)));
    let checks = v["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks: {v}"))
        .clone();
    (checks, out.status.success())
}

fn daemon(name: &str) -> Daemon {
    Daemon::in_dir(work_dir(&format!("daemon-{name}")))
}

/// `migratectl test` prints each IMAP server's certificate fingerprint exactly as openssl
/// gives it and as `tls_fingerprint` takes it, refused or not; a copy with the printed
/// fingerprints pinned succeeds, and a wrong pin is refused in words that name the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migratectl_test_prints_each_imap_certificate_fingerprint_and_the_printed_pin_is_trusted() {
    let dir = work_dir("imap-test");
    let (src_cert, src_key) = self_signed(&dir, "src", "127.0.0.1", 365, None);
    let (dst_cert, dst_key) = self_signed(&dir, "dst", "127.0.0.1", 365, None);
    let (src, dst) = tokio::join!(
        Dovecot::start_with_certificate(DovecotOptions::default(), src_cert.clone(), src_key),
        Dovecot::start_with_certificate(DovecotOptions::default(), dst_cert.clone(), dst_key)
    );
    let (src, dst) = (src.unwrap(), dst.unwrap());
    let corpus = write_maildir(
        &src,
        "alice",
        &CorpusSpec {
            seed: 82,
            messages: 12,
            max_attachment: 0,
            size_factor: 0.3,
        },
    )
    .unwrap();
    let (src_fp, dst_fp) = (
        openssl_fingerprint(&src_cert),
        openssl_fingerprint(&dst_cert),
    );
    assert_ne!(src_fp, dst_fp);
    let job = |name: &str, src_trust: &str, dst_trust: &str| {
        let f = dir.join(format!("{name}.toml"));
        std::fs::write(
            &f,
            format!(
                "name = \"{name}\"\n{}{}",
                tls_side(
                    &dir,
                    "source",
                    src.imaps_port(),
                    src.password("alice").unwrap(),
                    src_trust
                ),
                tls_side(
                    &dir,
                    "destination",
                    dst.imaps_port(),
                    dst.password("alice").unwrap(),
                    dst_trust
                ),
            ),
        )
        .unwrap();
        f
    };
    let mut d = daemon("imap");
    d.start().await;

    // Nothing trusted yet: both refused, and each row carries its certificate's fingerprint.
    let untrusted = job("untrusted", "", "");
    let (checks, ok) = json_test(&d, &untrusted);
    assert!(!ok, "{checks:?}");
    for (check, fp) in checks.iter().zip([&src_fp, &dst_fp]) {
        assert_eq!(check["ok"], false, "{check}");
        assert_eq!(check["tls_fingerprint"], fp.as_str(), "{check}");
        let message = check["message"].as_str().unwrap();
        assert!(
            message.contains("is self-signed") && message.contains("tls_fingerprint"),
            "{message}"
        );
    }
    // The plain output gives the line to paste into the job file.
    let out = d.ctl(&["test", untrusted.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    for fp in [&src_fp, &dst_fp] {
        assert!(
            text.contains(&format!("certificate: tls_fingerprint = \"{fp}\"")),
            "{text}"
        );
    }

    // Both pinned with the fingerprints printed: the check passes and prints them again.
    let pinned = job("pinned", &pin(&src_fp), &pin(&dst_fp));
    let (checks, ok) = json_test(&d, &pinned);
    assert!(ok, "{checks:?}\n{}", d.log());
    for (check, fp) in checks.iter().zip([&src_fp, &dst_fp]) {
        assert_eq!(check["ok"], true, "{check}");
        assert_eq!(check["tls_fingerprint"], fp.as_str(), "{check}");
    }
    // And the copy with those pins arrives whole.
    let run = crate::common::beds::migrate(&pinned, &dir.join("store"));
    assert!(run.success, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        run.counts(),
        (corpus.total_messages() as u64, 0),
        "{}",
        run.stdout
    );

    // The destination pinned to the source's certificate: refused, naming the setting.
    let wrong = job("wrong", &pin(&src_fp), &pin(&src_fp));
    let (checks, ok) = json_test(&d, &wrong);
    assert!(!ok);
    assert_eq!(checks[0]["ok"], true, "{checks:?}");
    assert_eq!(checks[1]["ok"], false, "{checks:?}");
    assert_eq!(checks[1]["tls_fingerprint"], dst_fp.as_str());
    let message = checks[1]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "has the fingerprint {dst_fp}, not the pinned {src_fp}"
        )) && message.contains("tls_fingerprint = "),
        "{message}"
    );
    let run = crate::common::beds::migrate(&wrong, &dir.join("store-wrong"));
    assert!(!run.success, "{}", run.stdout);
    assert!(
        run.stderr.contains("not the pinned") || run.stdout.contains("not the pinned"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

/// CardDAV endpoints take `tls_fingerprint` as IMAP ones do (and a self-signed certificate
/// named as `ca_file`): `migratectl test` prints the fingerprint of each Radicale's
/// self-signed certificate exactly as openssl gives it, a contacts job with those pins copies
/// every contact, and a wrong pin is refused in words that name the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carddav_endpoints_pin_a_self_signed_certificate_and_migratectl_test_prints_it() {
    use testbed::radicale::{Radicale, RadicaleOptions};
    let dir = work_dir("carddav-test");
    let (src_cert, src_key) = self_signed(&dir, "src", "127.0.0.1", 365, None);
    let (dst_cert, dst_key) = self_signed(&dir, "dst", "127.0.0.1", 365, None);
    let src = Radicale::start(RadicaleOptions {
        tls: Some((src_cert.clone(), src_key)),
        ..RadicaleOptions::default()
    })
    .unwrap();
    let dst = Radicale::start(RadicaleOptions {
        tls: Some((dst_cert.clone(), dst_key)),
        ..RadicaleOptions::default()
    })
    .unwrap();
    assert!(src.base_url().starts_with("https://"));
    let corpus = testbed::vcard::contacts_corpus(20, 5);
    src.seed("alice", &[("family", "Familie", &corpus)]);
    let (src_fp, dst_fp) = (
        openssl_fingerprint(&src_cert),
        openssl_fingerprint(&dst_cert),
    );
    let job = |name: &str, src_trust: &str, dst_trust: &str| {
        let f = dir.join(format!("{name}.toml"));
        let source = tls_side(&dir, "source", src.port(), src.password("alice"), src_trust)
            .replacen("[source]\n", "[source]\nplugin = \"carddav\"\n", 1);
        std::fs::write(
            &f,
            format!(
                "name = \"{name}\"\n{source}{}",
                tls_side(
                    &dir,
                    "destination",
                    dst.port(),
                    dst.password("alice"),
                    dst_trust
                ),
            ),
        )
        .unwrap();
        f
    };
    let mut d = daemon("carddav");
    d.start().await;

    // Nothing trusted: refused in plain words, with each certificate's fingerprint.
    let (checks, ok) = json_test(&d, &job("untrusted", "", ""));
    assert!(!ok, "{checks:?}");
    for (check, fp) in checks.iter().zip([&src_fp, &dst_fp]) {
        assert_eq!(check["ok"], false, "{check}");
        assert_eq!(check["tls_fingerprint"], fp.as_str(), "{check}");
        let message = check["message"].as_str().unwrap();
        assert!(
            message.contains("is self-signed") && message.contains("tls_fingerprint"),
            "{message}"
        );
        assert!(!message.contains("Other("), "{message}");
    }

    // The source pinned, the destination's own certificate as ca_file: both trusted.
    let trusted = job(
        "trusted",
        &pin(&src_fp),
        &format!("ca_file = \"{}\"", dst_cert.display()),
    );
    let (checks, ok) = json_test(&d, &trusted);
    assert!(ok, "{checks:?}\n{}", d.log());
    for (check, fp) in checks.iter().zip([&src_fp, &dst_fp]) {
        assert_eq!(check["ok"], true, "{check}");
        assert_eq!(check["tls_fingerprint"], fp.as_str(), "{check}");
    }
    let text = stdout(&d.ctl(&["test", trusted.to_str().unwrap()]));
    assert!(
        text.contains(&format!("certificate: tls_fingerprint = \"{src_fp}\"")),
        "{text}"
    );

    // Both pinned: the contacts job copies every contact.
    let pinned = job("pinned", &pin(&src_fp), &pin(&dst_fp));
    let id = stdout(&d.ctl(&["create", pinned.to_str().unwrap()]));
    let done = d
        .wait_until(&id, "the contacts job to finish", |s| {
            s.status.is_some_and(migrated_core::JobStatus::is_finished)
        })
        .await;
    assert_eq!(
        done.status,
        Some(migrated_core::JobStatus::Completed),
        "{done:?}\n{}",
        d.log()
    );
    assert_eq!(dst.count("alice"), corpus.len());

    // The destination pinned to the source's certificate: refused, naming the setting.
    let (checks, ok) = json_test(&d, &job("wrong", &pin(&src_fp), &pin(&src_fp)));
    assert!(!ok);
    assert_eq!(checks[0]["ok"], true, "{checks:?}");
    assert_eq!(checks[1]["ok"], false, "{checks:?}");
    assert_eq!(checks[1]["tls_fingerprint"], dst_fp.as_str());
    let message = checks[1]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "has the fingerprint {dst_fp}, not the pinned {src_fp}"
        )) && message.contains("tls_fingerprint = "),
        "{message}"
    );
    // A fingerprint that is not one is said so, naming the field.
    let garbled = job("garbled", "tls_fingerprint = \"AB:CD\"", "");
    let out = d.ctl(&["test", garbled.to_str().unwrap()]);
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("tls_fingerprint") && text.contains("\"sha256:\""),
        "{text}"
    );
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}
