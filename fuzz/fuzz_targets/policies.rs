//! `POLICIES` documents: never a panic, a rejection is a short message, an
//! accepted schedule yields slots. Body: `ebs_lifecycle_core::fuzzing::policy_document`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ebs_lifecycle_core::fuzzing::policy_document(data));
