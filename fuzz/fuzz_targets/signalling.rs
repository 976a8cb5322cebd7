//! A whole session through the signalling state machine (`plaza_protocol::fuzzing::signalling`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plaza_protocol::fuzzing::signalling(data));
