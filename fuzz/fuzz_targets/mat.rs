#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kdtui::engine::data::harness::mat(data);
});
