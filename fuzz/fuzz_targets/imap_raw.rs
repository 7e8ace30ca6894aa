//! Fuzz target `imap_raw`: the body is `migrated_fuzz::imap_raw` (fuzz/src/lib.rs), shared with the
//! stable replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| migrated_fuzz::imap_raw(data));
