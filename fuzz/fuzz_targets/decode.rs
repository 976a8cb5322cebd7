//! One WebSocket text frame through the signalling decoder (`plaza::fuzzing::decode`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plaza::fuzzing::decode(data));
