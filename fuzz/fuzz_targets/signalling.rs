//! A whole session through the signalling state machine (`plaza::fuzzing::signalling`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plaza::fuzzing::signalling(data));
