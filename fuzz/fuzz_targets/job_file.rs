//! Fuzz target `job_file`: the body is `migrated_fuzz::job_file` (fuzz/src/lib.rs), shared with the
//! stable replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| migrated_fuzz::job_file(data));
