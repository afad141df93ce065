//! toml's errors as one line: where, which key, what was wrong, and a
//! suggestion for a misspelt key or value.

/// toml's message spans several lines with a source excerpt; this keeps one
/// line: where, which key, what was wrong, and a suggestion for a misspelt
/// key or value.
pub(super) fn one_line(e: &toml::de::Error, text: &str) -> String {
    let mut msg = e.message().trim().lines().map(str::trim).collect::<Vec<_>>().join("; ");
    for (rust, plain) in [
        ("expected usize", "expected a whole number >= 0"),
        ("expected u64", "expected a whole number >= 0"),
        ("expected u32", "expected a whole number >= 0"),
        ("expected f64", "expected a number"),
    ] {
        msg = msg.replace(rust, plain);
    }
    if let Some(suggestion) = suggestion(&msg) {
        msg += &format!("; did you mean `{suggestion}`?");
    }
    let Some(span) = e.span() else { return msg };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    match key_at(text, span.start) {
        Some(key) if !msg.contains("unknown field") => format!("line {line}, column {column}: `{key}`: {msg}"),
        _ => format!("line {line}, column {column}: {msg}"),
    }
}

/// The closest candidate of a serde "unknown field/variant `x`, expected one
/// of `a`, `b`" message, when it is close enough to be a likely typo.
fn suggestion(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `").or_else(|| msg.strip_prefix("unknown variant `"))?;
    let (given, rest) = rest.split_once('`')?;
    let candidates = rest.split('`').skip(1).step_by(2);
    candidates
        .map(|c| (strsim::damerau_levenshtein(&given.to_lowercase(), &c.to_lowercase()), c))
        .filter(|&(d, c)| d <= 2.max(c.len() / 4) && d < c.len())
        .min()
        .map(|(_, c)| c.to_string())
}

/// `section.key` of the `key = value` line holding byte `at`, if it is one.
fn key_at(text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let key = line.split_once('=')?.0.trim();
    if key.is_empty() || key.starts_with('[') || key.starts_with('#') {
        return None;
    }
    let section = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    Some(match section {
        Some(section) => format!("{section}.{key}"),
        None => key.to_string(),
    })
}
