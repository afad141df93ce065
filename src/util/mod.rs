//! Small things every layer uses: crash-safe file writes, the stop signals,
//! number formatting, hashing. Imports nothing of kdtui's.

pub mod atomic_file;
pub mod format;
pub mod pages;
pub mod signals;
pub mod stderr;

use sha2::{Digest, Sha256};

/// 16 hex digits of SHA-256: names and checks checkpoints and results.
pub fn short_hash(bytes: &[u8]) -> String {
    short_digest(&Sha256::digest(bytes))
}

/// The first 16 hex digits of a digest.
pub fn short_digest(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// What a panic said, as text: a caught panic's payload (`&*boxed`) or a
/// panic hook's (`info.payload()`). Callers pass the payload itself, never
/// the box: a `&Box` would coerce to a `&dyn Any` of the box.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

/// Seconds since 1970 (0 when the clock is before it).
pub fn unix_time() -> u64 {
    unix_seconds() as u64
}

/// Seconds since 1970 with their fraction (0 when the clock is before it).
pub fn unix_seconds() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}
