//! Fuzz target `flash_policy_allow`: the property is `tickcast_fuzz::flash_policy_allow` (scripts/fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tickcast_fuzz::flash_policy_allow(data));
