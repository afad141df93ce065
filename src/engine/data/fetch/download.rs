//! One file: skip it when it is there and checks out, else download it to
//! `<name>.part` (resuming what an earlier try left), check it, rename it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::{Digest, Md5};

use super::{bad_path, part_path, Check, FetchError, Fetched, Mismatch, Progress, Remote};
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

/// The proxy `agent` sends a request for `url` through, if any, as
/// `host:port` (its URI may hold a password, which is never printed).
pub fn proxy_for(agent: &ureq::Agent, url: &str) -> Option<String> {
    let proxy = agent.config().proxy()?;
    let uri: ureq::http::Uri = url.parse().ok()?;
    (!proxy.is_no_proxy(&uri)).then(|| format!("{}:{}", proxy.host(), proxy.port()))
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
    let kept = std::fs::metadata(&part).map_or(0, |m| m.len());
    let (response, from) = match begin(agent, remote, dir, &part, kept, progress)? {
        Begun::Body(response, from) => (response, from),
        Begun::Whole => {
            // An earlier process wrote it; it may not be on the disk yet.
            File::open(&part).and_then(|f| f.sync_all()).map_err(|source| FetchError::Write { path: part.clone(), source })?;
            finish(&part, &target)?;
            return Ok(Fetched::Downloaded { bytes: kept, resumed_from: kept });
        }
    };
    let total = total(&response, from);
    progress.start(&remote.name, from, total);
    // Whatever ends the transfer, the progress display ends before its line.
    let streamed = stream(response, remote, &part, from, total, stop, progress);
    progress.done();
    let (got, hasher) = streamed?;

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
        let why = if from > 0 {
            format!("it was resumed at byte {from} from an earlier try, and the file may have changed on the server since: run the same command again to download it whole")
        } else if total.is_none() {
            "the server did not give its size, so it may have been cut short: run the same command again".into()
        } else {
            format!("--md5 {name}=SUM takes another version's sum")
        };
        return Err(match problem {
            Problem::Sum { actual, expected } => FetchError::Checksum(Box::new(Mismatch { name, url, actual, expected, bad, why })),
            Problem::NotIdx(reason) => FetchError::NotIdx { name, url, why: reason, bad },
        });
    }
    finish(&part, &target)?;
    Ok(Fetched::Downloaded { bytes: got, resumed_from: from })
}

/// How a download begins: a body to read from byte `from` (0: the whole
/// file), or the bytes kept from an earlier try already being the file.
enum Begun {
    Body(ureq::http::Response<ureq::Body>, u64),
    Whole,
}

/// Asks for the file, or for the rest of it after the `kept` bytes of an
/// earlier try. Any answer but the rest (a 206 from exactly there) starts
/// the file over, saying why, so that a `.part` never blocks a fetch.
fn begin(
    agent: &ureq::Agent,
    remote: &Remote,
    dir: &Path,
    part: &Path,
    kept: u64,
    progress: &mut dyn Progress,
) -> Result<Begun, FetchError> {
    let response = get(agent, remote, kept, dir)?;
    if kept == 0 {
        expect_status(&response, remote, 200)?;
        return Ok(Begun::Body(response, 0));
    }
    let status = response.status().as_u16();
    let why = match status {
        206 => match range_start(&response) {
            Some(start) if start == kept => {
                progress.say(&format!("{}: resuming at byte {kept} ({} kept from an earlier try)", remote.name, part.display()));
                return Ok(Begun::Body(response, kept));
            }
            start => format!("the server sent bytes from {} instead of {kept}", start.map_or("an unknown place".into(), |s| s.to_string())),
        },
        200 => "the server ignored the range request".into(),
        416 => {
            // Nothing lies past the bytes kept: they may be the whole file.
            if check(remote, part).is_ok() {
                progress.say(&format!("{}: {} already held the whole file", remote.name, part.display()));
                return Ok(Begun::Whole);
            }
            format!("the server has no bytes past the {kept} kept")
        }
        _ => return Err(status_error(&response, remote)),
    };
    progress.say(&format!("{}: {why}; starting it over", remote.name));
    if status == 200 {
        return Ok(Begun::Body(response, 0));
    }
    let response = get(agent, remote, 0, dir)?;
    expect_status(&response, remote, 200)?;
    Ok(Begun::Body(response, 0))
}

/// The whole file's size, when the answer says it: a 206's Content-Range
/// total, else the bytes announced plus those kept.
fn total(response: &ureq::http::Response<ureq::Body>, from: u64) -> Option<u64> {
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok());
    let whole = header("content-range").and_then(|r| r.rsplit('/').next()?.trim().parse::<u64>().ok());
    whole.or_else(|| Some(header("content-length")?.parse::<u64>().ok()? + from))
}

/// Appends the body to `part` (created anew when `from` is 0), hashing the
/// whole file as it goes (the kept bytes first); the bytes and the hasher.
fn stream(
    response: ureq::http::Response<ureq::Body>,
    remote: &Remote,
    part: &Path,
    from: u64,
    total: Option<u64>,
    stop: &dyn Fn() -> bool,
    progress: &mut dyn Progress,
) -> Result<(u64, Md5), FetchError> {
    let write_err = |source| FetchError::Write { path: part.to_path_buf(), source };
    let mut hasher = Md5::new();
    let mut file = if from == 0 {
        File::create(part).map_err(write_err)?
    } else {
        hash_file(part, &mut hasher)?;
        OpenOptions::new().append(true).open(part).map_err(write_err)?
    };
    let cut = |got: u64, why: String| FetchError::Cut {
        url: remote.url.clone(),
        got,
        total: total.map_or("an unknown number of".into(), |t| t.to_string()),
        why,
        part: part.to_path_buf(),
    };
    let mut got = from;
    let mut body = response.into_body().into_reader();
    let mut buffer = vec![0u8; CHUNK];
    loop {
        if stop() {
            file.sync_all().map_err(write_err)?;
            return Err(FetchError::Interrupted { part: part.to_path_buf(), got });
        }
        let n = match body.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = file.sync_all();
                return Err(cut(got, e.to_string()));
            }
        };
        file.write_all(&buffer[..n]).map_err(write_err)?;
        hasher.update(&buffer[..n]);
        got += n as u64;
        progress.advance(n as u64);
    }
    file.sync_all().map_err(write_err)?;
    match total {
        Some(total) if total != got => Err(cut(got, format!("the server announced {total}"))),
        _ => Ok((got, hasher)),
    }
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
        ureq::Error::ConnectProxyFailed(why) => format!("the proxy refused to connect to it ({why})"),
        ureq::Error::TooManyRedirects => "it redirects too many times".into(),
        _ => e.to_string(),
    }
}

fn expect_status(response: &ureq::http::Response<ureq::Body>, remote: &Remote, wanted: u16) -> Result<(), FetchError> {
    if response.status().as_u16() == wanted {
        Ok(())
    } else {
        Err(status_error(response, remote))
    }
}

fn status_error(response: &ureq::http::Response<ureq::Body>, remote: &Remote) -> FetchError {
    let status = response.status();
    let hint = match status.as_u16() {
        404 | 410 => " (no such file there: check the URL, or --url for a mirror)",
        500..=599 => " (a fault on the server's side: try again later, or --url for a mirror)",
        _ => "",
    };
    FetchError::Status { url: remote.url.clone(), status: status.to_string(), hint }
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
            let actual = md5_of(path)?;
            if actual == *expected {
                Ok(())
            } else {
                Err(FetchError::PresentDiffers { path: path.to_path_buf(), name: remote.name.clone(), actual, expected: expected.clone() })
            }
        }
        Check::Idx { .. } => check(remote, path).map_err(|why| FetchError::PresentNotIdx { path: path.to_path_buf(), why }),
    }
}

/// Whether the file at `path` is what `remote` asks for, or why not.
fn check(remote: &Remote, path: &Path) -> Result<(), String> {
    match &remote.check {
        Check::Md5(expected) => match md5_of(path).map_err(|e| e.to_string())? {
            actual if actual == *expected => Ok(()),
            actual => Err(format!("MD5 {actual}, expected {expected}")),
        },
        Check::Idx { rank } => {
            let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            idx::decode(bytes, *rank).map(|_| ())
        }
    }
}

fn md5_of(path: &Path) -> Result<String, FetchError> {
    let mut hasher = Md5::new();
    hash_file(path, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
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
    std::fs::rename(part, &bad).map_err(|source| FetchError::Rename { from: part.to_path_buf(), to: bad.clone(), source })?;
    Ok(bad)
}

/// The checked file takes its final name; the directory entry is synced so
/// that a crash right after leaves it there.
fn finish(part: &Path, target: &Path) -> Result<(), FetchError> {
    std::fs::rename(part, target).map_err(|source| FetchError::Rename { from: part.to_path_buf(), to: target.to_path_buf(), source })?;
    if let Some(dir) = target.parent() {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}
