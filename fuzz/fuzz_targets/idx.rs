#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kdtui::data::harness::idx(data));
