//! libFuzzer wrapper: the target's body and properties live in `keygate_fuzz::ed25519_batch`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keygate_fuzz::ed25519_batch::run(data));
