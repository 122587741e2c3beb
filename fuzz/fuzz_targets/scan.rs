//! libFuzzer wrapper: the target's body and properties live in `keygate_fuzz::scan`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keygate_fuzz::scan::run(data));
