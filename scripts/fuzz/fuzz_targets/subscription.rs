//! Fuzz target `subscription`: the property is `tickcast_fuzz::subscription` (scripts/fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tickcast_fuzz::subscription(data));
