//! Fuzz target `sse_event`: the property is `tickcast_fuzz::sse_event` (scripts/fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tickcast_fuzz::sse_event(data));
