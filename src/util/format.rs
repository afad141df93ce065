//! Numbers as the screens and files show them, in one place so the table,
//! the report and the batch lines agree.

use std::time::Duration;

/// An accuracy in [0, 1] as percent points with two decimals: `91.02`.
pub fn points(fraction: f64) -> String {
    format!("{:.2}", 100.0 * fraction)
}

/// An accuracy in [0, 1] as a percentage: `91.02%`.
pub fn percent(fraction: f64) -> String {
    format!("{}%", points(fraction))
}

/// Bytes as megabytes (10^6) with two decimals: `0.23 MB`.
pub fn megabytes(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

/// The same, for a narrow table column: `0.23M`.
pub fn megabytes_short(bytes: u64) -> String {
    format!("{:.2}M", bytes as f64 / 1e6)
}

/// Bytes as mebibytes (2^20), no decimals: `187 MiB`.
pub fn mebibytes(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A rate rounded to a whole number, its thousands grouped: `98,765`
/// (`–` for no number).
pub fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration as `hh:mm:ss`.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(points(0.91024), "91.02");
        assert_eq!(percent(0.9), "90.00%");
        assert_eq!(megabytes(228_088), "0.23 MB");
        assert_eq!(megabytes_short(3_230_808), "3.23M");
        assert_eq!(mebibytes(187 * 1024 * 1024), "187 MiB");
        assert_eq!((thousands(98_765.4), thousands(999.6), thousands(1_234_567.0)), ("98,765".into(), "1,000".into(), "1,234,567".into()));
        assert_eq!(thousands(f64::NAN), "–");
        assert_eq!(clock(Duration::from_secs(3 * 3600 + 62)), "03:01:02");
    }
}
