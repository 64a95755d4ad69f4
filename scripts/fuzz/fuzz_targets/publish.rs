//! Fuzz target `publish`: the property is `tickcast_fuzz::publish` (scripts/fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tickcast_fuzz::publish(data));
