//! Downloading the data sets kdtui reads (`kdtui data fetch`): SVHN's
//! official files, or any MNIST-format set under a base URL. Each file is
//! streamed to `<name>.part` beside its final name, resumed from there with
//! a range request after a cut, checked (MD5, or for IDX files without a
//! known sum their header against their size) and only then renamed into
//! place: the final name never holds a partial or unchecked file.

mod download;

use std::path::{Path, PathBuf};

pub use download::{agent, fetch, proxy_for};

use super::svhn_mat::OFFICIAL_MD5;

/// Where SVHN's cropped-digit files are published (format 2).
pub const SVHN_URL: &str = "http://ufldl.stanford.edu/housenumbers";

/// One file to fetch: its name in the data directory, where it comes from,
/// and what to check it against.
#[derive(Debug, Clone, PartialEq)]
pub struct Remote {
    pub name: String,
    pub url: String,
    pub check: Check,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// The MD5 sum the file must have (lowercase hex).
    Md5(String),
    /// No sum known: an IDX file of this rank whose header agrees with its
    /// size (raw or gzipped).
    Idx { rank: usize },
}

/// SVHN's train and test files (and its extra set), with their official sums.
pub fn svhn(base: &str, extra: bool) -> Vec<Remote> {
    OFFICIAL_MD5
        .iter()
        .filter(|(name, _)| extra || *name != super::svhn_mat::EXTRA)
        .map(|(name, md5)| Remote { name: name.to_string(), url: join(base, name), check: Check::Md5(md5.to_string()) })
        .collect()
}

/// The four files of an MNIST-format set, gzipped, as MNIST and its mirrors
/// publish them (the loader reads them as they are).
pub fn idx(base: &str) -> Vec<Remote> {
    super::idx::FILES
        .into_iter()
        .map(|(stem, rank)| {
            let name = format!("{stem}.gz");
            Remote { url: join(base, &name), name, check: Check::Idx { rank } }
        })
        .collect()
}

/// Replaces the checks of the files named in `sums` (`NAME=MD5`, as given to
/// `--md5`) with those sums. A name that is not among `remotes` is an error:
/// a typo would otherwise check nothing.
pub fn override_sums(remotes: &mut [Remote], sums: &[String]) -> Result<(), FetchError> {
    for given in sums {
        let (name, sum) = given.split_once('=').ok_or_else(|| FetchError::Md5Arg { given: given.clone() })?;
        let sum = sum.trim().to_ascii_lowercase();
        if sum.len() != 32 || !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(FetchError::Md5Arg { given: given.clone() });
        }
        let names = remotes.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ");
        let remote = remotes.iter_mut().find(|r| r.name == name).ok_or_else(|| FetchError::Md5Name { name: name.to_string(), names })?;
        remote.check = Check::Md5(sum);
    }
    Ok(())
}

/// Refuses a base address the files cannot be under: another scheme, no
/// host, a query or fragment (the names are appended to it).
pub fn check_base(url: &str) -> Result<(), FetchError> {
    let bad = |why: &str| Err(FetchError::BadUrl { url: url.to_string(), why: why.to_string() });
    let Ok(uri) = url.parse::<ureq::http::Uri>() else { return bad("not an address") };
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return bad(&format!("kdtui fetches over http and https, not {other}")),
        None => return bad("no scheme"),
    }
    if uri.host().is_none_or(str::is_empty) {
        return bad("no host");
    }
    if uri.query().is_some() || url.contains('#') {
        return bad("the file names are appended to it, so it cannot end in a query or fragment");
    }
    Ok(())
}

fn join(base: &str, name: &str) -> String {
    format!("{}/{name}", base.trim_end_matches('/'))
}

/// What a fetch tells the one who asked, as it goes.
pub trait Progress {
    /// A download of `name` begins at byte `from` of `total` (when known).
    fn start(&mut self, name: &str, from: u64, total: Option<u64>);
    /// `bytes` more arrived.
    fn advance(&mut self, bytes: u64);
    /// The transfer ended, well or not: the progress display ends.
    fn done(&mut self);
    /// A line worth saying (a resume, a restart, a skip).
    fn say(&mut self, line: &str);
}

/// How one file ended well.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    /// It was there already and passed its check.
    Present,
    /// Downloaded (`resumed_from` bytes of it were there from an earlier try).
    Downloaded { bytes: u64, resumed_from: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("--md5 takes NAME=SUM with a 32-digit hexadecimal MD5, got {given:?}")]
    Md5Arg { given: String },
    #[error("--md5 names {name}, which is not one of the files fetched ({names})")]
    Md5Name { name: String, names: String },
    #[error("cannot reach {url}: {why}; check the network (and HTTPS_PROXY/HTTP_PROXY/NO_PROXY), or download the file by hand into {dir}")]
    Unreachable { url: String, why: String, dir: PathBuf },
    #[error("{url}: the server answered {status}{hint}")]
    Status { url: String, status: String, hint: &'static str },
    #[error(
        "the download of {url} broke off after {got} of {total} bytes ({why}); {part} keeps them: run the same command again to resume"
    )]
    Cut { url: String, got: u64, total: String, why: String, part: PathBuf },
    #[error("stopped: {part} keeps {got} bytes; run the same command again to resume")]
    Interrupted { part: PathBuf, got: u64 },
    #[error("{0}")]
    Checksum(Box<Mismatch>),
    #[error("{path} is there but has MD5 {actual}, expected {expected}: move it away to download the file, or pass --md5 {name}={actual} to keep it")]
    PresentDiffers { path: PathBuf, name: String, actual: String, expected: String },
    #[error("{name} from {url} is not an IDX file: {why} (kept as {bad})")]
    NotIdx { name: String, url: String, why: String, bad: PathBuf },
    #[error("{path} is there but is not an IDX file: {why}; move it away to download it again")]
    PresentNotIdx { path: PathBuf, why: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot rename {from} to {to}: {source}")]
    Rename { from: PathBuf, to: PathBuf, source: std::io::Error },
    #[error("--url {url}: {why} (expected an http:// or https:// address)")]
    BadUrl { url: String, why: String },
}

/// A downloaded file whose MD5 is not the one asked for.
#[derive(Debug, thiserror::Error)]
#[error("{name} from {url} has MD5 {actual}, expected {expected}: it is not the file asked for (kept as {bad}; {why})")]
pub struct Mismatch {
    pub name: String,
    pub url: String,
    pub actual: String,
    pub expected: String,
    pub bad: PathBuf,
    /// What to do about it.
    pub why: String,
}

/// `<name>.part`: where a download in progress lives.
pub fn part_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.part"))
}

/// `<name>.bad`: a download that failed its check, kept for a look.
pub fn bad_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.bad"))
}
