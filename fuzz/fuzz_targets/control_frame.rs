//! Fuzz target `control_frame`: the body is `migrated_fuzz::control_frame` (fuzz/src/lib.rs), shared with the
//! stable replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| migrated_fuzz::control_frame(data));
