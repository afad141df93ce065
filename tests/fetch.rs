//! `kdtui data fetch` and `kdtui data check` against an HTTP server on the
//! loopback address that each test starts (std's TcpListener, one thread
//! per connection). It serves the project's own SVHN-layout fixtures (and
//! IDX files written here) under the official names, and can break off a
//! response, ignore range requests, answer 404 or 500, pace its bytes, or
//! act as a CONNECT proxy; it records every request. No test reaches
//! beyond 127.0.0.1.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

mod common;

const KDTUI: &str = env!("CARGO_BIN_EXE_kdtui");
const FILES: [&str; 2] = ["train_32x32.mat", "test_32x32.mat"];

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/svhn-format").join(name)).unwrap()
}

fn md5(bytes: &[u8]) -> String {
    format!("{:x}", Md5::digest(bytes))
}

/// What the server does, changeable while it runs.
#[derive(Default)]
struct Behaviour {
    /// Honour `Range: bytes=N-` with a 206.
    ranges: bool,
    /// Break off the next response for this path after this many body bytes.
    cut: Option<(String, usize)>,
    /// Answer this status (with a short text body) for every request.
    status: Option<u16>,
    /// Pause this long after each 1 KiB of body.
    pace: Option<Duration>,
    /// Answer a range request with a 206 from byte 0 (a broken server).
    range_from_zero: bool,
}

/// One request as the server read it.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    range: Option<String>,
}

struct Server {
    port: u16,
    behaviour: Arc<Mutex<Behaviour>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    /// A server of `files`, keyed by their paths (`/housenumbers/train_32x32.mat`).
    fn start(files: HashMap<String, Vec<u8>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let behaviour = Arc::new(Mutex::new(Behaviour { ranges: true, ..Behaviour::default() }));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let files = Arc::new(files);
        let (b, s) = (Arc::clone(&behaviour), Arc::clone(&seen));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (b, s, files) = (Arc::clone(&b), Arc::clone(&s), Arc::clone(&files));
                std::thread::spawn(move || {
                    let _ = serve(stream, &b, &s, &files);
                });
            }
        });
        Server { port, behaviour, seen }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/housenumbers", self.port)
    }

    fn set(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.behaviour.lock().unwrap());
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Reads a request head: its first line and headers (lowercase names).
fn head(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<(String, HashMap<String, String>)>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Ok(Some((line.trim_end().to_string(), headers)))
}

fn serve(
    stream: TcpStream,
    behaviour: &Mutex<Behaviour>,
    seen: &Mutex<Vec<Seen>>,
    files: &HashMap<String, Vec<u8>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    let Some((mut line, mut headers)) = head(&mut reader)? else { return Ok(()) };
    if line.starts_with("CONNECT ") {
        // A proxy's tunnel to the target: here, to this same server.
        seen.lock().unwrap().push(Seen { line: line.clone(), range: None });
        stream.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
        let Some(next) = head(&mut reader)? else { return Ok(()) };
        (line, headers) = next;
    }
    let range = headers.get("range").cloned();
    seen.lock().unwrap().push(Seen { line: line.clone(), range: range.clone() });
    let path = line.split(' ').nth(1).unwrap_or("/").to_string();
    let name = path.rsplit('/').next().unwrap_or("").to_string();
    let (ranges, cut, status, pace, from_zero) = {
        let mut b = behaviour.lock().unwrap();
        let cut = match &b.cut {
            Some((p, n)) if *p == name => Some(*n),
            _ => None,
        };
        if cut.is_some() {
            b.cut = None;
        }
        (b.ranges, cut, b.status, b.pace, b.range_from_zero)
    };
    let reply = |stream: &mut TcpStream, status: &str, extra: &str, body: &[u8]| -> std::io::Result<()> {
        write!(stream, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n", body.len())?;
        stream.write_all(body)
    };
    if let Some(code) = status {
        let text = if code == 500 { "500 Internal Server Error" } else { "503 Service Unavailable" };
        return reply(&mut stream, text, "", b"no\n");
    }
    let Some(bytes) = files.get(&path) else {
        return reply(&mut stream, "404 Not Found", "", b"not here\n");
    };
    let start = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")).and_then(|r| r.strip_suffix('-')) {
        Some(n) if ranges => n.parse::<usize>().unwrap(),
        _ => 0,
    };
    if start >= bytes.len() && start > 0 {
        let extra = format!("Content-Range: bytes */{}\r\n", bytes.len());
        return reply(&mut stream, "416 Range Not Satisfiable", &extra, b"");
    }
    let start = if from_zero { 0 } else { start };
    let body = &bytes[start..];
    if start > 0 || (from_zero && range.is_some()) {
        write!(
            stream,
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
            body.len(),
            bytes.len() - 1,
            bytes.len()
        )?;
    } else {
        write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
    }
    let end = cut.map_or(body.len(), |n| n.min(body.len()));
    for chunk in body[..end].chunks(1024) {
        stream.write_all(chunk)?;
        if let Some(pace) = pace {
            stream.flush()?;
            std::thread::sleep(pace);
        }
    }
    // A cut: the connection closes with the promised bytes missing.
    stream.flush()
}

fn svhn_server() -> Server {
    Server::start(FILES.iter().map(|f| (format!("/housenumbers/{f}"), fixture(f))).collect())
}

/// `--md5` for the fixtures: their sums are not the official ones.
fn sums() -> Vec<String> {
    FILES.iter().flat_map(|f| ["--md5".to_string(), format!("{f}={}", md5(&fixture(f)))]).collect()
}

/// The proxy variables ureq reads: unset, so that a runner's own proxy
/// never stands between a test and its server.
const PROXY_VARS: [&str; 6] = ["ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"];

/// `kdtui` in `dir`, without proxy variables.
fn command(dir: &Path) -> Command {
    let mut command = Command::new(KDTUI);
    command.current_dir(dir);
    for var in PROXY_VARS {
        command.env_remove(var);
    }
    command
}

fn kdtui(dir: &Path, args: &[&str], extra: &[String]) -> Output {
    command(dir).args(args).args(extra).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> =
        std::fs::read_dir(dir).map_or(vec![], |d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect());
    n.sort();
    n
}

/// The files land under their names, checked, and a plan trains on them;
/// a second fetch finds them there and downloads nothing.
#[test]
fn fetched_files_train_a_plan_and_are_not_fetched_twice() {
    let server = svhn_server();
    let dir = tempfile::tempdir().unwrap();
    let out = kdtui(dir.path(), &["data", "fetch", "svhn", "--url", &server.url(), "--dir", "data"], &sums());
    assert!(out.status.success(), "{}", text(&out));
    for f in FILES {
        assert_eq!(std::fs::read(dir.path().join("data").join(f)).unwrap(), fixture(f), "{f}");
        let line = format!("data/{f}: 0.0");
        assert!(
            text(&out).lines().any(|l| l.starts_with(&line) && l.ends_with(&format!("MD5 {} checked", md5(&fixture(f))))),
            "{}",
            text(&out)
        );
    }
    assert_eq!(names(&dir.path().join("data")), ["test_32x32.mat", "train_32x32.mat"]);
    assert_eq!(server.seen().len(), 2);

    let again = kdtui(dir.path(), &["data", "fetch", "svhn", "--url", &server.url(), "--dir", "data"], &sums());
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("train_32x32.mat: already there, MD5"), "{}", text(&again));
    assert_eq!(server.seen().len(), 2, "nothing downloaded twice: {:?}", server.seen());

    let config = common::TINY.replace("[data]\ntrain_size = 192\ntest_size = 64", "[data]\nsource = \"svhn\"\ndir = \"data\"");
    common::write(dir.path(), "config.toml", &config);
    let check = kdtui(dir.path(), &["data", "check"], &[]);
    assert!(check.status.success(), "{}", text(&check));
    assert!(text(&check).contains("train_32x32.mat: 41269 bytes"), "{}", text(&check));
    assert!(text(&check).contains("not the official SVHN file"), "{}", text(&check));
    assert!(text(&check).contains("config.toml trains on svhn: 192 train / 96 test"), "{}", text(&check));
    let trained = kdtui(dir.path(), &["--batch", "--device", "cpu", "--only", "soft"], &[]);
    assert!(trained.status.success(), "{}", text(&trained));
    assert!(text(&trained).contains("svhn: 192 train / 96 test"), "{}", text(&trained));
}

/// Without `--md5` the official sums apply, which the fixtures do not have:
/// each file ends as a mismatch, kept aside as `.bad`, never under its name.
#[test]
fn a_file_that_is_not_the_official_one_is_a_mismatch_kept_aside() {
    let server = svhn_server();
    let dir = tempfile::tempdir().unwrap();
    let out = kdtui(dir.path(), &["data", "fetch", "svhn", "--url", &server.url(), "--dir", "data"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let expected = format!(
        "kdtui: train_32x32.mat from {}/train_32x32.mat has MD5 {}, expected e26dedcc434d2e4c54c9b2d4a06d8373: it is not the file asked for (kept as data/train_32x32.mat.bad",
        server.url(),
        md5(&fixture("train_32x32.mat"))
    );
    assert!(text(&out).contains(&expected), "{}", text(&out));
    assert_eq!(names(&dir.path().join("data")), ["train_32x32.mat.bad"]);
    assert_eq!(std::fs::read(dir.path().join("data/train_32x32.mat.bad")).unwrap(), fixture("train_32x32.mat"));
}

/// A sum given with `--md5` that the file does not have; and `--md5` and
/// `--url` arguments that cannot be right are usage errors before anything
/// is downloaded.
#[test]
fn a_wrong_sum_given_is_a_mismatch_and_malformed_arguments_usage_errors() {
    let server = svhn_server();
    let dir = tempfile::tempdir().unwrap();
    let wrong = vec!["--md5".to_string(), format!("test_32x32.mat={}", "0".repeat(32))];
    let out = kdtui(dir.path(), &["data", "fetch", "svhn", "--url", &server.url(), "--dir", "data"], &[sums(), wrong].concat());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(&format!("expected {}", "0".repeat(32))), "{}", text(&out));
    assert_eq!(names(&dir.path().join("data")), ["test_32x32.mat.bad", "train_32x32.mat"]);

    for bad in ["train_32x32.mat", "train_32x32.mat=abc", "nope.mat=00000000000000000000000000000000"] {
        let out = kdtui(dir.path(), &["data", "fetch", "svhn", "--url", &server.url(), "--dir", "other", "--md5", bad], &[]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out));
        assert!(text(&out).contains("--md5"), "{}", text(&out));
    }
    for url in ["ftp://127.0.0.1/housenumbers", "127.0.0.1/housenumbers", "http:///housenumbers", "http://127.0.0.1/h?version=2"] {
        let out = kdtui(dir.path(), &["data", "fetch", "svhn", "--url", url, "--dir", "other"], &[]);
        assert_eq!(out.status.code(), Some(2), "{url}: {}", text(&out));
        assert!(text(&out).contains(&format!("kdtui: --url {url}: ")), "{}", text(&out));
    }
    assert!(!dir.path().join("other").exists());
}

/// A connection cut in the middle of a file: the bytes so far stay in
/// `.part`, nothing under the final name; the next fetch asks for the rest
/// with a range request and completes the file.
#[test]
fn a_cut_download_resumes_with_a_range_request() {
    let server = svhn_server();
    server.set(|b| b.cut = Some(("train_32x32.mat".into(), 10_000)));
    let dir = tempfile::tempdir().unwrap();
    let args = ["data", "fetch", "svhn", "--url", &server.url(), "--dir", "data"];
    let out = kdtui(dir.path(), &args, &sums());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("broke off after 10000 of 41269 bytes"), "{}", text(&out));
    assert!(text(&out).contains("run the same command again to resume"), "{}", text(&out));
    assert_eq!(names(&dir.path().join("data")), ["train_32x32.mat.part"]);
    assert_eq!(std::fs::read(dir.path().join("data/train_32x32.mat.part")).unwrap(), fixture("train_32x32.mat")[..10_000]);

    let out = kdtui(dir.path(), &args, &sums());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("resuming at byte 10000"), "{}", text(&out));
    let ranges: Vec<_> = server.seen().into_iter().filter_map(|s| s.range).collect();
    assert_eq!(ranges, ["bytes=10000-"]);
    assert_eq!(std::fs::read(dir.path().join("data/train_32x32.mat")).unwrap(), fixture("train_32x32.mat"));
    assert_eq!(names(&dir.path().join("data")), ["test_32x32.mat", "train_32x32.mat"]);
}

/// A server that answers a range request with the whole file: the fetch
/// says so and starts the file over, and the file comes out whole.
#[test]
fn a_server_that_ignores_ranges_makes_the_fetch_start_over() {
    let server = svhn_server();
    server.set(|b| b.cut = Some(("train_32x32.mat".into(), 10_000)));
    let dir = tempfile::tempdir().unwrap();
    let args = ["data", "fetch", "svhn", "--url", &server.url(), "--dir", "data"];
    assert_eq!(kdtui(dir.path(), &args, &sums()).status.code(), Some(1));
    server.set(|b| b.ranges = false);
    let out = kdtui(dir.path(), &args, &sums());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("train_32x32.mat: the server ignored the range request; starting it over"), "{}", text(&out));
    assert_eq!(std::fs::read(dir.path().join("data/train_32x32.mat")).unwrap(), fixture("train_32x32.mat"));
    assert_eq!(names(&dir.path().join("data")), ["test_32x32.mat", "train_32x32.mat"]);
}

/// A `.part` that already holds the whole file: the server has nothing past
/// it (416), the file checks out and takes its name. One longer than the
/// file (garbage after it) fails the check and starts over.
#[test]
fn a_part_that_holds_the_whole_file_is_taken_and_a_longer_one_started_over() {
    let server = svhn_server();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let whole = fixture("train_32x32.mat");
    std::fs::write(dir.path().join("data/train_32x32.mat.part"), &whole).unwrap();
    let longer = [fixture("test_32x32.mat"), b"trailing".to_vec()].concat();
    std::fs::write(dir.path().join("data/test_32x32.mat.part"), &longer).unwrap();
    let out = kdtui(dir.path(), &["data", "fetch", "svhn", "--url", &server.url(), "--dir", "data"], &sums());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("train_32x32.mat: data/train_32x32.mat.part already held the whole file"), "{}", text(&out));
    assert!(text(&out).contains("test_32x32.mat: the server has no bytes past the 21659 kept; starting it over"), "{}", text(&out));
    assert_eq!(std::fs::read(dir.path().join("data/train_32x32.mat")).unwrap(), whole);
    assert_eq!(std::fs::read(dir.path().join("data/test_32x32.mat")).unwrap(), fixture("test_32x32.mat"));
    assert_eq!(names(&dir.path().join("data")), ["test_32x32.mat", "train_32x32.mat"]);
}

/// A server that answers a range request with other bytes than asked for:
/// the fetch starts the file over instead of appending them.
#[test]
fn a_range_answered_from_another_byte_starts_the_file_over() {
    let server = svhn_server();
    server.set(|b| b.range_from_zero = true);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/train_32x32.mat.part"), &fixture("train_32x32.mat")[..10_000]).unwrap();
    let out = kdtui(dir.path(), &["data", "fetch", "svhn", "--url", &server.url(), "--dir", "data"], &sums());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("train_32x32.mat: the server sent bytes from 0 instead of 10000; starting it over"), "{}", text(&out));
    assert_eq!(std::fs::read(dir.path().join("data/train_32x32.mat")).unwrap(), fixture("train_32x32.mat"));
}

/// 404 and 500: one line naming the address and the status, exit 1,
/// nothing written.
#[test]
fn http_errors_name_the_address_and_the_status() {
    let server = svhn_server();
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("http://127.0.0.1:{}/elsewhere/", server.port);
    let out = kdtui(dir.path(), &["data", "fetch", "svhn", "--url", &missing, "--dir", "data"], &sums());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let line =
        format!("kdtui: http://127.0.0.1:{}/elsewhere/train_32x32.mat: the server answered 404 Not Found (no such file there", server.port);
    assert!(text(&out).contains(&line), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1, "{}", text(&out));
    assert!(names(&dir.path().join("data")).is_empty());

    server.set(|b| b.status = Some(500));
    let out = kdtui(dir.path(), &["data", "fetch", "svhn", "--url", &server.url(), "--dir", "data"], &sums());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("the server answered 500 Internal Server Error (a fault on the server's side"), "{}", text(&out));
    assert!(names(&dir.path().join("data")).is_empty());
}

/// Nobody listening: the error says the connection was refused and how to
/// download by hand.
#[test]
fn a_refused_connection_says_how_to_download_by_hand() {
    // Port 1: nothing listens there, and no other test binds it.
    let dir = tempfile::tempdir().unwrap();
    let url = "http://127.0.0.1:1/housenumbers".to_string();
    let out = kdtui(dir.path(), &["data", "fetch", "svhn", "--url", &url, "--dir", "data"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let line = format!("kdtui: cannot reach {url}/train_32x32.mat: the connection was refused; check the network");
    assert!(text(&out).contains(&line), "{}", text(&out));
    assert!(text(&out).contains("or download the file by hand into data"), "{}", text(&out));
    assert!(names(&dir.path().join("data")).is_empty());
}

/// ctrl-c in the middle of a file: exit 130, the bytes so far kept in
/// `.part`, and the next fetch resumes from them.
#[test]
fn ctrl_c_mid_file_keeps_what_arrived_for_the_next_fetch() {
    let server = svhn_server();
    server.set(|b| b.pace = Some(Duration::from_millis(25)));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let mut child = command(dir.path())
        .args(["data", "fetch", "svhn", "--url", &server.url(), "--dir", "data"])
        .args(sums())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let part = dir.path().join("data/train_32x32.mat.part");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&part).map_or(0, |m| m.len()) < 4096 {
        assert!(Instant::now() < deadline && child.try_wait().unwrap().is_none(), "the download never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: signals a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    assert!(text(&out).contains("stopped: data/train_32x32.mat.part keeps"), "{}", text(&out));
    let kept = std::fs::read(&part).unwrap();
    assert!(kept.len() >= 4096 && kept.len() < 41269, "{} bytes kept", kept.len());
    assert_eq!(kept, fixture("train_32x32.mat")[..kept.len()]);

    server.set(|b| b.pace = None);
    let out = kdtui(dir.path(), &["data", "fetch", "svhn", "--url", &server.url(), "--dir", "data"], &sums());
    assert!(out.status.success(), "{}", text(&out));
    let ranges: Vec<_> = server.seen().into_iter().filter_map(|s| s.range).collect();
    assert_eq!(ranges, [format!("bytes={}-", kept.len())]);
    assert_eq!(std::fs::read(dir.path().join("data/train_32x32.mat")).unwrap(), fixture("train_32x32.mat"));
}

/// HTTP_PROXY is honoured (the request tunnels through it, here to a host
/// name that exists nowhere, which only the proxy can serve), and NO_PROXY
/// takes a host off it (a proxy nobody listens on is then never asked).
#[test]
fn the_proxy_variables_are_honoured() {
    let server = svhn_server();
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path())
        .args(["data", "fetch", "svhn", "--url", "http://files.kdtui.invalid/housenumbers", "--dir", "data"])
        .args(sums())
        .env("HTTP_PROXY", format!("http://127.0.0.1:{}", server.port))
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("through the proxy 127.0.0.1:{}", server.port)), "{}", text(&out));
    assert!(server.seen().iter().any(|s| s.line.starts_with("CONNECT files.kdtui.invalid:80 ")), "{:?}", server.seen());
    assert_eq!(names(&dir.path().join("data")), ["test_32x32.mat", "train_32x32.mat"]);

    let out = command(dir.path())
        .args(["data", "fetch", "svhn", "--url", &server.url(), "--dir", "direct"])
        .args(sums())
        .env("HTTP_PROXY", "http://127.0.0.1:1")
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("through the proxy"), "{}", text(&out));
}

/// An IDX file of unsigned bytes: the magic, the dimensions, the data.
fn idx_file(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        bytes.extend(d.to_be_bytes());
    }
    bytes.extend(data);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&bytes).unwrap();
    gz.finish().unwrap()
}

/// An MNIST-format set of 28x28 images: `train` and `t10k` images and labels.
fn idx_set(train: u32, test: u32) -> HashMap<String, Vec<u8>> {
    let mut files = HashMap::new();
    for (prefix, n) in [("train", train), ("t10k", test)] {
        let pixels: Vec<u8> = (0..n * 28 * 28).map(|i| (i * 7 % 251) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        files.insert(format!("/mnist/{prefix}-images-idx3-ubyte.gz"), idx_file(&[n, 28, 28], &pixels));
        files.insert(format!("/mnist/{prefix}-labels-idx1-ubyte.gz"), idx_file(&[n], &labels));
    }
    files
}

/// `data fetch idx`: the four files under a base address, each checked as
/// a whole IDX file (no sum is known), then as pairs; a file whose header
/// promises more than it holds is refused and kept aside.
#[test]
fn an_idx_set_is_fetched_and_checked_by_its_headers() {
    let server = Server::start(idx_set(64, 32));
    let dir = tempfile::tempdir().unwrap();
    let base = format!("http://127.0.0.1:{}/mnist", server.port);
    let out = kdtui(dir.path(), &["data", "fetch", "idx", "--url", &base, "--dir", "mnist"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("train: 64 images of 28x28") && text(&out).contains("t10k: 32 images of 28x28"), "{}", text(&out));
    assert!(text(&out).contains("a whole IDX file (no checksum known"), "{}", text(&out));
    assert_eq!(names(&dir.path().join("mnist")).len(), 4);
    let config = "[data]\nsource = \"idx\"\ndir = \"mnist\"\n";
    common::write(dir.path(), "idx.toml", config);
    let check = kdtui(dir.path(), &["data", "check", "--config", "idx.toml"], &[]);
    assert!(check.status.success(), "{}", text(&check));
    assert!(text(&check).contains("idx.toml trains on idx: 64 train / 32 test"), "{}", text(&check));

    let out = kdtui(dir.path(), &["data", "fetch", "idx", "--dir", "mnist"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("needs --url"), "{}", text(&out));

    let mut broken = idx_set(64, 32);
    let pixels: Vec<u8> = vec![1; 10 * 28 * 28];
    broken.insert("/mnist/t10k-images-idx3-ubyte.gz".into(), idx_file(&[32, 28, 28], &pixels));
    let server = Server::start(broken);
    let base = format!("http://127.0.0.1:{}/mnist", server.port);
    let out = kdtui(dir.path(), &["data", "fetch", "idx", "--url", &base, "--dir", "broken"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("t10k-images-idx3-ubyte.gz from") && text(&out).contains("is not an IDX file: header promises 25088 bytes"),
        "{}",
        text(&out)
    );
    assert!(names(&dir.path().join("broken")).contains(&"t10k-images-idx3-ubyte.gz.bad".to_string()));
    assert!(!dir.path().join("broken/t10k-images-idx3-ubyte.gz").exists());
}

/// A file of another version already under the official name is not
/// replaced: the user decides.
#[test]
fn a_different_file_already_there_is_left_for_the_user() {
    let server = svhn_server();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/train_32x32.mat"), b"mine").unwrap();
    let out = kdtui(dir.path(), &["data", "fetch", "svhn", "--url", &server.url(), "--dir", "data"], &sums());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("data/train_32x32.mat is there but has MD5"), "{}", text(&out));
    assert_eq!(std::fs::read(dir.path().join("data/train_32x32.mat")).unwrap(), b"mine");
    assert!(server.seen().is_empty());
}

/// Training with the SVHN files missing points to the command that fetches
/// them; so does `data check`.
#[test]
fn missing_svhn_files_point_to_the_fetch_command() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let config = common::TINY.replace("[data]\ntrain_size = 192\ntest_size = 64", "[data]\nsource = \"svhn\"\ndir = \"data\"");
    common::write(dir.path(), "config.toml", &config);
    let out = kdtui(dir.path(), &["--batch", "--device", "cpu"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("data/train_32x32.mat is missing") && text(&out).contains("kdtui data fetch svhn"), "{}", text(&out));
    let check = kdtui(dir.path(), &["data", "check"], &[]);
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    assert!(text(&check).contains("train_32x32.mat: missing") && text(&check).contains("kdtui data fetch svhn"), "{}", text(&check));
}

/// A full disk mid-file (a small tmpfs in a user and mount namespace of the
/// test's own): one line naming the `.part` file and "No space left", exit
/// 1, nothing under the final name; with space freed, the same command
/// resumes and finishes.
#[test]
#[cfg_attr(kdtui_no_small_disk, ignore = "needs `unshare -rm` and a tmpfs mount (see build.rs)")]
fn a_full_disk_mid_file_is_resumed_once_there_is_room() {
    let server = svhn_server();
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("data");
    std::fs::create_dir(&mount).unwrap();
    let sums = sums().join(" ");
    let fetch = format!("{KDTUI} data fetch svhn --url {} --dir {} {sums}", server.url(), mount.display());
    // A filler file leaves 28 KiB of the 128 KiB free: the first file (40
    // KiB) does not fit. Removing it frees the space, as a user would.
    let script = format!(
        "mount -t tmpfs -o size=128k tmpfs {m} && head -c 102400 /dev/zero > {m}/filler && {fetch}; echo \"first=$?\"; ls {m}; rm {m}/filler && {fetch}; echo \"second=$?\"; ls {m}",
        m = mount.display()
    );
    let mut unshare = Command::new("unshare");
    for var in PROXY_VARS {
        unshare.env_remove(var);
    }
    let out = unshare.args(["-rm", "--propagation", "private", "sh", "-c", &script]).output().unwrap();
    let all = text(&out);
    assert!(all.contains("first=1"), "{all}");
    assert!(all.contains("cannot write") && all.contains("train_32x32.mat.part: No space left on device"), "{all}");
    let after_first = all.split("first=1").nth(1).unwrap().split("second=").next().unwrap();
    assert!(after_first.contains("train_32x32.mat.part") && !after_first.contains("train_32x32.mat\n"), "{all}");
    assert!(all.contains("resuming at byte"), "{all}");
    assert!(all.contains("second=0"), "{all}");
}
