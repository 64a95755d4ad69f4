//! Fuzz target `handshake`: the property is `tickcast_fuzz::handshake` (scripts/fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tickcast_fuzz::handshake(data));
