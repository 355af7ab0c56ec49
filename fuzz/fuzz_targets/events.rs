//! EventBridge events as a function receives them: never a panic, and a
//! rejection is a short message. Body: `ebs_lifecycle_core::fuzzing::event`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ebs_lifecycle_core::fuzzing::event(data));
