#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| turn::fuzzing::stun(data));
