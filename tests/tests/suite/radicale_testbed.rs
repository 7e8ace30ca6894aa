//! The CardDAV test bed against real Radicale servers: two private instances at once, a
//! 300-contact corpus seeded into three address books and read back the way a client does, and
//! the server behaviour the CardDAV client has to live with (discovery, authentication, request
//! size limit, re-serialization of vCards, sync-collection), asserted rather than assumed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use testbed::radicale::{
    NS_CARDDAV, NS_CS, NS_DAV, Radicale, RadicaleOptions, parse_multistatus, port_open,
};
use testbed::vcard::{
    Contact, big_contact, contacts_corpus, normalize, parse_line, photo_bytes, property_values,
    unescape, unfold,
};

const ALICE: &str = "alice";

fn options() -> RadicaleOptions {
    RadicaleOptions {
        users: vec![
            (ALICE.to_owned(), "alice-secret".to_owned()),
            ("bob".to_owned(), "bob-secret".to_owned()),
        ],
        max_content_length: None,
        tls: None,
    }
}

/// Starts two instances concurrently.
fn start_two() -> (Radicale, Radicale) {
    std::thread::scope(|s| {
        let a = s.spawn(|| Radicale::start(options()));
        let b = s.spawn(|| Radicale::start(options()));
        (
            a.join().expect("start thread").expect("start Radicale A"),
            b.join().expect("start thread").expect("start Radicale B"),
        )
    })
}

fn is_data_uri_photo(c: &Contact) -> bool {
    property_values(&c.vcard, "PHOTO")
        .iter()
        .any(|v| v.starts_with("data:"))
}

/// `normalize` without the PHOTO line.
fn normalize_without_photo(vcard: &[u8]) -> String {
    normalize(vcard)
        .lines()
        .filter(|l| !l.starts_with("PHOTO"))
        .map(|l| format!("{l}\n"))
        .collect()
}

const BOOKS: [(&str, &str, usize); 3] = [
    ("privat", "Privat", 120),
    ("work", "Arbeit – Kollegen", 100),
    ("family", "Familie & Freunde", 80),
];

#[test]
fn seed_snapshot_and_server_behaviour() {
    let t0 = Instant::now();
    let (a, b) = start_two();
    eprintln!(
        "two Radicales up in {:?} on ports {} and {}",
        t0.elapsed(),
        a.port(),
        b.port()
    );
    assert_ne!(a.port(), b.port());
    assert!(port_open(a.port()) && port_open(b.port()));
    assert_eq!(a.base_url(), format!("http://127.0.0.1:{}/", a.port()));
    assert_eq!(a.password(ALICE), "alice-secret");

    // --- Seed 300 contacts into three books on A.
    let corpus = contacts_corpus(300, 42);
    let mut chunks: Vec<&[Contact]> = Vec::new();
    let mut rest = corpus.as_slice();
    for (_, _, n) in BOOKS {
        let (head, tail) = rest.split_at(n);
        chunks.push(head);
        rest = tail;
    }
    assert!(rest.is_empty());
    let books: Vec<(&str, &str, &[Contact])> = BOOKS
        .iter()
        .zip(&chunks)
        .map(|((slug, name, _), chunk)| (*slug, *name, *chunk))
        .collect();
    let t = Instant::now();
    let etags = a.seed(ALICE, &books);
    eprintln!("seeded 300 contacts in {:?}", t.elapsed());
    assert_eq!(etags.values().map(BTreeMap::len).sum::<usize>(), 300);

    // --- Read back as a client would.
    let t = Instant::now();
    let snap = a.snapshot(ALICE);
    eprintln!("snapshot of 300 contacts in {:?}", t.elapsed());
    assert_eq!(a.count(ALICE), 300);
    let names: BTreeSet<&str> = snap.keys().map(String::as_str).collect();
    let expected_names: BTreeSet<&str> = BOOKS.iter().map(|(_, n, _)| *n).collect();
    assert_eq!(names, expected_names);
    for ((_, name, _), chunk) in BOOKS.iter().zip(&chunks) {
        let got: BTreeSet<&str> = snap[*name].keys().map(String::as_str).collect();
        let want: BTreeSet<&str> = chunk.iter().map(|c| c.uid.as_str()).collect();
        assert_eq!(got, want, "UIDs of book {name}");
    }
    // B is a separate server: nothing there.
    assert_eq!(b.count(ALICE), 0);
    assert!(b.snapshot(ALICE).is_empty());

    // --- What Radicale did to each vCard.
    let stored = |c: &Contact| -> &Vec<u8> {
        snap.values()
            .find_map(|book| book.get(&c.uid))
            .unwrap_or_else(|| panic!("{} not in the snapshot", c.uid))
    };
    let mut truncated_photos = 0;
    let mut intact_photos = 0;
    for c in &corpus {
        let copy = stored(c);
        // Never byte for byte: at least the property order changes (N before FN in the corpus,
        // vobject sorts FN first).
        assert_ne!(copy, &c.vcard, "{} came back byte for byte", c.uid);
        assert!(
            copy.ends_with(b"END:VCARD\r\n")
                && !copy.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'),
            "{}: not CRLF throughout",
            c.uid
        );
        if is_data_uri_photo(c) {
            // vobject keeps only the part before the first unescaped comma and escapes the ';'.
            assert_eq!(
                property_values(copy, "PHOTO"),
                vec!["data:image/png\\;base64".to_owned()],
                "{}: the 4.0 data-URI photo was expected to be truncated by Radicale 3.1.8",
                c.uid
            );
            assert_eq!(photo_bytes(copy), None);
            assert_eq!(
                normalize_without_photo(copy),
                normalize_without_photo(&c.vcard),
                "{}: differs beyond the photo",
                c.uid
            );
            truncated_photos += 1;
        } else {
            assert_eq!(
                normalize(copy),
                normalize(&c.vcard),
                "{}: differs after normalization\nsent:\n{}\nstored:\n{}",
                c.uid,
                c.text(),
                String::from_utf8_lossy(copy)
            );
            if let Some(sent) = photo_bytes(&c.vcard) {
                assert_eq!(photo_bytes(copy).as_ref(), Some(&sent), "{}: photo", c.uid);
                // Exactly the same base64 text, on one unfolded line.
                let raw_line = String::from_utf8_lossy(copy)
                    .split("\r\n")
                    .find(|l| l.starts_with("PHOTO"))
                    .map(str::to_owned)
                    .expect("PHOTO line");
                assert!(
                    raw_line.len() > 2000,
                    "PHOTO was folded: {}",
                    raw_line.len()
                );
                let sent_value = property_values(&c.vcard, "PHOTO").remove(0);
                assert!(raw_line.ends_with(&format!(":{sent_value}")));
                intact_photos += 1;
            }
        }
        // Other lines are re-folded at 75 octets.
        for line in String::from_utf8_lossy(copy).split("\r\n") {
            assert!(line.len() <= 75 || line.starts_with("PHOTO"), "{line:?}");
        }
    }
    assert_eq!(truncated_photos + intact_photos, 30);
    assert!(truncated_photos >= 10 && intact_photos >= 10);

    // Non-ASCII names survive, as UTF-8, in FN and N.
    for (name, n) in [
        ("Zoë Müller", "Müller;Zoë;;;"),
        ("山田太郎", "山田;太郎;;;"),
        ("Łukasz Żółć", "Żółć;Łukasz;;;"),
        ("Jürgen Groß", "Groß;Jürgen;;;"),
    ] {
        let c = corpus
            .iter()
            .find(|c| c.full_name() == name)
            .unwrap_or_else(|| panic!("{name} not in the corpus"));
        let copy = stored(c);
        let fns: Vec<String> = property_values(copy, "FN")
            .iter()
            .map(|v| unescape(v))
            .collect();
        assert_eq!(fns, vec![name.to_owned()]);
        assert_eq!(property_values(copy, "N"), vec![n.to_owned()]);
        let needle = format!("FN:{name}\r\n");
        assert!(
            copy.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "FN:{name} not in the stored bytes"
        );
    }
    // Groups keep their members; Apple's X- properties and grouped item1.X-ABLabel survive
    // (the name upper-cased).
    let group4 = corpus
        .iter()
        .find(|c| c.text().contains("KIND:group"))
        .expect("a 4.0 group");
    assert_eq!(
        property_values(stored(group4), "MEMBER"),
        property_values(&group4.vcard, "MEMBER")
    );
    assert!(!property_values(&group4.vcard, "MEMBER").is_empty());
    let group3 = corpus
        .iter()
        .find(|c| c.text().contains("X-ADDRESSBOOKSERVER-KIND:group"))
        .expect("a 3.0 group");
    assert_eq!(
        property_values(stored(group3), "X-ADDRESSBOOKSERVER-MEMBER"),
        property_values(&group3.vcard, "X-ADDRESSBOOKSERVER-MEMBER")
    );
    let labelled = corpus
        .iter()
        .find(|c| c.text().contains("item1.X-ABLabel"))
        .expect("an Apple label");
    let copy_text = String::from_utf8_lossy(stored(labelled)).into_owned();
    assert!(
        copy_text.contains("\r\nitem1.X-ABLABEL:_$!<Other>!$_\r\n"),
        "{copy_text}"
    );
    // Property order: VERSION, PRODID, UID first, then sorted by name.
    let order: Vec<String> = unfold(stored(&corpus[0]))
        .iter()
        .filter_map(|l| parse_line(l))
        .map(|cl| cl.name)
        .collect();
    assert_eq!(&order[..4], ["BEGIN", "VERSION", "PRODID", "UID"]);
    let middle = &order[4..order.len() - 1];
    let mut sorted = middle.to_vec();
    sorted.sort();
    assert_eq!(middle, sorted.as_slice());

    // --- ETags: PUT's ETag = PROPFIND getetag = GET ETag.
    let work_href = a.book_path(ALICE, "work");
    let items = a.items(ALICE, &work_href);
    assert_eq!(items.len(), 100);
    for (href, etag) in &items {
        let name = href.rsplit('/').next().unwrap_or_default();
        assert_eq!(&etags["work"][name], etag, "{href}");
    }
    let (first_href, first_etag) = items.iter().next().expect("an item");
    let r = a
        .request_as(ALICE, "GET", first_href, &[], &[])
        .expect("GET");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), Some(first_etag.as_str()));
    assert_eq!(r.header("content-type"), Some("text/vcard; charset=utf-8"));

    // --- Radicale -> Radicale: PUTting A's copies into B stores the same bytes, same ETags.
    let book_a = &snap["Arbeit – Kollegen"];
    b.create_book(ALICE, "kollegen", "Arbeit – Kollegen");
    for (uid, vcard) in book_a {
        let c = chunks[1].iter().find(|c| &c.uid == uid).expect("in chunk");
        b.put_contact(ALICE, "kollegen", &c.href_name, vcard);
    }
    let snap_b = b.snapshot(ALICE);
    assert_eq!(
        &snap_b["Arbeit – Kollegen"], book_a,
        "Radicale's copies are not idempotent"
    );
    let etags_b: BTreeSet<String> = b
        .items(ALICE, &b.book_path(ALICE, "kollegen"))
        .into_values()
        .collect();
    let etags_a: BTreeSet<String> = items.values().cloned().collect();
    assert_eq!(
        etags_a, etags_b,
        "same stored text, same ETag on both servers"
    );

    // --- addressbook-multiget: same content as GET, but the XML parser turns CRLF into LF.
    let hrefs: Vec<String> = items.keys().cloned().collect();
    let multi = a.multiget(ALICE, &work_href, &hrefs);
    assert_eq!(multi.len(), 100);
    for (href, (etag, data)) in &multi {
        assert_eq!(Some(etag), items.get(href));
        assert!(!data.contains('\r'));
        let got = a.get(ALICE, href);
        assert_eq!(data.replace('\n', "\r\n").as_bytes(), got.as_slice());
    }
    let with_unknown = a.multiget(
        ALICE,
        &work_href,
        &[format!("{work_href}does-not-exist.vcf"), hrefs[0].clone()],
    );
    assert_eq!(with_unknown.len(), 1);

    // --- Discovery: /.well-known/carddav -> 301 to /, then principal, then home.
    for auth in [None, Some((ALICE, "alice-secret"))] {
        for method in ["GET", "PROPFIND"] {
            let r = a
                .request(method, "/.well-known/carddav", auth, &[("Depth", "0")], &[])
                .expect("well-known");
            assert_eq!(r.status, 301, "{method} well-known (auth {auth:?})");
            assert_eq!(r.header("location"), Some("/"));
        }
    }
    let ms = a
        .propfind(ALICE, "/", 0, "<D:current-user-principal/>")
        .expect("PROPFIND /");
    let principal = ms.responses[0]
        .prop(NS_DAV, "current-user-principal")
        .expect("current-user-principal")
        .hrefs
        .clone();
    assert_eq!(principal, vec!["/alice/".to_owned()]);
    let ms = a
        .propfind(
            ALICE,
            &principal[0],
            0,
            "<C:addressbook-home-set/><D:resourcetype/>",
        )
        .expect("PROPFIND principal");
    let home = &ms.responses[0]
        .prop(NS_CARDDAV, "addressbook-home-set")
        .expect("addressbook-home-set")
        .hrefs;
    assert_eq!(home, &vec!["/alice/".to_owned()]);
    assert!(ms.responses[0].is_a(NS_DAV, "principal"));
    let found: BTreeMap<String, Option<String>> = a.books(ALICE).into_iter().collect();
    assert_eq!(found.len(), 3);
    assert_eq!(
        found.get("/alice/work/").cloned().flatten().as_deref(),
        Some("Arbeit – Kollegen")
    );
    let r = a.request("OPTIONS", "/", None, &[], &[]).expect("OPTIONS");
    let dav = r.header("dav").unwrap_or_default().to_owned();
    assert!(
        dav.contains("addressbook") && dav.contains("extended-mkcol"),
        "{dav}"
    );

    // --- Authentication and rights.
    let r = a
        .request(
            "PROPFIND",
            "/alice/",
            Some((ALICE, "wrong")),
            &[("Depth", "0")],
            &[],
        )
        .expect("PROPFIND");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"Radicale - Password Required\"")
    );
    let r = a
        .request("GET", first_href, None, &[], &[])
        .expect("anonymous GET");
    assert_eq!(r.status, 401);
    let r = a
        .request_as("bob", "GET", first_href, &[], &[])
        .expect("bob GET");
    assert_eq!(r.status, 403, "another user's book");
    // A plain MKCOL (no body) is refused; the extended one is needed.
    let r = a
        .request_as(ALICE, "MKCOL", "/alice/plain/", &[], &[])
        .expect("MKCOL");
    assert_eq!(r.status, 403);
    // The same UID under a second name in the same book: 409.
    let dup = &chunks[1][0];
    let r = a
        .try_put_contact(ALICE, "work", "duplicate.vcf", &dup.vcard)
        .expect("PUT");
    assert_eq!(r.status, 409, "{}", r.text());

    // --- Collection properties and sync-collection.
    let ms = a
        .propfind(
            ALICE,
            &work_href,
            0,
            "<CS:getctag/><D:sync-token/><D:supported-report-set/>",
        )
        .expect("PROPFIND book");
    let resp = &ms.responses[0];
    let ctag = &resp.prop(NS_CS, "getctag").expect("getctag").text;
    assert!(ctag.starts_with('"') && ctag.len() == 66, "{ctag}");
    assert!(resp.prop(NS_DAV, "supported-report-set").is_some());
    let raw = a
        .request_as(
            ALICE,
            "PROPFIND",
            &work_href,
            &[("Depth", "0")],
            b"<?xml version=\"1.0\"?><propfind xmlns=\"DAV:\"><prop><supported-report-set/></prop></propfind>",
        )
        .expect("PROPFIND supported-report-set");
    let xml = raw.text();
    let doc = roxmltree::Document::parse(&xml).expect("XML");
    let reports: BTreeSet<(String, String)> = doc
        .descendants()
        .filter(|n| n.has_tag_name((NS_DAV, "report")))
        .flat_map(|n| n.children().filter(roxmltree::Node::is_element))
        .map(|n| {
            let t = n.tag_name();
            (
                t.namespace().unwrap_or_default().to_owned(),
                t.name().to_owned(),
            )
        })
        .collect();
    for (ns, name) in [
        (NS_DAV, "sync-collection"),
        (NS_CARDDAV, "addressbook-multiget"),
        (NS_CARDDAV, "addressbook-query"),
    ] {
        assert!(
            reports.contains(&(ns.to_owned(), name.to_owned())),
            "{name} not in {reports:?}"
        );
    }
    let token_prop = resp
        .prop(NS_DAV, "sync-token")
        .expect("sync-token")
        .text
        .clone();
    let r = a
        .sync_collection(ALICE, &work_href, None)
        .expect("initial sync");
    assert_eq!(r.status, 207, "{}", r.text());
    let initial = parse_multistatus(&r.body).expect("multistatus");
    let token = initial.sync_token.clone().expect("sync-token");
    assert_eq!(token, token_prop);
    assert!(
        token.starts_with("http://radicale.org/ns/sync/") && token.len() == 28 + 64,
        "{token}"
    );
    assert_eq!(initial.responses.len(), 100);
    assert!(
        initial
            .responses
            .iter()
            .all(|r| r.prop(NS_DAV, "getetag").is_some())
    );
    let extra = big_contact("small-extra", 100);
    a.put_contact(ALICE, "work", &extra.href_name, &extra.vcard);
    let r = a
        .request_as(ALICE, "DELETE", first_href, &[], &[])
        .expect("DELETE");
    assert_eq!(r.status, 200);
    let r = a
        .sync_collection(ALICE, &work_href, Some(&token))
        .expect("delta sync");
    assert_eq!(r.status, 207, "{}", r.text());
    let delta = parse_multistatus(&r.body).expect("multistatus");
    assert_ne!(delta.sync_token.as_deref(), Some(token.as_str()));
    let changed: BTreeMap<String, Option<u16>> = delta
        .responses
        .iter()
        .map(|r| (r.href.clone(), r.status))
        .collect();
    let added = format!("{work_href}{}", extra.href_name);
    assert_eq!(changed.len(), 2, "{changed:?}");
    assert_eq!(changed.get(&added), Some(&None));
    assert_eq!(changed.get(first_href), Some(&Some(404)));
    let r = a
        .sync_collection(
            ALICE,
            &work_href,
            Some(&format!("http://radicale.org/ns/sync/{}", "0".repeat(64))),
        )
        .expect("bad token");
    assert_eq!(r.status, 403);
    assert!(r.text().contains("valid-sync-token"), "{}", r.text());

    // --- Stopped on drop: ports closed, directories gone.
    let (pa, pb) = (a.port(), b.port());
    let (da, db) = (a.dir().to_owned(), b.dir().to_owned());
    drop(a);
    drop(b);
    assert!(!port_open(pa), "A still listening");
    assert!(!port_open(pb), "B still listening");
    if std::env::var_os("TESTBED_KEEP").is_none() {
        assert!(!da.exists() && !db.exists());
    }
}

#[test]
fn too_large_vcard_is_refused() {
    let limit = 10_000;
    let rad = Radicale::start(RadicaleOptions {
        max_content_length: Some(limit),
        ..RadicaleOptions::default()
    })
    .expect("start Radicale");
    rad.create_book(ALICE, "contacts", "Contacts");
    let big = big_contact("urn:uuid:0b16b16b-0000-4000-8000-000000000001", 20_000);
    assert!(big.vcard.len() as u64 > limit);
    for _ in 0..3 {
        let r = rad
            .try_put_contact(ALICE, "contacts", &big.href_name, &big.vcard)
            .expect("PUT big");
        assert_eq!(r.status, 413, "{}", r.text());
        assert_eq!(r.text(), "Request body too large.");
    }
    assert_eq!(rad.count(ALICE), 0);
    // Radicale answers 413 from the Content-Length alone and closes the connection without
    // reading the body: once the body no longer fits in the socket buffers (here a few MB on
    // loopback, much less over a network), the client gets a broken pipe or a reset while still
    // sending, and never sees the 413.
    let huge = big_contact("urn:uuid:0b16b16b-0000-4000-8000-000000000003", 12_000_000);
    match rad.try_put_contact(ALICE, "contacts", &huge.href_name, &huge.vcard) {
        Ok(r) => assert_eq!(r.status, 413, "{}", r.text()),
        Err(e) => {
            let msg = format!("{e:#}");
            assert!(
                msg.contains("Broken pipe") || msg.contains("Connection reset"),
                "unexpected error for a {} byte PUT: {msg}",
                huge.vcard.len()
            );
            eprintln!(
                "{} byte PUT: transport error instead of 413: {msg}",
                huge.vcard.len()
            );
        }
    }
    assert_eq!(rad.count(ALICE), 0);
    // Just under the limit is fine.
    let small = big_contact("urn:uuid:0b16b16b-0000-4000-8000-000000000002", 5_000);
    assert!((small.vcard.len() as u64) < limit);
    rad.put_contact(ALICE, "contacts", &small.href_name, &small.vcard);
    let snap = rad.snapshot(ALICE);
    let uids: Vec<&String> = snap["Contacts"].keys().collect();
    assert_eq!(uids, vec![&small.uid]);
    assert!(rad.log().contains("Request body too large"));
}
