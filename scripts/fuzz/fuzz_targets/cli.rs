//! Fuzz target `cli`: the property is `tickcast_fuzz::cli` (scripts/fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tickcast_fuzz::cli(data));
