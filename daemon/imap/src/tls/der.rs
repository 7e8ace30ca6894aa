//! Just enough of X.509's DER to explain a certificate in words and to check one that is
//! trusted as it is: its validity period, subject and issuer common names, and subject
//! alternative names. Everything cryptographic stays with rustls and webpki.

/// What a refusal or the check of a certificate named in `ca_file` needs to know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Facts {
    /// Unix seconds.
    pub(super) not_before: i64,
    /// Unix seconds.
    pub(super) not_after: i64,
    pub(super) common_name: Option<String>,
    pub(super) issuer_cn: Option<String>,
    /// Whether it has a subjectAltName extension.
    pub(super) has_san: bool,
    /// DNS names and IP addresses of the subjectAltName.
    pub(super) san: Vec<String>,
    /// Issuer and subject are the same name.
    pub(super) self_signed: bool,
}

impl Facts {
    /// The names the certificate is made out for, as a person reads them.
    pub(super) fn names(&self) -> Vec<String> {
        if self.has_san {
            return self.san.clone();
        }
        self.common_name.iter().cloned().collect()
    }
}

/// One DER element: (tag, contents, what follows).
fn element(input: &[u8]) -> Result<(u8, &[u8], &[u8]), &'static str> {
    let (&tag, rest) = input.split_first().ok_or("truncated")?;
    let (&first, mut rest) = rest.split_first().ok_or("truncated")?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err("bad length");
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err("truncated");
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];

/// Reads a certificate's facts.
pub(super) fn facts(cert: &[u8]) -> Result<Facts, &'static str> {
    let (tag, cert, _) = element(cert)?;
    if tag != SEQUENCE {
        return Err("not a certificate");
    }
    let (tag, tbs, _) = element(cert)?;
    if tag != SEQUENCE {
        return Err("not a certificate");
    }
    let (mut tag, mut value, mut rest) = element(tbs)?;
    if tag == 0xa0 {
        // [0] version
        (tag, value, rest) = element(rest)?;
    }
    let _serial = (tag, value);
    let (_, _signature, rest) = element(rest)?;
    let (_, issuer, rest) = element(rest)?;
    let (_, validity, rest) = element(rest)?;
    let (_, subject, mut rest) = element(rest)?;
    let (nb_tag, nb, after) = element(validity)?;
    let (na_tag, na, _) = element(after)?;
    let mut facts = Facts {
        not_before: time(nb_tag, nb)?,
        not_after: time(na_tag, na)?,
        common_name: common_name(subject),
        issuer_cn: common_name(issuer),
        self_signed: issuer == subject,
        ..Facts::default()
    };
    // subjectPublicKeyInfo, then optional [1], [2], [3] extensions.
    (_, _, rest) = element(rest)?;
    while !rest.is_empty() {
        let (tag, value, next) = element(rest)?;
        rest = next;
        if tag != 0xa3 {
            continue;
        }
        let (_, mut exts, _) = element(value)?;
        while !exts.is_empty() {
            let (_, ext, next) = element(exts)?;
            exts = next;
            let (_, oid, ext_rest) = element(ext)?;
            if oid != OID_SAN {
                continue;
            }
            facts.has_san = true;
            let (mut tag, mut value, mut ext_rest) = element(ext_rest)?;
            if tag == 0x01 {
                // critical
                (tag, value, ext_rest) = element(ext_rest)?;
            }
            let _ = (tag, ext_rest);
            let (_, mut names, _) = element(value)?;
            while !names.is_empty() {
                let (tag, name, next) = element(names)?;
                names = next;
                match tag {
                    0x82 => facts.san.push(String::from_utf8_lossy(name).into_owned()),
                    0x87 if name.len() == 4 => facts
                        .san
                        .push(name.iter().map(u8::to_string).collect::<Vec<_>>().join(".")),
                    0x87 if name.len() == 16 => {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(name);
                        facts.san.push(std::net::Ipv6Addr::from(a).to_string());
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(facts)
}

/// The first common name of an X.501 name.
fn common_name(mut name: &[u8]) -> Option<String> {
    while !name.is_empty() {
        let (_, set, next) = element(name).ok()?;
        name = next;
        let (_, atv, _) = element(set).ok()?;
        let (_, oid, rest) = element(atv).ok()?;
        if oid == OID_CN {
            let (_, value, _) = element(rest).ok()?;
            return Some(String::from_utf8_lossy(value).into_owned());
        }
    }
    None
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) to unix seconds.
fn time(tag: u8, value: &[u8]) -> Result<i64, &'static str> {
    let text = std::str::from_utf8(value).map_err(|_| "bad time")?;
    if !text.is_ascii() {
        return Err("bad time");
    }
    let text = text.strip_suffix('Z').ok_or("time not in UTC")?;
    let digits = |s: &str| s.parse::<i64>().map_err(|_| "bad time");
    let (year, rest) = match tag {
        0x17 if text.len() == 12 => {
            let yy = digits(&text[..2])?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &text[2..])
        }
        0x18 if text.len() == 14 => (digits(&text[..4])?, &text[4..]),
        _ => return Err("bad time"),
    };
    let month = digits(&rest[..2])?;
    let day = digits(&rest[2..4])?;
    let (h, m, s) = (
        digits(&rest[4..6])?,
        digits(&rest[6..8])?,
        digits(&rest[8..10])?,
    );
    Ok(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Howard Hinnant's days_from_civil.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A unix time as `2024-05-01 12:00 UTC`.
pub(super) fn date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(time(0x17, b"240501120000Z"), Ok(1_714_564_800));
        assert_eq!(time(0x18, b"20240501120000Z"), Ok(1_714_564_800));
        assert_eq!(date(1_714_564_800), "2024-05-01 12:00 UTC");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(facts(&[]).is_err());
        assert!(facts(&[0x30, 0x82, 0xff]).is_err());
        assert!(facts(&[0x30, 0x03, 0x30, 0x01, 0x00]).is_err());
    }
}
