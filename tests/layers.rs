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
