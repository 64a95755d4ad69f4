//! Fuzz target `origin`: the property is `tickcast_fuzz::origin` (scripts/fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tickcast_fuzz::origin(data));
