#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kdtui::data::harness::mat(data));
