//! Modified UTF-7 (RFC 3501 section 5.1.3): how IMAP puts non-ASCII mailbox names on the wire,
//! and how Dovecot 2.3 names maildir folders on disk.

use anyhow::{Context, Result, bail};

use crate::b64;

/// Encodes a UTF-8 mailbox name. Printable ASCII stays as is ('&' becomes "&-"); every run of
/// other characters becomes '&' + modified base64 of its UTF-16BE code units + '-'.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut run: Vec<u8> = Vec::new();
    let flush = |run: &mut Vec<u8>, out: &mut String| {
        if !run.is_empty() {
            out.push('&');
            out.push_str(&b64::encode(run, b64::IMAP, false));
            out.push('-');
            run.clear();
        }
    };
    for ch in name.chars() {
        if (' '..='~').contains(&ch) {
            flush(&mut run, &mut out);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                run.extend_from_slice(&unit.to_be_bytes());
            }
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Decodes a modified UTF-7 mailbox name into UTF-8.
pub fn decode(wire: &str) -> Result<String> {
    let mut out = String::with_capacity(wire.len());
    let mut rest = wire;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let end = after
            .find('-')
            .with_context(|| format!("modified UTF-7 {wire:?}: '&' without closing '-'"))?;
        let chunk = &after[..end];
        if chunk.is_empty() {
            out.push('&');
        } else {
            let bytes = b64::decode(chunk.as_bytes(), b64::IMAP)
                .with_context(|| format!("modified UTF-7 {wire:?}: bad base64 {chunk:?}"))?;
            if bytes.len() % 2 != 0 {
                bail!("modified UTF-7 {wire:?}: odd number of UTF-16 bytes in {chunk:?}");
            }
            let units: Vec<u16> = bytes
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            let text = String::from_utf16(&units)
                .with_context(|| format!("modified UTF-7 {wire:?}: invalid UTF-16"))?;
            out.push_str(&text);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3501_example() {
        // The example of RFC 3501 section 5.1.3.
        let utf8 = "~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}";
        assert_eq!(encode(utf8), "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
        assert_eq!(decode("~peter/mail/&U,BTFw-/&ZeVnLIqe-").unwrap(), utf8);
    }

    #[test]
    fn ampersand_and_latin() {
        assert_eq!(encode("Zürich & Genève"), "Z&APw-rich &- Gen&AOg-ve");
        assert_eq!(
            decode("Z&APw-rich &- Gen&AOg-ve").unwrap(),
            "Zürich & Genève"
        );
        assert_eq!(encode("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(encode("&"), "&-");
    }

    #[test]
    fn surrogate_pairs_round_trip() {
        let name = "Post 📬 ✈";
        let wire = encode(name);
        assert!(wire.is_ascii());
        assert_eq!(decode(&wire).unwrap(), name);
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode("&ANw").is_err());
        assert!(decode("&A-").is_err());
    }
}
