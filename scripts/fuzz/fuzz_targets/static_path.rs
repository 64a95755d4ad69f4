//! Fuzz target `static_path`: the property is `tickcast_fuzz::static_path` (scripts/fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tickcast_fuzz::static_path(data));
