//! UID sets (`1:5,7,9:12`), written compactly and read back from APPENDUID.

/// Formats UIDs as a compact IMAP sequence set. The input need not be sorted.
pub fn format(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn ranges_are_compressed() {
        assert_eq!(super::format(&[9, 1, 2, 3, 5, 10, 11]), "1:3,5,9:11");
        assert_eq!(super::format(&[4]), "4");
    }
}
