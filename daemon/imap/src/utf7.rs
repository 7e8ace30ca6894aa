//! Modified UTF-7 (RFC 3501 section 5.1.3): how folder names travel on the wire.
//!
//! Printable ASCII stands for itself except `&`, which becomes `&-`; every other run of
//! characters is UTF-16BE in a base64 variant (`,` for `/`, no padding) between `&` and `-`.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Encodes a folder name for the wire.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

fn flush(pending: &mut Vec<u16>, out: &mut String) {
    if pending.is_empty() {
        return;
    }
    out.push('&');
    let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        let symbols = chunk.len() + 1;
        for i in 0..symbols {
            let index = (n >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[index as usize]));
        }
    }
    out.push('-');
    pending.clear();
}

/// A name that is not valid modified UTF-7.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("folder name {0:?} is not valid modified UTF-7")]
pub struct Utf7Error(pub String);

/// Decodes a folder name from the wire.
///
/// # Errors
///
/// [`Utf7Error`] when a shifted run is unterminated, uses a character outside the alphabet, or
/// does not hold valid UTF-16.
pub fn decode(wire: &str) -> Result<String, Utf7Error> {
    let err = || Utf7Error(wire.to_owned());
    let mut out = String::with_capacity(wire.len());
    let mut rest = wire;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find('-').ok_or_else(err)?;
        let run = &after[..end];
        if run.is_empty() {
            out.push('&');
        } else {
            let mut bits = 0u32;
            let mut nbits = 0;
            let mut bytes = Vec::with_capacity(run.len());
            for b in run.bytes() {
                let v = ALPHABET.iter().position(|a| *a == b).ok_or_else(err)?;
                bits = (bits << 6) | v as u32;
                nbits += 6;
                if nbits >= 8 {
                    nbits -= 8;
                    bytes.push((bits >> nbits) as u8);
                    bits &= (1 << nbits) - 1;
                }
            }
            if bytes.len() % 2 != 0 {
                return Err(err());
            }
            let units: Vec<u16> = bytes
                .chunks(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            out.push_str(&String::from_utf16(&units).map_err(|_| err())?);
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
    fn rfc3501_example_round_trips() {
        // The example of RFC 3501 section 5.1.3.
        let wire = "~peter/mail/&U,BTFw-/&ZeVnLIqe-";
        let name = decode(wire).unwrap();
        assert_eq!(name, "~peter/mail/台北/日本語");
        assert_eq!(encode(&name), wire);
    }

    #[test]
    fn ampersand_and_umlauts() {
        assert_eq!(encode("R&D"), "R&-D");
        assert_eq!(encode("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(encode("Zürich & Genève"), "Z&APw-rich &- Gen&AOg-ve");
        assert_eq!(
            decode("Z&APw-rich &- Gen&AOg-ve").unwrap(),
            "Zürich & Genève"
        );
    }

    #[test]
    fn characters_outside_the_bmp_use_surrogate_pairs() {
        let name = "Mail 📬";
        assert_eq!(decode(&encode(name)).unwrap(), name);
    }

    #[test]
    fn malformed_names_are_errors() {
        assert!(decode("&AOk").is_err());
        assert!(decode("&A!k-").is_err());
    }
}
