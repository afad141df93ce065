//! Files are written to a temporary name beside their target, synced, then
//! renamed into place: a crash at any instant leaves the old file or the new
//! one, never a torn one.

use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct WriteError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// In the names of temporary files: a process killed mid-write leaves one.
const TMP_MARK: &str = ".kdtui-tmp-";

/// Removes the temporary files a killed process left in `dir` (not below it).
pub fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().contains(TMP_MARK) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

pub fn write(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let err = |source| WriteError {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!("{TMP_MARK}{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// Fails early, naming `dir`, when files cannot be created in it: better at
/// start than after an hour of training.
pub fn check_writable(dir: &Path) -> Result<(), WriteError> {
    let probe = dir.join(format!(".kdtui-write-test-{}", std::process::id()));
    write(&probe, b"").map_err(|e| WriteError {
        path: dir.to_path_buf(),
        source: e.source,
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_and_replaces_without_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/f.txt");
        super::write(&p, b"one").unwrap();
        super::write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn leftovers_of_a_killed_writer_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("results.json.kdtui-tmp-123"), b"{ torn").unwrap();
        std::fs::write(dir.path().join("results.json"), b"{}").unwrap();
        super::remove_leftovers(dir.path());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["results.json"]);
    }
}
