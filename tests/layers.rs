//! The layering rule of `src/lib.rs`: each top-level folder imports only the
//! folders below it, so the architecture the folder names show is the one the
//! code has, and no dependency cycle can form between them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Each layer and the layers it may import, top to bottom.
const LAYERS: [(&str, &[&str]); 7] = [
    ("cli", &["monitor", "outputs", "engine", "protocol", "study", "util"]),
    ("monitor", &["outputs", "protocol", "study", "util"]),
    ("outputs", &["protocol", "study", "util"]),
    ("engine", &["protocol", "study", "util"]),
    ("protocol", &["study", "util"]),
    ("study", &["util"]),
    ("util", &[]),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a file names as `crate::<module>`.
fn imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            found.insert(name);
        }
    }
    found
}

#[test]
fn every_layer_imports_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut broken = vec![];
    for (layer, allowed) in LAYERS {
        let mut files = vec![];
        rust_files(&src.join(layer), &mut files);
        assert!(!files.is_empty(), "src/{layer}/ has no files");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for module in imports(&text) {
                if module != layer && !allowed.contains(&module.as_str()) {
                    broken.push(format!("{} imports crate::{module}", file.strip_prefix(&src).unwrap().display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "imports against the layering rule of src/lib.rs:\n{}", broken.join("\n"));
}

#[test]
fn the_top_level_modules_are_the_layers() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let declared: BTreeSet<&str> = lib.lines().filter_map(|l| l.strip_prefix("pub mod ")?.strip_suffix(';')).collect();
    let layers: BTreeSet<&str> = LAYERS.iter().map(|(l, _)| *l).collect();
    assert_eq!(declared, layers, "src/lib.rs declares other modules than the layers");
}

#[test]
fn the_rule_sees_a_wrong_import() {
    assert_eq!(
        imports("use crate::outputs::Sink;\nlet x = crate::util::format::percent(1.0);"),
        BTreeSet::from(["outputs".to_string(), "util".to_string()])
    );
}

/// A file's module path: src/a/b.rs and src/a/b/mod.rs are `a::b`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().to_string()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The production code of a file: comments and `#[cfg(test)]` modules out
/// (a test module's `super` is the file itself).
fn production(text: &str) -> String {
    let code = match text.find("#[cfg(test)]\nmod ").or_else(|| text.find("#[cfg(test)]\npub(crate) mod ")) {
        Some(at) => &text[..at],
        None => text,
    };
    code.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// The paths a file names, as written: `crate::a::b`, `super::c`, `child::d`
/// and each branch of a `use x::{...}` group, each with the file's lines
/// that are its parent's declarations (`mod x;`, `pub use x::...`) left out.
fn named_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = vec![];
    for statement in code.split(';') {
        let trimmed = statement.trim_start();
        if trimmed.starts_with("pub use ") || trimmed.starts_with("pub mod ") || trimmed.starts_with("mod ") {
            continue;
        }
        let chars: Vec<char> = statement.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let word_start = chars[i].is_ascii_alphabetic() || chars[i] == '_';
            let after_colons = i >= 2 && chars[i - 1] == ':' && chars[i - 2] == ':';
            let after_word = i >= 1 && (chars[i - 1].is_ascii_alphanumeric() || chars[i - 1] == '_');
            if !word_start || after_colons || after_word {
                i += 1;
                continue;
            }
            let (paths, end) = path_at(&chars, i);
            out.extend(paths.into_iter().filter(|p| p.len() > 1));
            i = end.max(i + 1);
        }
    }
    out
}

/// The path (or, at a `{`, the group of paths) starting at `i`.
fn path_at(chars: &[char], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let mut prefix = vec![];
    loop {
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        prefix.push(chars[start..i].iter().collect::<String>());
        if !(i + 1 < chars.len() && chars[i] == ':' && chars[i + 1] == ':') {
            return (vec![prefix], i);
        }
        i += 2;
        if i < chars.len() && chars[i] == '{' {
            let mut paths = vec![];
            i += 1;
            while i < chars.len() && chars[i] != '}' {
                if chars[i].is_ascii_alphabetic() || chars[i] == '_' {
                    let (inner, end) = path_at(chars, i);
                    paths.extend(inner.into_iter().map(|p| prefix.iter().cloned().chain(p).collect()));
                    i = end;
                } else {
                    i += 1;
                }
            }
            return (paths, i + 1);
        }
        if i >= chars.len() || !(chars[i].is_ascii_alphabetic() || chars[i] == '_') {
            return (vec![prefix], i);
        }
    }
}

/// Every file-to-file import in src/: file -> the module files it names.
fn file_imports(src: &Path) -> Vec<(String, String)> {
    let mut files = vec![];
    rust_files(src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(src, f)).collect();
    let name = |m: &[String]| if m.is_empty() { "crate".to_string() } else { m.join("::") };
    let mut edges = BTreeSet::new();
    for file in &files {
        let here = module_of(src, file);
        let text = production(&std::fs::read_to_string(file).unwrap());
        let children: BTreeSet<String> = text
            .lines()
            .filter_map(|l| l.trim().trim_start_matches("pub ").strip_prefix("mod ")?.strip_suffix(';').map(str::to_string))
            .collect();
        for path in named_paths(&text) {
            // `self` is the file's module, `super` its parent, whether the
            // file is a.rs or a/mod.rs; a declared child is named bare.
            let mut target: Vec<String> = match path[0].as_str() {
                "crate" => vec![],
                "self" => here.clone(),
                "super" if !here.is_empty() => here[..here.len() - 1].to_vec(),
                child if children.contains(child) => here.clone(),
                _ => continue,
            };
            let rest = match path[0].as_str() {
                "crate" | "self" => &path[1..],
                "super" => {
                    let ups = path.iter().take_while(|p| *p == "super").count();
                    for _ in 1..ups {
                        target.pop();
                    }
                    &path[ups..]
                }
                _ => &path[..],
            };
            // The longest prefix that is a file of its own (`super::X`: the
            // parent's file, when X is an item in it).
            let mut best = modules.contains(&target).then(|| target.clone());
            for segment in rest {
                target.push(segment.clone());
                if modules.contains(&target) {
                    best = Some(target.clone());
                }
            }
            if let Some(best) = best.filter(|b| *b != here) {
                edges.insert((name(&here), name(&best)));
            }
        }
    }
    edges.into_iter().collect()
}

/// No two files of src/ import each other, directly or round a longer
/// loop: a file can be read, changed and tested from the files it names,
/// which never lead back to it. A parent's `mod` declarations and its
/// `pub use` of its children's items (how a folder presents what is inside)
/// do not count; everything else a parent takes from a child does.
#[test]
fn no_import_cycle_between_files() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = file_imports(&src);
    let mut cycles = vec![];
    for (from, _) in &edges {
        // Depth-first from `from`: does some path return to it?
        let mut stack = vec![vec![from.clone()]];
        let mut seen = BTreeSet::new();
        while let Some(path) = stack.pop() {
            let last = path.last().unwrap().clone();
            for (_, next) in edges.iter().filter(|(a, _)| *a == last) {
                if next == from {
                    let mut cycle = path.clone();
                    cycle.push(from.clone());
                    cycles.push(cycle.join(" -> "));
                } else if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push(longer);
                }
            }
        }
    }
    cycles.sort();
    cycles.dedup();
    assert!(cycles.is_empty(), "import cycles between files of src/:\n{}", cycles.join("\n"));
}

#[test]
fn the_cycle_check_reads_paths_as_rust_does() {
    let paths = named_paths(
        "use super::conv::{matmul, Shape};\nlet x = crate::util::format::percent(1.0);\npub use kd::soft;\nmod kd;\nkd::hard(z)",
    );
    let shown: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(shown, ["super::conv::matmul", "super::conv::Shape", "crate::util::format::percent", "kd::hard"]);
}

/// A file a newcomer reads in one sitting: none in src/ passes 450 lines
/// (a unit test module too long for its file goes to `<file>/tests.rs`).
#[test]
fn no_file_in_src_is_over_450_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    rust_files(&src, &mut files);
    let long: Vec<String> = files
        .iter()
        .map(|f| (f, std::fs::read_to_string(f).unwrap().lines().count()))
        .filter(|(_, lines)| *lines > 450)
        .map(|(f, lines)| format!("{} ({lines} lines)", f.strip_prefix(&src).unwrap().display()))
        .collect();
    assert!(long.is_empty(), "files of src/ over 450 lines: {}", long.join(", "));
}
