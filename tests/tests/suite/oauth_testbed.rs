//! The OAuth 2 test bed on its own, without the daemon: each grant of the local authorization
//! server works and fails as RFC 6749/7523/8628 and the providers document, introspection and
//! revocation answer as RFC 7662/7009 say, a real Dovecot (oauth2 passdb) accepts a fresh token
//! over XOAUTH2 and OAUTHBEARER and refuses it once expired or revoked, and the Gmail emulator
//! does the same in-process. Plain ureq and raw TCP only.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use testbed::gmail::{
    AUTH_FAILED, GmailEmulator, GmailOptions, TOKEN_EXPIRED_BYE, TOKEN_FAILURE_JSON, sample_mailbox,
};
use testbed::oauth::{
    AppAccess, DEVICE_CODE, GMAIL_SCOPE, Grant, JWT_BEARER, OAuthOptions, OAuthServer,
    OUTLOOK_APP_SCOPE, ServiceAccountKey, ServiceAccountOptions, basic_authorization,
};
use testbed::{Dovecot, DovecotOAuth2, DovecotOptions};

const CLIENT: &str = "migrated-test-client";
const SECRET: &str = "client-secret-1";

fn server(lifetime_secs: u64) -> OAuthServer {
    let s = OAuthServer::start(OAuthOptions {
        access_token_lifetime: Duration::from_secs(lifetime_secs),
        ..OAuthOptions::default()
    })
    .expect("the OAuth test server starts");
    s.register_client(CLIENT, SECRET);
    s
}

/// POSTs a form; returns the status and the JSON reply.
fn post(url: &str, form: &[(&str, &str)], authorization: Option<&str>) -> (u16, Value) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent();
    let mut req = agent.post(url);
    if let Some(a) = authorization {
        req = req.header("Authorization", a);
    }
    let mut resp = req
        .send_form(form.iter().copied())
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text:?}"));
    (status, value)
}

fn refresh(s: &OAuthServer, rt: &str) -> (u16, Value) {
    post(
        &s.token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
        ],
        None,
    )
}

/// An access token from a refresh, asserting success.
fn access_token(s: &OAuthServer, rt: &str) -> String {
    let (status, v) = refresh(s, rt);
    assert_eq!(status, 200, "{v}");
    v["access_token"].as_str().unwrap().to_owned()
}

fn assert_error(reply: &(u16, Value), status: u16, error: &str) {
    assert_eq!(reply.0, status, "{}", reply.1);
    assert_eq!(reply.1["error"], error, "{}", reply.1);
    assert!(
        reply.1["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{}",
        reply.1
    );
}

fn introspect(s: &OAuthServer, token: &str) -> Value {
    let (status, v) = post(&s.introspection_url(), &[("token", token)], None);
    assert_eq!(status, 200, "{v}");
    v
}

/// Sleeps until the token has expired.
fn sleep_past(expires_at: SystemTime) {
    let left = expires_at
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    std::thread::sleep(left + Duration::from_millis(100));
}

fn temp_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "oauth-testbed-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn refresh_grant_issues_tokens_and_refuses_bad_clients_and_revoked_tokens() {
    let s = server(60);
    s.register_client("other-client", "other-secret");
    let rt = s.issue_refresh_token(CLIENT, "alice@example.org", GMAIL_SCOPE);

    // Client authentication in the body.
    let (status, v) = refresh(&s, &rt);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 60);
    assert_eq!(v["scope"], GMAIL_SCOPE);
    assert!(v.get("refresh_token").is_none(), "{v}");
    let at = v["access_token"].as_str().unwrap();
    let info = s.validate(at).expect("a fresh token is valid");
    assert_eq!(info.user.as_deref(), Some("alice@example.org"));
    assert!(!info.app);
    assert_eq!(info.grant, Grant::RefreshToken);
    assert_eq!(info.client_id, CLIENT);

    // HTTP Basic (RFC 6749 §2.3.1).
    let basic = basic_authorization(CLIENT, SECRET);
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt.as_str()),
    ];
    let (status, v) = post(&s.token_url(), &form, Some(&basic));
    assert_eq!(status, 200, "{v}");
    assert_ne!(v["access_token"].as_str().unwrap(), at, "tokens are random");

    // Bad client authentication: 401 invalid_client (with a Basic challenge when Basic was used).
    let wrong = basic_authorization(CLIENT, "wrong");
    assert_error(
        &post(&s.token_url(), &form, Some(&wrong)),
        401,
        "invalid_client",
    );
    let body_wrong = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt.as_str()),
        ("client_id", CLIENT),
        ("client_secret", "wrong"),
    ];
    assert_error(
        &post(&s.token_url(), &body_wrong, None),
        401,
        "invalid_client",
    );
    assert_error(
        &post(
            &s.token_url(),
            &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
            None,
        ),
        401,
        "invalid_client",
    );
    // Another client's refresh token, an unknown one, a missing one, an unknown grant.
    let other = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt.as_str()),
        ("client_id", "other-client"),
        ("client_secret", "other-secret"),
    ];
    assert_error(&post(&s.token_url(), &other, None), 400, "invalid_grant");
    assert_error(&refresh(&s, "1//rt-unknown"), 400, "invalid_grant");
    assert_error(&refresh(&s, ""), 400, "invalid_request");
    assert_error(
        &post(
            &s.token_url(),
            &[("grant_type", "password"), ("username", "alice")],
            None,
        ),
        400,
        "unsupported_grant_type",
    );

    // Introspection (RFC 7662).
    let v = introspect(&s, at);
    assert_eq!(v["active"], true, "{v}");
    assert_eq!(v["username"], "alice@example.org");
    assert_eq!(v["scope"], GMAIL_SCOPE);
    assert_eq!(v["client_id"], CLIENT);
    let exp = v["exp"].as_u64().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(exp > now && exp <= now + 61, "exp {exp}, now {now}");
    assert_eq!(introspect(&s, "ya29.unknown"), json!({"active": false}));
    assert_eq!(
        introspect(&s, &rt),
        json!({"active": false}),
        "refresh tokens are not access tokens"
    );

    // A refresh token revoked by the test: refreshing fails, tokens already out stay valid.
    assert!(s.revoke_refresh_token(&rt));
    assert_error(&refresh(&s, &rt), 400, "invalid_grant");
    assert!(s.validate(at).is_some());
    // Forced expiry.
    s.expire_access_tokens();
    assert!(s.validate(at).is_none());
    assert_eq!(introspect(&s, at), json!({"active": false}));

    // Revocation endpoint (RFC 7009): the refresh token and the tokens obtained with it.
    let rt2 = s.issue_refresh_token(CLIENT, "bob@example.org", GMAIL_SCOPE);
    let at2 = access_token(&s, &rt2);
    assert!(s.validate(&at2).is_some());
    let (status, _) = post(
        &s.revocation_url(),
        &[("token", &rt2), ("token_type_hint", "refresh_token")],
        Some(&basic),
    );
    assert_eq!(status, 200);
    assert!(
        s.validate(&at2).is_none(),
        "revoking the grant revokes its tokens"
    );
    assert_error(&refresh(&s, &rt2), 400, "invalid_grant");
    // Unknown tokens: 200 all the same (RFC 7009 §2.2).
    let (status, _) = post(&s.revocation_url(), &[("token", "nope")], Some(&basic));
    assert_eq!(status, 200);

    let c = s.counters();
    assert_eq!(c.refresh_grants, 3);
    assert_eq!(c.access_tokens_issued(), 3);
    assert_eq!(c.refused_token_requests, 9);
    assert_eq!(c.introspections, 4);
    assert_eq!(c.inactive_introspections, 3);
    assert_eq!(c.failed_validations, 2);
}

#[test]
fn the_endpoints_take_forms_by_post_only_and_answer_errors_in_json() {
    let s = server(60);
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut resp = agent.get(&s.token_url()).call().unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    let v: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(v["error"], "invalid_request");
    assert_eq!(
        post(&format!("{}/authorize", s.base_url()), &[], None).0,
        404
    );
    // RFC 6749 §3.2: parameters must not appear twice.
    assert_error(
        &post(
            &s.token_url(),
            &[
                ("grant_type", "refresh_token"),
                ("grant_type", "client_credentials"),
            ],
            None,
        ),
        400,
        "invalid_request",
    );
}

#[test]
fn refresh_tokens_rotate_when_asked_and_the_old_one_stays_valid() {
    let s = OAuthServer::start(OAuthOptions {
        rotate_refresh_tokens: true,
        ..OAuthOptions::default()
    })
    .unwrap();
    s.register_client(CLIENT, SECRET);
    let rt = s.issue_refresh_token(CLIENT, "carol@example.org", "offline_access");
    let (status, v) = refresh(&s, &rt);
    assert_eq!(status, 200, "{v}");
    let rt2 = v["refresh_token"].as_str().expect("a new refresh token");
    assert_ne!(rt2, rt);
    assert_eq!(refresh(&s, rt2).0, 200);
    assert_eq!(refresh(&s, &rt).0, 200);
}

/// A JWT assertion signed with the key file's private key, as a Google client library makes it.
fn assertion(key: &ServiceAccountKey, claims: &Value) -> String {
    let file: Value = serde_json::from_slice(&std::fs::read(&key.path).unwrap()).unwrap();
    let pem = file["private_key"].as_str().unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(file["private_key_id"].as_str().unwrap().to_owned());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(pem.as_bytes()).expect("the key file's PKCS#8 key"),
    )
    .unwrap()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn jwt_grant(s: &OAuthServer, assertion: &str) -> (u16, Value) {
    post(
        &s.token_url(),
        &[("grant_type", JWT_BEARER), ("assertion", assertion)],
        None,
    )
}

#[test]
fn jwt_bearer_grant_verifies_service_account_assertions() {
    let s = server(30);
    let dir = temp_dir();
    let email = "migrator@project-1.iam.gserviceaccount.com";
    let key = s
        .register_service_account(
            &dir,
            ServiceAccountOptions {
                users: Some(vec!["ann@example.org".into(), "ben@example.org".into()]),
                ..ServiceAccountOptions::gmail(email)
            },
        )
        .unwrap();
    let other = s
        .register_service_account(
            &dir,
            ServiceAccountOptions::gmail("other@project-1.iam.gserviceaccount.com"),
        )
        .unwrap();

    // The key file as Google's console writes it, readable by its owner only.
    let mode = std::fs::metadata(&key.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let file: Value = serde_json::from_slice(&std::fs::read(&key.path).unwrap()).unwrap();
    assert_eq!(file["type"], "service_account");
    assert_eq!(file["client_email"], email);
    assert_eq!(file["token_uri"], s.token_url());
    assert_eq!(file["client_id"], key.client_id);
    assert_eq!(file["private_key_id"], key.private_key_id);
    assert!(
        file["private_key"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----\n")
    );

    let now = now_secs();
    let claims = |sub: &str| {
        json!({"iss": email, "sub": sub, "scope": GMAIL_SCOPE, "aud": s.token_url(),
               "iat": now, "exp": now + 3600})
    };
    // One key, a token per user.
    for user in ["ann@example.org", "ben@example.org"] {
        let (status, v) = jwt_grant(&s, &assertion(&key, &claims(user)));
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["token_type"], "Bearer");
        assert_eq!(v["expires_in"], 30);
        assert!(v.get("refresh_token").is_none());
        let info = s.validate(v["access_token"].as_str().unwrap()).unwrap();
        assert_eq!(info.user.as_deref(), Some(user));
        assert_eq!(info.grant, Grant::JwtBearer);
        assert_eq!(info.scope, GMAIL_SCOPE);
    }

    let refused = |c: Value, error: &str| {
        assert_error(&jwt_grant(&s, &assertion(&key, &c)), 400, error);
    };
    let mut c = claims("ann@example.org");
    c["aud"] = json!("https://oauth2.googleapis.com/token");
    refused(c, "invalid_grant");
    let mut c = claims("ann@example.org");
    c["exp"] = json!(now + 3601);
    refused(c, "invalid_grant");
    let mut c = claims("ann@example.org");
    c["iat"] = json!(now - 7200);
    c["exp"] = json!(now - 3600);
    refused(c, "invalid_grant");
    refused(claims("eve@example.org"), "invalid_grant");
    let mut c = claims("ann@example.org");
    c["scope"] = json!("https://www.googleapis.com/auth/drive");
    refused(c, "unauthorized_client");
    let mut c = claims("ann@example.org");
    c.as_object_mut().unwrap().remove("scope");
    refused(c, "invalid_scope");
    // Signed with another account's key, or naming an unknown account.
    assert_error(
        &jwt_grant(&s, &assertion(&other, &claims("ann@example.org"))),
        400,
        "invalid_grant",
    );
    let mut c = claims("ann@example.org");
    c["iss"] = json!("nobody@project-1.iam.gserviceaccount.com");
    refused(c, "invalid_grant");
    // Not RS256.
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("ann@example.org"),
        &EncodingKey::from_secret(b"guess"),
    )
    .unwrap();
    assert_error(&jwt_grant(&s, &hs), 400, "invalid_grant");
    assert_error(&jwt_grant(&s, "not.a.jwt"), 400, "invalid_grant");

    assert_eq!(s.counters().jwt_bearer_grants, 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn client_credentials_grant_gives_application_tokens_for_granted_mailboxes() {
    let s = server(30);
    s.register_client("m365-app", "app-secret");
    s.grant_app_access(
        "m365-app",
        AppAccess::Mailboxes(vec!["ann@example.org".into()]),
    );
    let form = |scope: &'static str| {
        [
            ("grant_type", "client_credentials"),
            ("scope", scope),
            ("client_id", "m365-app"),
            ("client_secret", "app-secret"),
        ]
    };
    let (status, v) = post(&s.token_url(), &form(OUTLOOK_APP_SCOPE), None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 30);
    assert!(v.get("refresh_token").is_none(), "{v}");
    let at = v["access_token"].as_str().unwrap();
    let info = s.validate(at).unwrap();
    assert!(info.app);
    assert_eq!(info.user, None);
    assert_eq!(info.grant, Grant::ClientCredentials);
    assert!(s.authorize(at, "ANN@example.org").is_some());
    assert!(s.authorize(at, "ben@example.org").is_none());
    let v = introspect(&s, at);
    assert_eq!(v["active"], true);
    assert_eq!(v["username"], "m365-app");
    assert!(v["scope"].as_str().unwrap().contains("IMAP.AccessAsApp"));

    // A user token never opens another mailbox; an app without a grant opens none.
    let rt = s.issue_refresh_token(CLIENT, "ben@example.org", OUTLOOK_APP_SCOPE);
    let user_at = access_token(&s, &rt);
    assert!(s.authorize(&user_at, "ben@example.org").is_some());
    assert!(s.authorize(&user_at, "ann@example.org").is_none());
    let (status, v) = post(
        &s.token_url(),
        &[
            ("grant_type", "client_credentials"),
            ("scope", OUTLOOK_APP_SCOPE),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
        ],
        None,
    );
    assert_eq!(status, 200, "{v}");
    assert!(
        s.authorize(v["access_token"].as_str().unwrap(), "ann@example.org")
            .is_none()
    );

    assert_error(
        &post(
            &s.token_url(),
            &form("https://outlook.office365.com/IMAP.AccessAsUser.All"),
            None,
        ),
        400,
        "invalid_scope",
    );
    let mut bad = form(OUTLOOK_APP_SCOPE);
    bad[3].1 = "wrong";
    assert_error(&post(&s.token_url(), &bad, None), 401, "invalid_client");
    assert_eq!(s.counters().client_credentials_grants, 2);
}

fn poll(s: &OAuthServer, device_code: &str) -> (u16, Value) {
    post(
        &s.token_url(),
        &[
            ("grant_type", DEVICE_CODE),
            ("device_code", device_code),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
        ],
        None,
    )
}

fn device_authorization(s: &OAuthServer) -> Value {
    let (status, v) = post(
        &s.device_authorization_url(),
        &[
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("scope", GMAIL_SCOPE),
        ],
        None,
    );
    assert_eq!(status, 200, "{v}");
    v
}

#[test]
fn device_grant_polls_as_rfc_8628_says() {
    let s = server(30);
    let interval = Duration::from_secs(1);
    let v = device_authorization(&s);
    assert_eq!(v["interval"], 1);
    assert_eq!(v["expires_in"], 600);
    assert_eq!(v["verification_uri"], s.verification_url());
    let user_code = v["user_code"].as_str().unwrap().to_owned();
    assert_eq!(user_code.len(), 9, "XXXX-XXXX: {user_code}");
    assert_eq!(s.pending_user_codes().len(), 1);
    let dc = v["device_code"].as_str().unwrap().to_owned();

    assert_error(&poll(&s, &dc), 400, "authorization_pending");
    assert_error(&poll(&s, &dc), 400, "slow_down");
    std::thread::sleep(interval);
    assert_error(&poll(&s, &dc), 400, "authorization_pending");
    // The user types the code (any case, without the dash) and approves.
    assert!(s.approve_device(
        &user_code.replace('-', "").to_lowercase(),
        "dana@example.org"
    ));
    assert!(s.pending_user_codes().is_empty());
    std::thread::sleep(interval);
    let (status, v) = poll(&s, &dc);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    let info = s.validate(v["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(info.user.as_deref(), Some("dana@example.org"));
    assert_eq!(info.grant, Grant::DeviceCode);
    let rt = v["refresh_token"].as_str().unwrap();
    assert_eq!(
        refresh(&s, rt).0,
        200,
        "the device grant's refresh token works"
    );
    std::thread::sleep(interval);
    assert_error(&poll(&s, &dc), 400, "invalid_grant");

    // Denied.
    let v = device_authorization(&s);
    assert!(s.deny_device(v["user_code"].as_str().unwrap()));
    assert_error(
        &poll(&s, v["device_code"].as_str().unwrap()),
        400,
        "access_denied",
    );
    // Expired.
    s.set_device_code_lifetime(Duration::from_secs(1));
    let v = device_authorization(&s);
    assert_eq!(v["expires_in"], 1);
    std::thread::sleep(Duration::from_millis(1100));
    assert_error(
        &poll(&s, v["device_code"].as_str().unwrap()),
        400,
        "expired_token",
    );
    assert!(!s.approve_device(v["user_code"].as_str().unwrap(), "too-late"));
    // Unknown client.
    assert_error(
        &post(
            &s.device_authorization_url(),
            &[("client_id", "nobody"), ("scope", GMAIL_SCOPE)],
            None,
        ),
        401,
        "invalid_client",
    );
    // A public client (no secret, as a command-line tool registered with Microsoft).
    s.register_public_client("cli");
    s.set_device_code_lifetime(Duration::from_secs(600));
    let (status, v) = post(
        &s.device_authorization_url(),
        &[("client_id", "cli"), ("scope", "offline_access")],
        None,
    );
    assert_eq!(status, 200, "{v}");
    assert!(s.approve_device(v["user_code"].as_str().unwrap(), "erin@example.org"));
    let (status, v) = post(
        &s.token_url(),
        &[
            ("grant_type", DEVICE_CODE),
            ("device_code", v["device_code"].as_str().unwrap()),
            ("client_id", "cli"),
        ],
        None,
    );
    assert_eq!(status, 200, "{v}");
    let (status, v) = post(
        &s.token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", v["refresh_token"].as_str().unwrap()),
            ("client_id", "cli"),
        ],
        None,
    );
    assert_eq!(status, 200, "{v}");
    let c = s.counters();
    assert_eq!(c.device_code_grants, 2);
    assert_eq!(c.device_authorizations, 4);
    assert_eq!(c.slow_downs, 1);
}

/// A blocking IMAP connection that shows raw lines.
struct RawImap {
    rd: BufReader<TcpStream>,
    wr: TcpStream,
    n: u32,
}

/// How an AUTHENTICATE ended: the decoded challenge the server sent (if any) and the tagged line.
#[derive(Debug)]
struct AuthOutcome {
    challenge: Option<String>,
    done: String,
}

impl RawImap {
    fn connect(port: u16) -> RawImap {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let mut c = RawImap {
            rd: BufReader::new(stream.try_clone().unwrap()),
            wr: stream,
            n: 0,
        };
        let greeting = c.line();
        assert!(greeting.starts_with("* OK"), "{greeting}");
        c
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.rd.read_line(&mut l).unwrap();
        l.trim_end().to_owned()
    }

    fn send(&mut self, text: &str) {
        self.wr.write_all(format!("{text}\r\n").as_bytes()).unwrap();
    }

    /// Sends a command; returns the tagged reply, skipping untagged lines.
    fn cmd(&mut self, command: &str) -> String {
        self.n += 1;
        let tag = format!("t{}", self.n);
        self.send(&format!("{tag} {command}"));
        loop {
            let l = self.line();
            if l.starts_with(&format!("{tag} ")) {
                return l;
            }
            assert!(!l.is_empty(), "connection closed waiting for {tag}");
        }
    }

    /// AUTHENTICATE with an initial response; a challenge gets the mechanism's dummy answer.
    fn authenticate(&mut self, mechanism: &str, initial: &str) -> AuthOutcome {
        self.n += 1;
        let tag = format!("t{}", self.n);
        self.send(&format!("{tag} AUTHENTICATE {mechanism} {}", b64(initial)));
        let mut challenge = None;
        loop {
            let l = self.line();
            if let Some(c) = l.strip_prefix("+ ") {
                challenge = Some(String::from_utf8(unb64(c)).unwrap());
                self.send(if mechanism == "OAUTHBEARER" {
                    "AQ=="
                } else {
                    ""
                });
            } else if l.starts_with(&format!("{tag} ")) {
                return AuthOutcome { challenge, done: l };
            } else {
                assert!(!l.is_empty(), "connection closed in AUTHENTICATE");
            }
        }
    }
}

fn xoauth2(user: &str, token: &str) -> String {
    format!("user={user}\x01auth=Bearer {token}\x01\x01")
}

fn oauthbearer(user: &str, token: &str) -> String {
    format!("n,a={user},\x01host=127.0.0.1\x01port=143\x01auth=Bearer {token}\x01\x01")
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64(s: &str) -> String {
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unb64(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = B64.iter().position(|&x| x == c).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn assert_accepted(o: &AuthOutcome) {
    assert!(o.challenge.is_none(), "{o:?}");
    assert!(o.done.contains(" OK "), "{o:?}");
}

fn dovecot(s: &OAuthServer, app: Option<AppAccess>) -> Dovecot {
    let mut oauth2 = DovecotOAuth2::new(s);
    if let Some(a) = app {
        oauth2 = oauth2.with_app_access(a);
    }
    Dovecot::start_blocking(DovecotOptions {
        users: vec![
            ("alice".into(), "alice-pw".into()),
            ("bob".into(), "bob-pw".into()),
        ],
        oauth2: Some(oauth2),
        ..DovecotOptions::default()
    })
    .expect("Dovecot with the oauth2 passdb starts")
}

/// Tokens that must expire soon live this long; the others an hour.
const SHORT: Duration = Duration::from_secs(3);

fn client_credentials(s: &OAuthServer, client: &str, secret: &str) -> String {
    let (status, v) = post(
        &s.token_url(),
        &[
            ("grant_type", "client_credentials"),
            ("scope", OUTLOOK_APP_SCOPE),
            ("client_id", client),
            ("client_secret", secret),
        ],
        None,
    );
    assert_eq!(status, 200, "{v}");
    v["access_token"].as_str().unwrap().to_owned()
}

#[test]
fn dovecot_accepts_live_tokens_and_refuses_expired_and_revoked_ones() {
    let s = server(3600);
    let dc = dovecot(&s, None);
    let rt = s.issue_refresh_token(CLIENT, "alice", GMAIL_SCOPE);

    // A short-lived token: accepted over both mechanisms, refused by both once expired (no
    // cache lets it pass).
    s.set_access_token_lifetime(SHORT);
    let short = access_token(&s, &rt);
    let expires_at = s.validate(&short).unwrap().expires_at;
    let before = s.counters().introspections;
    let mut c = RawImap::connect(dc.imap_port());
    assert_accepted(&c.authenticate("XOAUTH2", &xoauth2("alice", &short)));
    assert!(c.cmd("SELECT INBOX").contains(" OK "));
    let mut c = RawImap::connect(dc.imap_port());
    assert_accepted(&c.authenticate("OAUTHBEARER", &oauthbearer("alice", &short)));
    sleep_past(expires_at);
    let mut c = RawImap::connect(dc.imap_port());
    let o = c.authenticate("XOAUTH2", &xoauth2("alice", &short));
    assert!(o.done.contains(" NO [AUTHENTICATIONFAILED]"), "{o:?}");
    assert_eq!(
        o.challenge.as_deref(),
        Some(r#"{"status":"401","schemes":"bearer","scope":"mail"}"#)
    );
    let mut c = RawImap::connect(dc.imap_port());
    let o = c.authenticate("OAUTHBEARER", &oauthbearer("alice", &short));
    assert!(o.done.contains(" NO [AUTHENTICATIONFAILED]"), "{o:?}");
    assert_eq!(
        o.challenge.as_deref(),
        Some(r#"{"status":"invalid_token"}"#)
    );
    assert_eq!(
        s.counters().introspections - before,
        4,
        "every token login asked the introspection endpoint"
    );

    // Someone else's mailbox: refused with the 401 challenge.
    s.set_access_token_lifetime(Duration::from_secs(3600));
    let at = access_token(&s, &rt);
    let mut c = RawImap::connect(dc.imap_port());
    let o = c.authenticate("XOAUTH2", &xoauth2("bob", &at));
    assert!(o.done.contains(" NO [AUTHENTICATIONFAILED]"), "{o:?}");
    assert!(o.challenge.as_deref().unwrap().contains("\"401\""), "{o:?}");
    // Password logins still work; a password is not a token.
    let mut c = RawImap::connect(dc.imap_port());
    assert!(c.cmd("LOGIN alice alice-pw").contains(" OK "));
    let mut c = RawImap::connect(dc.imap_port());
    let o = c.authenticate("XOAUTH2", &xoauth2("alice", "alice-pw"));
    assert!(o.done.contains(" NO "), "{o:?}");

    // Once the grant is revoked (RFC 7009) its token is refused at once and no new one can be
    // had.
    let mut c = RawImap::connect(dc.imap_port());
    assert_accepted(&c.authenticate("XOAUTH2", &xoauth2("alice", &at)));
    let (status, _) = post(
        &s.revocation_url(),
        &[("token", &rt)],
        Some(&basic_authorization(CLIENT, SECRET)),
    );
    assert_eq!(status, 200);
    let mut c = RawImap::connect(dc.imap_port());
    let o = c.authenticate("XOAUTH2", &xoauth2("alice", &at));
    assert!(o.done.contains(" NO [AUTHENTICATIONFAILED]"), "{o:?}");
    assert_error(&refresh(&s, &rt), 400, "invalid_grant");
}

#[test]
fn dovecot_takes_application_tokens_for_the_mailboxes_it_lists() {
    let s = server(3600);
    let dc = dovecot(&s, Some(AppAccess::Mailboxes(vec!["alice".into()])));
    s.register_client("m365-app", "app-secret");

    s.set_access_token_lifetime(SHORT);
    let short = client_credentials(&s, "m365-app", "app-secret");
    let expires_at = s.validate(&short).unwrap().expires_at;
    let mut c = RawImap::connect(dc.imap_port());
    assert_accepted(&c.authenticate("XOAUTH2", &xoauth2("alice", &short)));
    assert!(c.cmd("SELECT INBOX").contains(" OK "));
    let mut c = RawImap::connect(dc.imap_port());
    assert_accepted(&c.authenticate("OAUTHBEARER", &oauthbearer("alice", &short)));
    sleep_past(expires_at);
    let mut c = RawImap::connect(dc.imap_port());
    let o = c.authenticate("XOAUTH2", &xoauth2("alice", &short));
    assert!(o.done.contains(" NO [AUTHENTICATIONFAILED]"), "{o:?}");

    s.set_access_token_lifetime(Duration::from_secs(3600));
    let app = client_credentials(&s, "m365-app", "app-secret");
    // Not a listed mailbox: refused, with the challenge (a refusal, not a temporary failure).
    let mut c = RawImap::connect(dc.imap_port());
    let o = c.authenticate("XOAUTH2", &xoauth2("bob", &app));
    assert!(o.done.contains(" NO [AUTHENTICATIONFAILED]"), "{o:?}");
    assert!(o.challenge.is_some(), "{o:?}");
    // A user token opens its own mailbox only, even with the application passdb there.
    let rt = s.issue_refresh_token(CLIENT, "bob", GMAIL_SCOPE);
    let user_at = access_token(&s, &rt);
    let mut c = RawImap::connect(dc.imap_port());
    assert_accepted(&c.authenticate("XOAUTH2", &xoauth2("bob", &user_at)));
    let mut c = RawImap::connect(dc.imap_port());
    let o = c.authenticate("XOAUTH2", &xoauth2("alice", &user_at));
    assert!(o.done.contains(" NO [AUTHENTICATIONFAILED]"), "{o:?}");
    assert!(o.challenge.is_some(), "{o:?}");
}

#[test]
fn dovecot_takes_service_account_tokens_for_each_domain_user() {
    let s = server(3600);
    let users = ["ann@example.org", "ben@example.org", "cat@example.org"];
    let dc = Dovecot::start_blocking(DovecotOptions {
        users: users
            .iter()
            .map(|u| ((*u).to_owned(), format!("{u}-pw")))
            .collect(),
        oauth2: Some(DovecotOAuth2::new(&s)),
        ..DovecotOptions::default()
    })
    .unwrap();
    let dir = temp_dir();
    let key = s
        .register_service_account(
            &dir,
            ServiceAccountOptions::gmail("batch@project-2.iam.gserviceaccount.com"),
        )
        .unwrap();
    let now = now_secs();
    let mut tokens = Vec::new();
    for user in users {
        let claims = json!({"iss": key.client_email, "sub": user, "scope": GMAIL_SCOPE,
                            "aud": s.token_url(), "iat": now, "exp": now + 3600});
        let (status, v) = jwt_grant(&s, &assertion(&key, &claims));
        assert_eq!(status, 200, "{v}");
        tokens.push(v["access_token"].as_str().unwrap().to_owned());
    }
    for (user, token) in users.iter().zip(&tokens) {
        let mut c = RawImap::connect(dc.imap_port());
        assert_accepted(&c.authenticate("XOAUTH2", &xoauth2(user, token)));
    }
    // Each token opens its own user's mailbox only.
    let mut c = RawImap::connect(dc.imap_port());
    let o = c.authenticate("XOAUTH2", &xoauth2(users[1], &tokens[0]));
    assert!(o.done.contains(" NO [AUTHENTICATIONFAILED]"), "{o:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

const GMAIL_USER: &str = "someone@gmail.example";

async fn emulator(s: &OAuthServer, bye: bool) -> GmailEmulator {
    GmailEmulator::start_with(
        GMAIL_USER,
        "app-password",
        sample_mailbox(3),
        GmailOptions {
            oauth: Some(s.handle()),
            bye_on_token_expiry: bye,
            ..GmailOptions::default()
        },
    )
    .await
    .unwrap()
}

/// A refresh grant over HTTP (blocking: call it off the runtime).
fn token_at(token_url: &str, rt: &str) -> String {
    let (status, v) = post(
        token_url,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
        ],
        None,
    );
    assert_eq!(status, 200, "{v}");
    v["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmail_emulator_checks_tokens_with_the_oauth_server() {
    let s = server(3600);
    let emu = emulator(&s, false).await;
    let port = emu.port();
    s.register_client("app", "app-secret");
    s.grant_app_access("app", AppAccess::Mailboxes(vec![GMAIL_USER.into()]));
    let handle = s.handle();
    let rt = s.issue_refresh_token(CLIENT, GMAIL_USER, GMAIL_SCOPE);
    let other_rt = s.issue_refresh_token(CLIENT, "other@gmail.example", GMAIL_SCOPE);
    let token_url = s.token_url();
    let s = tokio::task::spawn_blocking(move || {
        let at = token_at(&token_url, &rt);
        let mut c = RawImap::connect(port);
        assert!(c.cmd("CAPABILITY").contains(" OK "));
        assert_accepted(&c.authenticate("XOAUTH2", &xoauth2(GMAIL_USER, &at)));
        assert!(c.cmd("SELECT INBOX").contains(" OK "));
        let mut c = RawImap::connect(port);
        assert_accepted(&c.authenticate("OAUTHBEARER", &oauthbearer(GMAIL_USER, &at)));

        // Another user's token; the password as a token; another SASL user: Gmail's failure
        // exchange.
        let other = token_at(&token_url, &other_rt);
        for (mech, ir) in [
            ("XOAUTH2", xoauth2(GMAIL_USER, &other)),
            ("OAUTHBEARER", oauthbearer(GMAIL_USER, &other)),
            ("XOAUTH2", xoauth2(GMAIL_USER, "app-password")),
            ("XOAUTH2", xoauth2("other@gmail.example", &at)),
        ] {
            let mut c = RawImap::connect(port);
            let o = c.authenticate(mech, &ir);
            assert_eq!(o.challenge.as_deref(), Some(TOKEN_FAILURE_JSON), "{mech}");
            assert!(o.done.ends_with(&format!("NO {AUTH_FAILED}")), "{o:?}");
        }
        // An application token granted this mailbox.
        let app = client_credentials(&s, "app", "app-secret");
        let mut c = RawImap::connect(port);
        assert_accepted(&c.authenticate("XOAUTH2", &xoauth2(GMAIL_USER, &app)));

        // Expired.
        handle.set_access_token_lifetime(SHORT);
        let short = token_at(&token_url, &rt);
        let mut c = RawImap::connect(port);
        assert_accepted(&c.authenticate("XOAUTH2", &xoauth2(GMAIL_USER, &short)));
        sleep_past(handle.validate(&short).unwrap().expires_at);
        let mut c = RawImap::connect(port);
        let o = c.authenticate("XOAUTH2", &xoauth2(GMAIL_USER, &short));
        assert_eq!(o.challenge.as_deref(), Some(TOKEN_FAILURE_JSON));
        assert!(o.done.ends_with(&format!("NO {AUTH_FAILED}")), "{o:?}");
        // Password logins are still taken.
        let mut c = RawImap::connect(port);
        assert!(
            c.cmd(&format!("LOGIN {GMAIL_USER} app-password"))
                .contains(" OK ")
        );
        s
    })
    .await
    .unwrap();
    // Two other-user tokens, the password, the expired token (the wrong SASL user is refused
    // before the token is looked at).
    assert_eq!(s.counters().failed_validations, 4);
    drop(emu);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmail_emulator_ends_sessions_whose_token_expired_or_was_revoked() {
    let s = server(SHORT.as_secs());
    let emu = emulator(&s, true).await;
    let port = emu.port();
    let handle = s.handle();
    let rt = s.issue_refresh_token(CLIENT, GMAIL_USER, GMAIL_SCOPE);
    let token_url = s.token_url();
    tokio::task::spawn_blocking(move || {
        let at = token_at(&token_url, &rt);
        let expires_at = handle.validate(&at).unwrap().expires_at;
        let mut c = RawImap::connect(port);
        assert_accepted(&c.authenticate("XOAUTH2", &xoauth2(GMAIL_USER, &at)));
        assert!(c.cmd("NOOP").contains(" OK "));
        // Idle past the expiry: the server says BYE by itself and closes.
        sleep_past(expires_at);
        assert_eq!(c.line(), TOKEN_EXPIRED_BYE);
        assert_eq!(c.line(), "", "closed after BYE");

        // A revoked token ends its session at the next command.
        handle.set_access_token_lifetime(Duration::from_secs(3600));
        let at = token_at(&token_url, &rt);
        let mut c = RawImap::connect(port);
        assert_accepted(&c.authenticate("OAUTHBEARER", &oauthbearer(GMAIL_USER, &at)));
        assert!(c.cmd("NOOP").contains(" OK "));
        assert_eq!(handle.revoke_user(GMAIL_USER), 3);
        c.send("t9 NOOP");
        assert_eq!(c.line(), TOKEN_EXPIRED_BYE);
        // Password sessions are not affected.
        let mut c = RawImap::connect(port);
        assert!(
            c.cmd(&format!("LOGIN {GMAIL_USER} app-password"))
                .contains(" OK ")
        );
        assert!(c.cmd("NOOP").contains(" OK "));
    })
    .await
    .unwrap();
    drop(emu);
}

/// One request to the bearer CardDAV front: status, `WWW-Authenticate`, body.
fn dav(port: u16, method: &str, path: &str, authorization: Option<&str>) -> (u16, String, Vec<u8>) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .allow_non_standard_methods(true)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent();
    let mut b = ureq::http::Request::builder()
        .method(ureq::http::Method::from_bytes(method.as_bytes()).unwrap())
        .uri(format!("http://127.0.0.1:{port}{path}"))
        .header("Depth", "1");
    if let Some(a) = authorization {
        b = b.header("Authorization", a);
    }
    let resp = agent.run(b.body(()).unwrap()).unwrap();
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|h| h.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp.into_body().read_to_vec().unwrap();
    (status, challenge, body)
}

#[test]
fn the_bearer_carddav_front_forwards_live_carddav_tokens_and_refuses_others_as_google_does() {
    use testbed::bearer_dav::{BearerCounters, BearerDav, CARDDAV_SCOPE};
    use testbed::radicale::{Radicale, RadicaleOptions};
    let s = server(3600);
    let radicale = Radicale::start(RadicaleOptions::default()).unwrap();
    let contacts = testbed::vcard::contacts_corpus(3, 5);
    radicale.seed("alice", &[("friends", "Friends", &contacts)]);
    let front = BearerDav::start(&radicale, &s.introspection_url()).unwrap();
    let port = front.port();

    // No credentials, or Radicale's own Basic ones: a bearer challenge without an error.
    let (status, challenge, _) = dav(port, "PROPFIND", "/alice/", None);
    assert_eq!(
        (status, challenge.as_str()),
        (401, "Bearer realm=\"https://accounts.google.com/\"")
    );
    let basic = basic_authorization("alice", radicale.password("alice"));
    let (status, challenge, _) = dav(port, "PROPFIND", "/alice/", Some(&basic));
    assert_eq!(status, 401);
    assert!(!challenge.contains("error="), "{challenge}");

    // A live token with the CardDAV scope reads alice's books as Radicale has them.
    let rt = s.issue_refresh_token(CLIENT, "alice", CARDDAV_SCOPE);
    let token = access_token(&s, &rt);
    let bearer = format!("Bearer {token}");
    let (status, _, body) = dav(port, "PROPFIND", "/alice/", Some(&bearer));
    assert_eq!(status, 207, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("/alice/friends/"));
    let href = format!("/alice/friends/{}", contacts[0].href_name);
    let (status, _, body) = dav(port, "GET", &href, Some(&bearer));
    assert_eq!(status, 200);
    assert_eq!(body, radicale.get("alice", &href));

    // A token for mail only: 403 insufficient_scope.
    let mail_rt = s.issue_refresh_token(CLIENT, "alice", GMAIL_SCOPE);
    let mail = format!("Bearer {}", access_token(&s, &mail_rt));
    let (status, challenge, _) = dav(port, "PROPFIND", "/alice/", Some(&mail));
    assert_eq!(status, 403);
    assert!(
        challenge.contains("error=\"insufficient_scope\"") && challenge.contains(CARDDAV_SCOPE),
        "{challenge}"
    );

    // Once expired, and a token nobody issued: 401 invalid_token with Google's JSON.
    s.expire_access_tokens();
    let invalid = "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"";
    for auth in [bearer.as_str(), "Bearer ya29.not-issued-here"] {
        let (status, challenge, body) = dav(port, "PROPFIND", "/alice/", Some(auth));
        assert_eq!((status, challenge.as_str()), (401, invalid));
        let json: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["status"], "UNAUTHENTICATED", "{json}");
    }
    assert_eq!(
        front.counters(),
        BearerCounters {
            forwarded: 2,
            invalid_token: 2,
            no_token: 2,
            insufficient_scope: 1,
        }
    );
}
