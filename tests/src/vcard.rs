//! Deterministic vCards for the CardDAV test bed, and a normalizer that makes two servers' copies
//! of the same vCard comparable.
//!
//! The corpus is what real address books contain and what trips up naive code: vCard 3.0 and 4.0
//! mixed, CRLF line ends, lines folded at 75 octets (never inside a UTF-8 character), non-ASCII
//! names, several EMAIL/TEL/ADR, NOTEs with escaped commas, semicolons and newlines, Apple-style
//! grouped properties (`item1.EMAIL` + `item1.X-ABLabel`), inline photos (3.0
//! `PHOTO;ENCODING=b;TYPE=JPEG:` and 4.0 `PHOTO:data:image/png;base64,`), and groups (4.0
//! `KIND:group` + `MEMBER`, 3.0 Apple `X-ADDRESSBOOKSERVER-KIND:group` +
//! `X-ADDRESSBOOKSERVER-MEMBER`).
//!
//! # What Radicale 3.1.8 does to a vCard
//!
//! Radicale does not store the PUT body: it parses it with `vobject` 0.9.6.1 and stores (and
//! serves, with an ETag that is the SHA-256 of that text) its re-serialization. See
//! [`normalize`] for what changes and what [`normalize`] ignores. One change is data loss:
//! vobject treats every property it has no special parser for (everything but N, ADR, ORG,
//! CATEGORIES and the few others it knows) as a single text value and keeps only the part before
//! the first unescaped comma. So a vCard 4.0 `PHOTO:data:image/png;base64,iVBOR...` comes back as
//! `PHOTO:data:image/png\;base64` (the picture is gone), and so do `LOGO`/`SOUND`/`KEY` data
//! URIs, `URL:http://x/a,b` (becomes `http://x/a`) and any `NOTE:a,b` whose comma is not escaped.
//! 3.0 `PHOTO;ENCODING=b` (and 4.0 with `ENCODING=b`, which is not valid 4.0) survive.

use crate::b64;
use crate::corpus::SplitMix64;

/// One vCard as a client would PUT it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The vCard's UID.
    pub uid: String,
    /// The resource's file name in the address book, e.g. `c-17.vcf`; often derived from the
    /// UID, sometimes not.
    pub href_name: String,
    /// The vCard as sent: UTF-8, CRLF line ends, folded.
    pub vcard: Vec<u8>,
}

impl Contact {
    /// The vCard as text.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.vcard).unwrap_or("")
    }

    /// `3.0` or `4.0`.
    pub fn version(&self) -> String {
        property_values(&self.vcard, "VERSION")
            .into_iter()
            .next()
            .unwrap_or_default()
    }

    /// The FN property, unescaped.
    pub fn full_name(&self) -> String {
        property_values(&self.vcard, "FN")
            .first()
            .map(|v| unescape(v))
            .unwrap_or_default()
    }
}

struct Name {
    given: &'static str,
    family: &'static str,
}

const NAMES: &[Name] = &[
    Name {
        given: "Zoë",
        family: "Müller",
    },
    Name {
        given: "Jürgen",
        family: "Groß",
    },
    Name {
        given: "太郎",
        family: "山田",
    },
    Name {
        given: "Ωμέγα",
        family: "Παπαδοπούλου",
    },
    Name {
        given: "Łukasz",
        family: "Żółć",
    },
    Name {
        given: "Alice",
        family: "Smith",
    },
    Name {
        given: "Bob",
        family: "Jones",
    },
    Name {
        given: "Chloé",
        family: "Dubois",
    },
    Name {
        given: "Søren",
        family: "Kierkegård",
    },
    Name {
        given: "Carol",
        family: "O'Neill",
    },
    Name {
        given: "Ivan",
        family: "Петров",
    },
    Name {
        given: "David",
        family: "Brown",
    },
];

const CITIES: &[(&str, &str, &str)] = &[
    ("Berlin", "10115", "Deutschland"),
    ("München", "80331", "Deutschland"),
    ("Kraków", "30-001", "Polska"),
    ("東京", "100-0001", "日本"),
    ("Αθήνα", "105 57", "Ελλάδα"),
    ("Springfield", "62701", "USA"),
    ("Zürich", "8001", "Schweiz"),
];

const STREETS: &[&str] = &[
    "Hauptstraße 1",
    "ul. Floriańska 12",
    "Main St. 42, Apt. 7",
    "Rue de l'Église 3",
    "千代田1-1",
];

const NOTES: &[&str] = &[
    "Met at the conference, Berlin; bring the slides",
    "Prefers e-mail; no calls after 8pm, please",
    "Größe: L; Farbe: grün, blau",
    "Line one\nLine two, with comma; and semicolon",
    "Backslash \\ in a note; and a comma, too",
];

const GROUP_NAMES: &[&str] = &["Family", "Work", "Climbing club", "Nachbarn", "友達"];

const ORGS: &[(&str, &str)] = &[
    ("Example GmbH", "Vertrieb"),
    ("ACME, Inc.", "R&D"),
    ("Université de Genève", "Physique"),
];

/// Escapes a vCard text value (RFC 6350 3.4): backslash, comma, semicolon, newline.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ',' => out.push_str("\\,"),
            ';' => out.push_str("\\;"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Reverses [`escape`] (also accepts `\N`).
pub fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n' | 'N') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// Folds one logical line (without line end) at 75 octets, never inside a UTF-8 character;
/// continuation lines start with one space. Appends the result with CRLF line ends.
fn fold_into(out: &mut Vec<u8>, line: &str) {
    let bytes = line.as_bytes();
    let mut start = 0;
    let mut first = true;
    while start < bytes.len() {
        // A continuation line's leading space counts toward its 75 octets.
        let room = if first { 75 } else { 74 };
        let mut end = (start + room).min(bytes.len());
        while end < bytes.len() && !line.is_char_boundary(end) {
            end -= 1;
        }
        if !first {
            out.push(b' ');
        }
        out.extend_from_slice(&bytes[start..end]);
        out.extend_from_slice(b"\r\n");
        start = end;
        first = false;
    }
}

fn finish(lines: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        fold_into(&mut out, line);
    }
    out
}

/// Deterministic bytes that start like a picture of the given kind (not a valid image).
fn picture_bytes(rng: &mut SplitMix64, len: usize, png: bool) -> Vec<u8> {
    let magic: &[u8] = if png {
        b"\x89PNG\r\n\x1a\n"
    } else {
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
    };
    let mut out = magic[..magic.len().min(len)].to_vec();
    while out.len() < len {
        let word = rng.next_u64().to_le_bytes();
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&word[..take]);
    }
    out
}

fn uuid(rng: &mut SplitMix64, index: usize) -> String {
    let a = rng.next_u64();
    let b = rng.next_u64();
    // The last field carries the index, so UIDs are unique whatever the random bits are.
    format!(
        "{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:04x}{:08x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        8 + ((b >> 62) & 3),
        (b >> 32) & 0xfff,
        (b >> 16) & 0xffff,
        index as u32
    )
}

/// A file name that is safe in a URL path: the UID with anything but `[A-Za-z0-9._-]` replaced.
pub fn href_for(uid: &str) -> String {
    let safe: String = uid
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{safe}.vcf")
}

/// Identity of one corpus entry, decided before any vCard is written so groups can name
/// contacts that come later.
struct Plan {
    uid: String,
    /// The bare UUID when the UID is UUID-based (groups reference these as `urn:uuid:`).
    uuid: Option<String>,
    href_name: String,
    v4: bool,
    group: bool,
}

/// `n` contacts, the same for the same `(n, seed)`, every UID unique.
///
/// Layout (by index `i`): versions alternate in pairs (3.0, 3.0, 4.0, 4.0, ...); `i % 10 == 7`
/// has an inline PHOTO of 2-6 KB (so the first photo is 4.0, the second 3.0); `i % 15 == 11` is
/// a group whose members are 2-5 other (non-group) contacts of the corpus; names cycle through a
/// list that starts with Zoë Müller, Jürgen Groß, 山田太郎, Ωμέγα Παπαδοπούλου and Łukasz Żółć.
/// UIDs are `urn:uuid:<uuid>` (4.0), a bare UUID (3.0, Apple style) or, for one in five
/// contacts, `<hex>-<i>@migrated.test`; file names are `<uid>.vcf` (made URL-safe) or, for one
/// in four, `c-<i>.vcf`.
pub fn contacts_corpus(n: usize, seed: u64) -> Vec<Contact> {
    let mut rng = SplitMix64::new(seed ^ 0x7663_6172_6473_u64);
    let plans: Vec<Plan> = (0..n)
        .map(|i| {
            let v4 = (i / 2) % 2 == 1;
            let group = i % 15 == 11;
            let (uid, uuid) = if !group && rng.below(5) == 0 {
                (format!("{:x}-{i}@migrated.test", rng.next_u64()), None)
            } else {
                let u = uuid(&mut rng, i);
                if v4 {
                    (format!("urn:uuid:{u}"), Some(u))
                } else {
                    (u.to_uppercase(), Some(u.to_uppercase()))
                }
            };
            let href_name = if rng.below(4) == 0 {
                format!("c-{i}.vcf")
            } else {
                href_for(&uid)
            };
            Plan {
                uid,
                uuid,
                href_name,
                v4,
                group,
            }
        })
        .collect();
    let member_pool: Vec<usize> = plans
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.group && p.uuid.is_some())
        .map(|(i, _)| i)
        .collect();

    (0..n)
        .map(|i| {
            let plan = &plans[i];
            let lines = if plan.group {
                group_lines(&mut rng, i, plan, &plans, &member_pool)
            } else {
                person_lines(&mut rng, i, plan)
            };
            Contact {
                uid: plan.uid.clone(),
                href_name: plan.href_name.clone(),
                vcard: finish(&lines),
            }
        })
        .collect()
}

fn header(plan: &Plan) -> Vec<String> {
    vec![
        "BEGIN:VCARD".to_owned(),
        format!("VERSION:{}", if plan.v4 { "4.0" } else { "3.0" }),
        "PRODID:-//migrated//testbed//EN".to_owned(),
        format!("UID:{}", plan.uid),
    ]
}

fn group_lines(
    rng: &mut SplitMix64,
    i: usize,
    plan: &Plan,
    plans: &[Plan],
    pool: &[usize],
) -> Vec<String> {
    let mut l = header(plan);
    let name = format!("{} {}", GROUP_NAMES[i % GROUP_NAMES.len()], i);
    let mut members: Vec<&str> = Vec::new();
    if !pool.is_empty() {
        let want = 2 + rng.below(4) as usize;
        for _ in 0..want * 3 {
            if members.len() >= want.min(pool.len()) {
                break;
            }
            let m = pool[rng.below(pool.len() as u64) as usize];
            let u = plans[m].uuid.as_deref().unwrap_or_default();
            if m != i && !members.contains(&u) {
                members.push(u);
            }
        }
    }
    if plan.v4 {
        l.push("KIND:group".to_owned());
        l.push(format!("FN:{}", escape(&name)));
        l.push(format!("N:{};;;;", escape(&name)));
        for m in members {
            l.push(format!("MEMBER:urn:uuid:{}", m.to_lowercase()));
        }
    } else {
        l.push(format!("N:{};;;;", escape(&name)));
        l.push(format!("FN:{}", escape(&name)));
        l.push("X-ADDRESSBOOKSERVER-KIND:group".to_owned());
        for m in members {
            l.push(format!("X-ADDRESSBOOKSERVER-MEMBER:urn:uuid:{m}"));
        }
    }
    l.push("END:VCARD".to_owned());
    l
}

fn person_lines(rng: &mut SplitMix64, i: usize, plan: &Plan) -> Vec<String> {
    let v4 = plan.v4;
    let mut l = header(plan);
    let name = &NAMES[i % NAMES.len()];
    // Japanese names are written family name first, without a space.
    let full = if is_cjk(name) {
        format!("{}{}", name.family, name.given)
    } else {
        format!("{} {}", name.given, name.family)
    };
    l.push(format!(
        "N:{};{};;;",
        escape(name.family),
        escape(name.given)
    ));
    l.push(format!("FN:{}", escape(&full)));
    if v4 {
        l.push("KIND:individual".to_owned());
    }
    let local: String = name
        .given
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_lowercase();
    let local = if local.is_empty() {
        format!("user{i}")
    } else {
        format!("{local}.{i}")
    };

    // EMAIL: 1-3, the first preferred.
    let emails = 1 + rng.below(3);
    for e in 0..emails {
        let (kind, domain) = match e {
            0 => ("home", "example.org"),
            1 => ("work", "example.com"),
            _ => ("other", "mail.example.net"),
        };
        let addr = format!("{local}@{domain}");
        if v4 {
            let pref = if e == 0 { ";PREF=1" } else { "" };
            l.push(format!("EMAIL;TYPE={kind}{pref}:{addr}"));
        } else if e == 2 {
            // Apple's way of labelling a value: a property group with X-ABLabel.
            l.push(format!("item1.EMAIL;TYPE=INTERNET:{addr}"));
            l.push("item1.X-ABLabel:_$!<Other>!$_".to_owned());
        } else {
            let pref = if e == 0 { ",pref" } else { "" };
            l.push(format!(
                "EMAIL;TYPE=INTERNET,{}{pref}:{addr}",
                kind.to_uppercase()
            ));
        }
    }
    // TEL: 0-3.
    for t in 0..rng.below(4) {
        let kind = ["cell", "home", "work"][t as usize];
        let number = format!("+49 30 {:07}", rng.below(10_000_000));
        if v4 {
            let uri = number.replace(' ', "-");
            l.push(format!("TEL;VALUE=uri;TYPE={kind}:tel:{uri}"));
        } else {
            l.push(format!("TEL;TYPE={}:{number}", kind.to_uppercase()));
        }
    }
    // ADR: 0-2.
    for a in 0..rng.below(3) {
        let (city, code, country) = CITIES[rng.below(CITIES.len() as u64) as usize];
        let street = STREETS[rng.below(STREETS.len() as u64) as usize];
        let kind = if a == 0 { "home" } else { "work" };
        let kind = if v4 {
            kind.to_owned()
        } else {
            kind.to_uppercase()
        };
        l.push(format!(
            "ADR;TYPE={kind}:;;{};{};;{};{}",
            escape(street),
            escape(city),
            escape(code),
            escape(country)
        ));
    }
    if rng.below(3) == 0 {
        let (org, unit) = ORGS[rng.below(ORGS.len() as u64) as usize];
        l.push(format!("ORG:{};{}", escape(org), escape(unit)));
    }
    if rng.below(2) == 0 {
        let mut note = NOTES[rng.below(NOTES.len() as u64) as usize].to_owned();
        // Some notes are long enough to be folded several times.
        for _ in 0..rng.below(4) {
            note.push_str(" — and more text, so the line has to be folded; ünïcödé included");
        }
        l.push(format!("NOTE:{}", escape(&note)));
    }
    if rng.below(4) == 0 {
        l.push("CATEGORIES:Friends,VIP".to_owned());
    }
    if i % 10 == 7 {
        let len = 2048 + rng.below(4096) as usize;
        let data = b64::encode(&picture_bytes(rng, len, v4), b64::STANDARD, true);
        if v4 {
            l.push(format!("PHOTO:data:image/png;base64,{data}"));
        } else {
            l.push(format!("PHOTO;ENCODING=b;TYPE=JPEG:{data}"));
        }
    }
    l.push("END:VCARD".to_owned());
    l
}

fn is_cjk(name: &Name) -> bool {
    name.family
        .chars()
        .any(|c| ('\u{3040}'..='\u{9fff}').contains(&c))
}

/// A vCard 3.0 contact whose PHOTO holds `bytes` bytes of (deterministic) picture data, so the
/// vCard itself is about `bytes * 4 / 3` plus ~150 bytes: for a server with a small request
/// body limit to refuse.
pub fn big_contact(uid: &str, bytes: usize) -> Contact {
    let mut rng = SplitMix64::new(bytes as u64 ^ 0x00b1_6b16);
    let data = b64::encode(&picture_bytes(&mut rng, bytes, false), b64::STANDARD, true);
    let lines = vec![
        "BEGIN:VCARD".to_owned(),
        "VERSION:3.0".to_owned(),
        "PRODID:-//migrated//testbed//EN".to_owned(),
        format!("UID:{uid}"),
        "N:Photo;Big;;;".to_owned(),
        "FN:Big Photo".to_owned(),
        format!("PHOTO;ENCODING=b;TYPE=JPEG:{data}"),
        "END:VCARD".to_owned(),
    ];
    Contact {
        uid: uid.to_owned(),
        href_name: href_for(uid),
        vcard: finish(&lines),
    }
}

/// The logical lines of a vCard: CRLF, LF or CR line ends, folded lines joined (the one
/// leading space or tab of a continuation removed), empty lines dropped.
pub fn unfold(vcard: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(vcard);
    let mut lines: Vec<String> = Vec::new();
    for raw in text.split("\r\n").flat_map(|l| l.split(['\n', '\r'])) {
        if let Some(rest) = raw.strip_prefix([' ', '\t'])
            && let Some(last) = lines.last_mut()
        {
            last.push_str(rest);
            continue;
        }
        if !raw.is_empty() {
            lines.push(raw.to_owned());
        }
    }
    lines
}

/// One parsed content line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentLine {
    /// Property group (`item1` in `item1.EMAIL`), as written.
    pub group: Option<String>,
    /// Property name, as written.
    pub name: String,
    /// Parameters in order, as written: name and raw value (quotes removed; `None` for a
    /// 2.1/3.0-style bare parameter such as `BASE64`).
    pub params: Vec<(String, Option<String>)>,
    /// The value, still escaped.
    pub value: String,
}

/// Parses `[group.]name *(;param[=value]) : value`, honouring quoted parameter values.
pub fn parse_line(line: &str) -> Option<ContentLine> {
    let mut in_quotes = false;
    let mut colon = None;
    for (pos, c) in line.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ':' if !in_quotes => {
                colon = Some(pos);
                break;
            }
            _ => {}
        }
    }
    let colon = colon?;
    let (head, value) = (&line[..colon], &line[colon + 1..]);
    let mut parts = split_unquoted(head, ';').into_iter();
    let full_name = parts.next()?;
    let (group, name) = match full_name.rsplit_once('.') {
        Some((g, n)) => (Some(g.to_owned()), n.to_owned()),
        None => (None, full_name),
    };
    let params = parts
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.replace('"', ""))),
            None => (p, None),
        })
        .collect();
    Some(ContentLine {
        group,
        name,
        params,
        value: value.to_owned(),
    })
}

fn split_unquoted(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    for c in s.chars() {
        if c == '"' {
            in_quotes = !in_quotes;
        }
        if c == sep && !in_quotes {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

/// The raw (still escaped) values of every property called `name` (case-insensitive, any
/// group), in order.
pub fn property_values(vcard: &[u8], name: &str) -> Vec<String> {
    unfold(vcard)
        .iter()
        .filter_map(|l| parse_line(l))
        .filter(|cl| cl.name.eq_ignore_ascii_case(name))
        .map(|cl| cl.value)
        .collect()
}

/// The vCard's UID, if it has one.
pub fn uid_of(vcard: &[u8]) -> Option<String> {
    property_values(vcard, "UID").into_iter().next()
}

/// Decoded inline photo bytes: 3.0 `PHOTO;ENCODING=b` or 4.0 `PHOTO:data:...;base64,`.
/// `None` when there is no photo or it is not decodable (e.g. a data URI Radicale truncated).
pub fn photo_bytes(vcard: &[u8]) -> Option<Vec<u8>> {
    let line = unfold(vcard)
        .iter()
        .filter_map(|l| parse_line(l))
        .find(|cl| cl.name.eq_ignore_ascii_case("PHOTO"))?;
    let data = if let Some(rest) = line.value.strip_prefix("data:") {
        rest.split_once(";base64,")?.1.to_owned()
    } else {
        line.value.clone()
    };
    decode_base64(&data)
}

fn decode_base64(data: &str) -> Option<Vec<u8>> {
    let clean: Vec<u8> = data
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
        .collect();
    b64::decode(&clean, b64::STANDARD)
}

/// A canonical text form of a vCard, so that two servers' copies of the same contact compare
/// equal when they differ only in serialization.
///
/// Radicale 3.1.8 (vobject) re-serializes every vCard it stores; relative to what was PUT, its
/// copy has: CRLF line ends (LF input is converted); lines re-folded at 75 octets (never inside a
/// UTF-8 character) except PHOTO, which is never folded; VERSION, PRODID and UID first and all
/// other properties sorted by name (ignoring the group; same-name properties keep their order);
/// property names upper-cased (`item1.X-ABLabel` -> `item1.X-ABLABEL`, the group keeps its case);
/// parameter names upper-cased, parameters sorted by name and repeated ones merged
/// (`TEL;type=cell;type=pref` -> `TEL;TYPE=cell,pref`); a bare `BASE64` parameter turned into
/// `ENCODING=B`; base64 values re-encoded (no line breaks); text values re-escaped (`;` and `,`
/// escaped); and unescaped-comma values truncated (see the module documentation). Parameter
/// values keep their case. An idempotent store: PUTting Radicale's copy again stores the same
/// bytes (and gets the same ETag).
///
/// `normalize` ignores: line ends, folding, the order of properties (all of it, including the
/// relative order of same-name properties), the case of group, property and parameter names,
/// the order of parameters, repeated parameters vs comma-separated values, the case and order of
/// TYPE values, the case of the ENCODING value, a bare `BASE64` vs `ENCODING=B`, and the line
/// breaking, whitespace and padding of base64 values (`ENCODING=B` values are decoded and
/// re-encoded). It does NOT ignore anything in values otherwise (escaping included, so the
/// data-URI truncation shows), VERSION, PRODID or REV, nor added or removed properties.
///
/// Output: `BEGIN:VCARD`, the sorted canonical lines, `END:VCARD`, LF-separated.
pub fn normalize(vcard: &[u8]) -> String {
    let mut body: Vec<String> = Vec::new();
    for line in unfold(vcard) {
        let Some(cl) = parse_line(&line) else {
            body.push(line);
            continue;
        };
        let name = match &cl.group {
            Some(g) => format!("{}.{}", g.to_uppercase(), cl.name.to_uppercase()),
            None => cl.name.to_uppercase(),
        };
        if (name == "BEGIN" || name == "END") && cl.value.eq_ignore_ascii_case("VCARD") {
            continue;
        }
        // Merge parameters by (upper-cased) name.
        let mut params: Vec<(String, Vec<String>)> = Vec::new();
        for (k, v) in &cl.params {
            let (k, values) = match v {
                Some(v) => (k.to_uppercase(), split_unquoted(v, ',')),
                None if k.eq_ignore_ascii_case("BASE64") => {
                    ("ENCODING".to_owned(), vec!["B".to_owned()])
                }
                None => ("TYPE".to_owned(), vec![k.clone()]),
            };
            match params.iter_mut().find(|(n, _)| *n == k) {
                Some((_, vs)) => vs.extend(values),
                None => params.push((k, values)),
            }
        }
        for (k, vs) in &mut params {
            if k == "TYPE" || k == "ENCODING" {
                for v in vs.iter_mut() {
                    *v = v.to_uppercase();
                }
                if k == "ENCODING" && vs.iter().any(|v| v == "BASE64") {
                    *vs = vec!["B".to_owned()];
                }
                vs.sort();
                vs.dedup();
            }
        }
        params.sort();
        let base64 = params
            .iter()
            .any(|(k, vs)| k == "ENCODING" && vs.iter().any(|v| v == "B"));
        let value = if base64 {
            match decode_base64(&cl.value) {
                Some(bytes) => b64::encode(&bytes, b64::STANDARD, true),
                None => cl.value.split_whitespace().collect(),
            }
        } else {
            cl.value.clone()
        };
        let mut out = name;
        for (k, vs) in params {
            let joined: Vec<String> = vs
                .into_iter()
                .map(|v| {
                    if v.contains([':', ';', ',']) {
                        format!("\"{v}\"")
                    } else {
                        v
                    }
                })
                .collect();
            out.push(';');
            out.push_str(&k);
            out.push('=');
            out.push_str(&joined.join(","));
        }
        out.push(':');
        out.push_str(&value);
        body.push(out);
    }
    body.sort();
    let mut text = String::from("BEGIN:VCARD\n");
    for l in body {
        text.push_str(&l);
        text.push('\n');
    }
    text.push_str("END:VCARD\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_is_deterministic_and_unique() {
        let a = contacts_corpus(120, 7);
        let b = contacts_corpus(120, 7);
        assert_eq!(a, b);
        assert_ne!(a, contacts_corpus(120, 8));
        let uids: std::collections::BTreeSet<&str> = a.iter().map(|c| c.uid.as_str()).collect();
        assert_eq!(uids.len(), a.len());
        let hrefs: std::collections::BTreeSet<&str> =
            a.iter().map(|c| c.href_name.as_str()).collect();
        assert_eq!(hrefs.len(), a.len());
        for c in &a {
            assert_eq!(uid_of(&c.vcard).as_deref(), Some(c.uid.as_str()));
            let text = c.text();
            assert!(text.ends_with("END:VCARD\r\n"));
            for line in text.split("\r\n") {
                assert!(line.len() <= 75, "{line:?} longer than 75 octets");
                assert!(!line.contains('\n') && !line.contains('\r'));
            }
        }
    }

    #[test]
    fn corpus_has_the_promised_features() {
        let c = contacts_corpus(60, 1);
        let all: String = c.iter().map(Contact::text).collect();
        for name in [
            "Zoë Müller",
            "Jürgen Groß",
            "山田太郎",
            "Ωμέγα",
            "Łukasz Żółć",
        ] {
            assert!(
                c.iter().any(|x| x.full_name().contains(name)),
                "{name} missing"
            );
        }
        assert!(all.contains("VERSION:3.0") && all.contains("VERSION:4.0"));
        assert!(all.contains("PHOTO;ENCODING=b;TYPE=JPEG:"));
        assert!(all.contains("PHOTO:data:image/png;base64,"));
        assert!(all.contains("KIND:group") && all.contains("MEMBER:urn:uuid:"));
        assert!(all.contains("X-ADDRESSBOOKSERVER-KIND:group"));
        assert!(all.contains("X-ADDRESSBOOKSERVER-MEMBER:urn:uuid:"));
        assert!(all.contains("\\,") && all.contains("\\;"));
        assert!(all.contains("\r\n "), "no folded line");
        assert!(c.iter().any(|x| x.href_name.starts_with("c-")));
        // Every MEMBER names a contact of the corpus.
        let uuids: Vec<String> = c.iter().map(|x| x.uid.to_lowercase()).collect();
        for x in &c {
            for m in property_values(&x.vcard, "MEMBER")
                .into_iter()
                .chain(property_values(&x.vcard, "X-ADDRESSBOOKSERVER-MEMBER"))
            {
                let bare = m.trim_start_matches("urn:uuid:").to_lowercase();
                assert!(
                    uuids.iter().any(|u| u.ends_with(&bare)),
                    "member {m} of {} is not in the corpus",
                    x.uid
                );
            }
        }
        let photos = c.iter().filter(|x| photo_bytes(&x.vcard).is_some()).count();
        assert_eq!(photos, 6);
    }

    #[test]
    fn normalize_ignores_serialization_only() {
        let a = b"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:x\r\nFN:Zo\xc3\xab\r\nTEL;type=cell;type=pref:1\r\nitem1.X-ABLabel:a\r\nPHOTO;BASE64:QUJD\r\n RA==\r\nEND:VCARD\r\n";
        let b = b"BEGIN:VCARD\nVERSION:3.0\nUID:x\nFN:Zo\xc3\xab\nITEM1.X-ABLABEL:a\nPHOTO;ENCODING=b:QUJDRA==\nTEL;TYPE=PREF,CELL:1\nEND:VCARD\n";
        assert_eq!(normalize(a), normalize(b));
        let c = b"BEGIN:VCARD\nVERSION:3.0\nUID:x\nFN:Zo\xc3\xab\nITEM1.X-ABLABEL:b\nPHOTO;ENCODING=b:QUJDRA==\nTEL;TYPE=PREF,CELL:1\nEND:VCARD\n";
        assert_ne!(normalize(a), normalize(c));
    }

    #[test]
    fn big_contact_size() {
        let c = big_contact("big-1", 30_000);
        assert!(c.vcard.len() > 40_000);
        assert_eq!(photo_bytes(&c.vcard).map(|p| p.len()), Some(30_000));
    }
}
