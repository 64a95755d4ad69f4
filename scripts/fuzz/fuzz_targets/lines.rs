//! Fuzz target `lines`: the property is `tickcast_fuzz::lines` (scripts/fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tickcast_fuzz::lines(data));
