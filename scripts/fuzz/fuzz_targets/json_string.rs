//! Fuzz target `json_string`: the property is `tickcast_fuzz::json_string` (scripts/fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tickcast_fuzz::json_string(data));
