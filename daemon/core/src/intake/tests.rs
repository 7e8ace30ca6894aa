//! Unit tests of [`super`].

use super::*;
use std::collections::HashMap;

const JOB: &str = "name = \"alice\"\n[source]\nhost = \"old\"\nuser = \"alice\"\npassword_file = \"alice.pass\"\n[destination]\nhost = \"new\"\nuser = \"alice\"\npassword_file = \"/etc/migrated/secrets/new\"\n";

fn files(entries: &[(&str, &str)]) -> impl Fn(&Path) -> std::io::Result<String> {
    let map: HashMap<PathBuf, String> = entries
        .iter()
        .map(|(p, t)| (PathBuf::from(p), (*t).to_owned()))
        .collect();
    move |p: &Path| {
        map.get(p)
            .cloned()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    }
}

#[test]
fn password_files_are_read_once_relative_to_the_job_file() {
    let read = files(&[
        ("/etc/migrated/jobs.d/alice.pass", "old-secret\nignored\n"),
        ("/etc/migrated/secrets/new", "new-secret"),
    ]);
    let job = load(
        JOB,
        Path::new("/etc/migrated/jobs.d"),
        "job file a.toml",
        read,
    )
    .unwrap();
    let secret = |e: &crate::EndpointSpec| e.password.as_ref().map(|s| s.expose().to_owned());
    assert_eq!(secret(&job.spec.source).as_deref(), Some("old-secret"));
    assert_eq!(secret(&job.spec.destination).as_deref(), Some("new-secret"));
    assert!(job.spec.source.password_file.is_none());
    assert!(job.batch_csv.is_none());
}

#[test]
fn a_google_endpoint_without_a_host_gets_gmail_for_mail_and_the_carddav_api_for_contacts() {
    let job = |plugin: &str| {
        format!(
            "name = \"a\"\n[source]\n{plugin}user = \"alice@example.com\"\nauth = \"oauth2\"\n\
             [source.oauth2]\nprovider = \"google\"\nclient_id = \"c\"\nrefresh_token = \"r\"\n\
             [destination]\nhost = \"h\"\nuser = \"u\"\npassword = \"p\"\n"
        )
    };
    let read = || files(&[]);
    let mail = load(&job(""), Path::new("/j"), "job file a.toml", read()).unwrap();
    assert_eq!(mail.spec.source.host, "imap.gmail.com");
    let contacts = load(
        &job("plugin = \"carddav\"\n"),
        Path::new("/j"),
        "job file a.toml",
        read(),
    )
    .unwrap();
    assert_eq!(contacts.spec.source.host, "www.googleapis.com");
    // And the contacts scope is asked for, not Gmail's.
    let o = contacts.spec.source.oauth2.unwrap().for_contacts();
    assert_eq!(
        o.scope().as_deref(),
        Some(crate::oauth2::GOOGLE_CARDDAV_SCOPE)
    );
}

#[test]
fn an_unreadable_password_file_names_the_file_section_and_path() {
    let err = load(JOB, Path::new("/j"), "job file /j/a.toml", files(&[])).unwrap_err();
    assert_eq!(err.place, "job file /j/a.toml");
    assert!(
        err.message
            .starts_with("[source] password_file: cannot read /j/alice.pass:"),
        "{err}"
    );
}

#[test]
fn both_password_and_password_file_is_refused() {
    let text = JOB.replace(
        "password_file = \"alice.pass\"",
        "password_file = \"alice.pass\"\npassword = \"x\"",
    );
    let err = load(&text, Path::new("/j"), "job file a.toml", files(&[])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "job file a.toml: [source]: give password_file or password, not both"
    );
}

#[test]
fn toml_errors_keep_their_line() {
    let text = JOB.replacen("user = \"alice\"", "usr = \"alice\"", 1);
    let err = load(&text, Path::new("/j"), "job file a.toml", files(&[])).unwrap_err();
    assert!(err.message.contains("line 4"), "{err}");
    assert!(err.message.contains("usr"), "{err}");
}

#[test]
fn a_batch_template_names_its_csv_beside_it() {
    let text = "batch = \"staff.csv\"\nname = \"staff\"\n[source]\nhost = \"old\"\n[destination]\nhost = \"new\"\n";
    let job = load(text, Path::new("/etc/migrated/jobs.d"), "t", files(&[])).unwrap();
    assert_eq!(
        job.batch_csv.as_deref(),
        Some(Path::new("/etc/migrated/jobs.d/staff.csv"))
    );
    let err = load("batch = 3\n", Path::new("/"), "t", files(&[])).unwrap_err();
    assert_eq!(
        err.message,
        "batch: expected the name of a CSV file, found 3"
    );
}

const ADMIN_JOB: &str = "name = \"alice\"\n[source]\nhost = \"old\"\nuser = \"alice\"\nadmin_user = \"admin\"\nadmin_password_file = \"admin.pass\"\n[destination]\nhost = \"new\"\nuser = \"alice\"\nadmin_user = \"root\"\nadmin_login = \"separator\"\nadmin_password = \"inline\"\n";

#[test]
fn an_admin_password_file_is_read_like_a_password_file() {
    let read = files(&[("/j/admin.pass", "admin-secret\n")]);
    let job = load(ADMIN_JOB, Path::new("/j"), "job file a.toml", read).unwrap();
    let s = &job.spec.source;
    assert_eq!(s.admin_user.as_deref(), Some("admin"));
    assert_eq!(s.login_secret().map(Secret::expose), Some("admin-secret"));
    assert!(s.password.is_none() && s.admin_password_file.is_none());
    let d = &job.spec.destination;
    assert_eq!(d.admin_login, Some(crate::AdminLogin::Separator));
    assert_eq!(d.separator(), "*");
    assert_eq!(d.login_secret().map(Secret::expose), Some("inline"));
    assert_eq!(validate(&job.spec, "job \"alice\""), Ok(()));
}

#[test]
fn admin_settings_are_refused_with_their_file_line_and_field() {
    let read = || files(&[("/j/admin.pass", "a"), ("/j/alice.pass", "p")]);
    let check = |from: &str, to: &str| {
        assert!(ADMIN_JOB.contains(from), "{from}");
        let text = ADMIN_JOB.replacen(from, to, 1);
        load(&text, Path::new("/j"), "job file a.toml", read())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        check("admin_user = \"root\"\n", ""),
        "job file a.toml, line 11: [destination] admin_password: give admin_user too: the administrator who logs in on behalf of user"
    );
    assert_eq!(
        check(
            "admin_password_file = \"admin.pass\"\n",
            "admin_password_file = \"admin.pass\"\npassword_file = \"alice.pass\"\n"
        ),
        "job file a.toml, line 7: [source] password: with admin_user the administrator's password is sent (admin_password_file), never the user's: remove password, or remove admin_user to log in as the user"
    );
    assert!(
        check(
            "user = \"alice\"\nadmin_user = \"root\"",
            "user = \"a*b\"\nadmin_user = \"root\""
        )
        .starts_with(
            "job file a.toml, line 9: [destination] user: \"a*b\" contains the separator \"*\""
        )
    );
    assert!(
        check("admin_login = \"separator\"\n", "admin_separator = \" \"\nadmin_login = \"separator\"\n")
            .starts_with("job file a.toml, line 11: [destination] admin_separator: \" \" cannot separate two names")
    );
    assert_eq!(
        check("admin_login = \"separator\"\n", "admin_separator = \"%\"\n"),
        "job file a.toml, line 11: [destination] admin_separator: only admin_login = \"separator\" takes a separator"
    );
    assert!(
        check(
            "admin_user = \"admin\"\n",
            "admin_user = \"admin\"\nauth = \"xoauth2\"\n"
        )
        .starts_with("job file a.toml, line 6: [source] auth: \"xoauth2\" takes a token")
    );
    assert_eq!(
        check(
            "admin_password_file = \"admin.pass\"\n",
            "admin_password_file = \"admin.pass\"\nadmin_password = \"x\"\n"
        ),
        "job file a.toml: [source]: give admin_password_file or admin_password, not both"
    );
    // The control API's specs have no lines: the same words, without one.
    let mut spec = load(ADMIN_JOB, Path::new("/j"), "p", read()).unwrap().spec;
    spec.source.password = Some(Secret::new("p"));
    assert!(
        validate(&spec, "job \"alice\"")
            .unwrap_err()
            .to_string()
            .starts_with("job \"alice\": [source] password: with admin_user")
    );
}

#[test]
fn validation_names_the_section_and_field() {
    let read = files(&[("/j/alice.pass", "a"), ("/etc/migrated/secrets/new", "b")]);
    let spec = load(JOB, Path::new("/j"), "p", read).unwrap().spec;
    assert_eq!(validate(&spec, "job \"alice\""), Ok(()));
    let check = |f: &dyn Fn(&mut JobSpec)| {
        let mut s = spec.clone();
        f(&mut s);
        validate(&s, "job \"alice\"").unwrap_err().to_string()
    };
    assert_eq!(
        check(&|s| s.destination.user.clear()),
        "job \"alice\": [destination] user is missing"
    );
    assert_eq!(
        check(&|s| s.limits.max_mbps = Some(-1.0)),
        "job \"alice\": [limits] max_mbps: -1 is not a positive number of megabytes per second"
    );
    assert_eq!(
        check(&|s| s.filter.since = Some("2024-02-30".into())),
        "job \"alice\": [filter] since: \"2024-02-30\" is not a date; write a day as \"YYYY-MM-DD\" or an instant as \"YYYY-MM-DDTHH:MM:SSZ\" (UTC), in quotes"
    );
    assert!(
        check(&|s| {
            s.source_after_copy = crate::SourceAfterCopy::Expunge;
            s.sync_deletions = true;
        })
        .starts_with("job \"alice\": source_after_copy: cannot be used with sync_deletions")
    );
    assert!(
        check(&|s| {
            s.source_after_copy = crate::SourceAfterCopy::FlagDeleted;
            s.source.host = "imap.gmail.com".into();
        })
        .starts_with("job \"alice\": source_after_copy: refused for a Gmail source")
    );
    assert_eq!(
        check(&|s| s.notify = vec!["not an address".into()]),
        "job \"alice\": notify: \"not an address\" is not an e-mail address"
    );
    assert!(
        check(&|s| s.folders.exclude = vec!["(".into()]).starts_with("job \"alice\": [folders]: ")
    );
    assert!(
        check(&|s| s.tags = vec!["a b".into()]).starts_with("job \"alice\": tags: tag \"a b\"")
    );
    assert_eq!(
        check(&|s| s.name.clear()),
        "job \"alice\": the job needs a name (field `name`)"
    );
}
