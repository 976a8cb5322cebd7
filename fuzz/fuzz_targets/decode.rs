//! One WebSocket text frame through the signalling decoder (`plaza_protocol::fuzzing::decode`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plaza_protocol::fuzzing::decode(data));
