//! Fuzz target `imap_response`: the body is `migrated_fuzz::imap_response` (fuzz/src/lib.rs),
//! shared with the stable replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: {
        // The session catches imap-proto's panics (`unpanicked` in daemon/imap/src/session.rs),
        // but libfuzzer-sys' panic hook aborts on every panic, caught or not. Back to the
        // default hook: a panic that escapes our code still aborts the run (libfuzzer-sys
        // catches it around each input and aborts), and is saved as a crash.
        drop(std::panic::take_hook());
    },
    |data: &[u8]| migrated_fuzz::imap_response(data)
);
