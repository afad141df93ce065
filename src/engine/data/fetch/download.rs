//! One file: skip it when it is there and checks out, else download it to
//! `<name>.part` (resuming what an earlier try left), check it, rename it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::{Digest, Md5};

use super::{bad_path, part_path, Check, FetchError, Fetched, Progress, Remote};
use crate::engine::data::idx;

/// Bytes read from the network (and written) at a time; the stop request is
/// looked at between them.
const CHUNK: usize = 256 * 1024;

/// The HTTP client every fetch uses: proxies from the environment (ureq
/// reads ALL_PROXY, HTTPS_PROXY, HTTP_PROXY and NO_PROXY), statuses as
/// values so that each gets its own message, and timeouts so that a dead
/// network ends in an error instead of a wait without end.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .user_agent(concat!("kdtui/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// The proxy `agent` sends a request for `url` through, if any.
pub fn proxy_for(agent: &ureq::Agent, url: &str) -> Option<String> {
    let proxy = agent.config().proxy()?;
    let uri: ureq::http::Uri = url.parse().ok()?;
    (!proxy.is_no_proxy(&uri)).then(|| proxy.uri().to_string())
}

/// Fetches `remote` into `dir` (which must exist). `stop` is asked between
/// chunks; when it says yes the bytes so far stay in `<name>.part`.
pub fn fetch(
    agent: &ureq::Agent,
    remote: &Remote,
    dir: &Path,
    stop: &dyn Fn() -> bool,
    progress: &mut dyn Progress,
) -> Result<Fetched, FetchError> {
    let target = dir.join(&remote.name);
    if target.exists() {
        check_present(remote, &target)?;
        return Ok(Fetched::Present);
    }
    let part = part_path(dir, &remote.name);
    let mut from = std::fs::metadata(&part).map_or(0, |m| m.len());
    let mut response = get(agent, remote, from, dir)?;
    match response.status().as_u16() {
        206 if from > 0 && range_start(&response) == Some(from) => {
            progress.say(&format!("{}: resuming at byte {from} ({} kept from an earlier try)", remote.name, part.display()));
        }
        200 if from > 0 => {
            progress.say(&format!("{}: the server ignored the range request; starting it over", remote.name));
            from = 0;
        }
        416 if from > 0 => {
            // Nothing lies past the bytes kept: they may be the whole file.
            if check(remote, &part).is_ok() {
                progress.say(&format!("{}: {} already held the whole file", remote.name, part.display()));
                finish(&part, &target)?;
                return Ok(Fetched::Downloaded { bytes: from, resumed_from: from });
            }
            progress.say(&format!("{}: the server has no bytes past the {from} kept; starting it over", remote.name));
            from = 0;
            response = get(agent, remote, 0, dir)?;
            expect_status(&response, remote, 200)?;
        }
        _ => expect_status(&response, remote, 200)?,
    }
    let length = response.headers().get("content-length").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let total = length.map(|n| n + from);

    let write_err = |source| FetchError::Write { path: part.clone(), source };
    let mut hasher = Md5::new();
    let mut file = if from == 0 {
        File::create(&part).map_err(write_err)?
    } else {
        hash_file(&part, &mut hasher)?;
        OpenOptions::new().append(true).open(&part).map_err(write_err)?
    };
    progress.start(&remote.name, from, total);
    let mut got = from;
    let mut body = response.into_body().into_reader();
    let mut buffer = vec![0u8; CHUNK];
    let cut = |got: u64, why: String| FetchError::Cut {
        url: remote.url.clone(),
        got,
        total: total.map_or("an unknown number".into(), |t| t.to_string()),
        why,
        part: part.clone(),
    };
    loop {
        if stop() {
            file.sync_all().map_err(write_err)?;
            progress.done();
            return Err(FetchError::Interrupted { part: part.clone(), got });
        }
        let n = match body.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = file.sync_all();
                progress.done();
                return Err(cut(got, e.to_string()));
            }
        };
        file.write_all(&buffer[..n]).map_err(write_err)?;
        hasher.update(&buffer[..n]);
        got += n as u64;
        progress.advance(n as u64);
    }
    file.sync_all().map_err(write_err)?;
    drop(file);
    progress.done();
    if let Some(total) = total.filter(|&t| t != got) {
        return Err(cut(got, format!("the server announced {total}")));
    }
    // The sum was taken on the way in; an IDX file is read back and parsed.
    let problem = match &remote.check {
        Check::Md5(expected) => {
            let actual = format!("{:x}", hasher.finalize());
            (actual != *expected).then(|| Problem::Sum { actual, expected: expected.clone() })
        }
        Check::Idx { .. } => check(remote, &part).err().map(Problem::NotIdx),
    };
    if let Some(problem) = problem {
        let bad = set_aside(&part, dir, &remote.name)?;
        let (name, url) = (remote.name.clone(), remote.url.clone());
        return Err(match problem {
            Problem::Sum { actual, expected } => FetchError::Checksum { name, url, actual, expected, bad },
            Problem::NotIdx(why) => FetchError::NotIdx { name, url, why, bad },
        });
    }
    finish(&part, &target)?;
    Ok(Fetched::Downloaded { bytes: got, resumed_from: from })
}

/// Why a downloaded file is refused.
enum Problem {
    Sum { actual: String, expected: String },
    NotIdx(String),
}

fn get(agent: &ureq::Agent, remote: &Remote, from: u64, dir: &Path) -> Result<ureq::http::Response<ureq::Body>, FetchError> {
    let mut request = agent.get(&remote.url);
    if from > 0 {
        request = request.header("Range", format!("bytes={from}-"));
    }
    request.call().map_err(|e| FetchError::Unreachable { url: remote.url.clone(), why: unreachable_why(&e), dir: dir.to_path_buf() })
}

/// Why a request got no answer, in a user's words where ureq's are terse.
fn unreachable_why(e: &ureq::Error) -> String {
    match e {
        ureq::Error::HostNotFound => "the host name does not resolve (no network, or no DNS)".into(),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => "the connection was refused".into(),
        ureq::Error::Timeout(_) => format!("no answer in time ({e})"),
        _ => e.to_string(),
    }
}

fn expect_status(response: &ureq::http::Response<ureq::Body>, remote: &Remote, wanted: u16) -> Result<(), FetchError> {
    let status = response.status();
    if status.as_u16() == wanted {
        return Ok(());
    }
    let hint = match status.as_u16() {
        404 | 410 => " (no such file there: check the URL, or --url for a mirror)",
        500..=599 => " (a fault on the server's side: try again later, or --url for a mirror)",
        _ => "",
    };
    Err(FetchError::Status { url: remote.url.clone(), status: status.to_string(), hint })
}

/// The first byte a 206 answer holds, from its `Content-Range: bytes a-b/n`.
fn range_start(response: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    let value = response.headers().get("content-range")?.to_str().ok()?;
    value.strip_prefix("bytes ")?.split('-').next()?.trim().parse().ok()
}

/// A file already under its final name: it must pass its check, or the user
/// decides (it may be theirs, of another version).
fn check_present(remote: &Remote, path: &Path) -> Result<(), FetchError> {
    match &remote.check {
        Check::Md5(expected) => {
            let mut hasher = Md5::new();
            hash_file(path, &mut hasher)?;
            let actual = format!("{:x}", hasher.finalize());
            if actual == *expected {
                Ok(())
            } else {
                Err(FetchError::PresentDiffers { path: path.to_path_buf(), name: remote.name.clone(), actual, expected: expected.clone() })
            }
        }
        Check::Idx { .. } => check(remote, path).map_err(|why| FetchError::PresentNotIdx { path: path.to_path_buf(), why }),
    }
}

/// Whether the file at `path` is what `remote` asks for.
fn check(remote: &Remote, path: &Path) -> Result<(), String> {
    match &remote.check {
        Check::Md5(expected) => {
            let mut hasher = Md5::new();
            hash_file(path, &mut hasher).map_err(|e| e.to_string())?;
            let actual = format!("{:x}", hasher.finalize());
            if actual == *expected {
                Ok(())
            } else {
                Err(format!("MD5 {actual}, expected {expected}"))
            }
        }
        Check::Idx { rank } => {
            let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            idx::decode(bytes, *rank).map(|_| ())
        }
    }
}

fn hash_file(path: &Path, hasher: &mut Md5) -> Result<(), FetchError> {
    let read_err = |source| FetchError::Read { path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(read_err)?;
    let mut buffer = vec![0u8; CHUNK];
    loop {
        match file.read(&mut buffer).map_err(read_err)? {
            0 => return Ok(()),
            n => hasher.update(&buffer[..n]),
        }
    }
}

fn set_aside(part: &Path, dir: &Path, name: &str) -> Result<PathBuf, FetchError> {
    let bad = bad_path(dir, name);
    std::fs::rename(part, &bad).map_err(|source| FetchError::Write { path: bad.clone(), source })?;
    Ok(bad)
}

/// The checked file takes its final name; the directory entry is synced so
/// that a crash right after leaves it there.
fn finish(part: &Path, target: &Path) -> Result<(), FetchError> {
    std::fs::rename(part, target).map_err(|source| FetchError::Write { path: target.to_path_buf(), source })?;
    if let Some(dir) = target.parent() {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}
