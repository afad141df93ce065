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

impl WriteError {
    /// The filesystem is full (or the user's quota is): every later write
    /// there would fail too, so the plan stops instead of training on.
    pub fn is_disk_full(&self) -> bool {
        matches!(self.source.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
    }
}

/// In the names of temporary files: a process killed mid-write leaves one.
/// The mark is followed by `<host>-<pid>`: shards on several nodes write into
/// one shared directory, and a pid alone is unique only on one host.
const TMP_MARK: &str = ".kdtui-tmp-";

/// The name of `check_writable`'s empty probe file, before `<host>-<pid>`.
const PROBE: &str = ".kdtui-write-test-";

/// This machine's name, as the kernel has it ("" when it cannot be read).
pub fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

fn writer_tag() -> String {
    format!("{}-{}", host(), std::process::id())
}

/// Removes the temporary files (and `check_writable` probes) that killed
/// processes of this host left in `dir` (not below it). A file of a live
/// process, or of another host, may be a write in progress (another
/// shard's) and is left alone.
pub fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let prefix = format!("{}-", host());
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let tag = name.split_once(TMP_MARK).map(|(_, tag)| tag).or_else(|| name.strip_prefix(PROBE));
        let Some(tag) = tag else { continue };
        let dead = tag
            .strip_prefix(&prefix)
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists());
        if dead {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

pub fn write(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let err = |source| WriteError { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!("{TMP_MARK}{}", writer_tag()));
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

/// Appends `bytes` to `file` (which lives at `path`), all or nothing: a
/// write that fails part-way (a full disk) is cut back to the length the
/// file had, and a file that was empty is removed, so a reader never meets
/// half an entry and nothing is left behind. With `sync`, synced too.
pub fn append_whole(file: &mut std::fs::File, path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom};
    let before = file.metadata()?.len();
    let written = file.write_all(bytes).and_then(|()| if sync { file.sync_data() } else { Ok(()) });
    if written.is_err() {
        if before == 0 {
            let _ = std::fs::remove_file(path);
        } else {
            let _ = file.set_len(before).and_then(|()| file.seek(SeekFrom::Start(before)));
        }
    }
    written
}

/// Fails early, naming `dir`, when files cannot be created in it: better at
/// start than after an hour of training. Removes what an earlier probe (or
/// write) killed half-way left there first: `dir` may be one no other
/// cleaning reaches (the checkpoints' study folder).
pub fn check_writable(dir: &Path) -> Result<(), WriteError> {
    remove_leftovers(dir);
    let probe = dir.join(format!("{PROBE}{}", writer_tag()));
    write(&probe, b"").map_err(|e| WriteError { path: dir.to_path_buf(), source: e.source })?;
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
    fn leftovers_of_a_killed_writer_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let host = super::host();
        // A pid above the kernel's limit (4194304) belongs to no process.
        let dead = format!("results.json.kdtui-tmp-{host}-4999999");
        let live = format!("results.csv.kdtui-tmp-{host}-1");
        let elsewhere = "report.md.kdtui-tmp-node17-4999999";
        for name in [dead.as_str(), live.as_str(), elsewhere] {
            std::fs::write(dir.path().join(name), b"{ torn").unwrap();
        }
        std::fs::write(dir.path().join("results.json"), b"{}").unwrap();
        super::remove_leftovers(dir.path());
        assert_eq!(names(dir.path()), [elsewhere, live.as_str(), "results.json"], "pid 1 lives; node17 may be writing");
    }

    /// A session killed inside `check_writable` leaves its probe (renamed, or
    /// still under its temporary name); the next session's probe removes it.
    #[test]
    fn a_killed_probe_is_removed_by_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let host = super::host();
        let probe = format!(".kdtui-write-test-{host}-4999999");
        let probe_tmp = format!("{probe}.kdtui-tmp-{host}-4999999");
        let live = format!(".kdtui-write-test-{host}-1");
        for name in [&probe, &probe_tmp, &live] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        super::check_writable(dir.path()).unwrap();
        assert_eq!(names(dir.path()), [live], "pid 1 lives");
    }

    /// The names of the files in `dir`, sorted.
    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    }
}
