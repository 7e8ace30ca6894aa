//! Fuzz target `csv_batch`: the body is `migrated_fuzz::csv_batch` (fuzz/src/lib.rs), shared with the
//! stable replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| migrated_fuzz::csv_batch(data));
