//! TensorBoard event files, one directory per run (`<results>/tensorboard/<run_id>/`),
//! so a study opens in TensorBoard as the original was read
//! (`tensorboard --logdir results/tensorboard`).
//!
//! The file format is TensorFlow's TFRecord of `Event` protobufs: each record
//! is `length: u64 LE`, `masked CRC32C of length: u32 LE`, `data`,
//! `masked CRC32C of data: u32 LE`. An event is `wall_time` (field 1, double),
//! `step` (2, int64), and either `file_version` (3, string; the first event of
//! a file, "brain.Event:2") or `summary` (5): repeated `value` (1) of `tag`
//! (1, string) and `simple_value` (2, float). These few fields are written by
//! hand: no maintained Rust crate writes them without pulling in a protobuf
//! compiler or an image stack, and the reader below holds the writer to them.
//!
//! Scalars: `accuracy/train`, `accuracy/test`, `loss/train`, `loss/test`,
//! and the diagnostics `fidelity/agreement`, `fidelity/kl_t1`, `fidelity/kl_T`
//! (students), `calibration/ece` at step = epoch (what the TUI's charts show), and `step/loss`, `step/accuracy`
//! (the mean over the last `log_every` optimizer steps) at step = optimizer step.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::protocol::{EpochMetrics, TrainEvent};
use crate::util::atomic_file::{append_whole, WriteError};

fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field (wire type 2).
fn bytes_field(field: u64, bytes: &[u8], out: &mut Vec<u8>) {
    varint(field << 3 | 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn event(wall_time: f64, step: i64, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut e = Vec::with_capacity(64);
    varint(1 << 3 | 1, &mut e);
    e.extend_from_slice(&wall_time.to_le_bytes());
    varint(2 << 3, &mut e);
    varint(step as u64, &mut e);
    body(&mut e);
    e
}

fn scalar_event(wall_time: f64, step: i64, tag: &str, value: f32) -> Vec<u8> {
    event(wall_time, step, |e| {
        let mut v = Vec::with_capacity(tag.len() + 8);
        bytes_field(1, tag.as_bytes(), &mut v);
        varint(2 << 3 | 5, &mut v);
        v.extend_from_slice(&value.to_le_bytes());
        let mut summary = Vec::with_capacity(v.len() + 2);
        bytes_field(1, &v, &mut summary);
        bytes_field(5, &summary, e);
    })
}

/// One event file, appended record by record. Records gather in memory and
/// reach the file at `flush`, all or nothing (`atomic_file::append_whole`):
/// TensorBoard never meets a torn record.
pub struct EventWriter {
    file: File,
    pending: Vec<u8>,
    pub path: PathBuf,
}

impl EventWriter {
    /// A new file in `dir`, named as TensorBoard looks for them. Several
    /// sessions of one run (resumed) leave several files; TensorBoard reads them all.
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let host = crate::util::atomic_file::host();
        let host = if host.is_empty() { "localhost".to_string() } else { host };
        let (secs, pid) = (crate::util::unix_seconds() as u64, std::process::id());
        let mut path = dir.join(format!("events.out.tfevents.{secs}.{host}.{pid}"));
        let mut n = 1;
        while path.exists() {
            path = dir.join(format!("events.out.tfevents.{secs}.{host}.{pid}.{n}"));
            n += 1;
        }
        let mut w = Self { file: File::create(&path)?, pending: Vec::with_capacity(4096), path };
        w.record(&event(crate::util::unix_seconds(), 0, |e| bytes_field(3, b"brain.Event:2", e)));
        Ok(w)
    }

    fn record(&mut self, data: &[u8]) {
        let len = (data.len() as u64).to_le_bytes();
        self.pending.extend_from_slice(&len);
        self.pending.extend_from_slice(&masked_crc(&len).to_le_bytes());
        self.pending.extend_from_slice(data);
        self.pending.extend_from_slice(&masked_crc(data).to_le_bytes());
    }

    pub fn scalar(&mut self, tag: &str, step: i64, value: f64) {
        self.record(&scalar_event(crate::util::unix_seconds(), step, tag, value as f32));
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let outcome = append_whole(&mut self.file, &self.path, &self.pending, false);
        self.pending.clear();
        outcome
    }

    pub fn epoch(&mut self, m: &EpochMetrics) {
        let step = m.epoch as i64;
        self.scalar("accuracy/train", step, m.train_accuracy);
        self.scalar("accuracy/test", step, m.test_accuracy);
        self.scalar("loss/train", step, m.train_loss);
        self.scalar("loss/test", step, m.test_loss);
        if let Some(d) = &m.diagnostics {
            for (tag, value) in [
                ("fidelity/agreement", d.agreement),
                ("fidelity/kl_t1", d.kl_t1),
                ("fidelity/kl_T", d.kl_t),
                ("calibration/ece", Some(d.ece)),
            ] {
                if let Some(v) = value {
                    self.scalar(tag, step, v);
                }
            }
        }
    }
}

/// A scalar read back from an event file.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub tag: String,
    pub step: i64,
    pub value: f32,
}

fn read_varint(b: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

/// One field of a protobuf message: its number, and its value as bytes
/// (length-delimited and fixed-width fields) or as a varint.
struct Field<'a> {
    number: u64,
    bytes: &'a [u8],
    varint: u64,
}

fn fields(b: &[u8]) -> Result<Vec<Field<'_>>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let key = read_varint(b, &mut pos)?;
        let (number, wire) = (key >> 3, key & 7);
        let take = |pos: &mut usize, n: usize| -> Result<&[u8], String> {
            let s = b.get(*pos..*pos + n).ok_or("truncated field")?;
            *pos += n;
            Ok(s)
        };
        let (bytes, varint) = match wire {
            0 => (&b[..0], read_varint(b, &mut pos)?),
            1 => (take(&mut pos, 8)?, 0),
            5 => (take(&mut pos, 4)?, 0),
            2 => {
                let n = read_varint(b, &mut pos)? as usize;
                (take(&mut pos, n)?, 0)
            }
            w => return Err(format!("wire type {w}")),
        };
        out.push(Field { number, bytes, varint });
    }
    Ok(out)
}

/// Every scalar of an event file, checking each record's checksums.
pub fn read_scalars(path: &Path) -> Result<Vec<Scalar>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut pos = 0;
    let mut first = true;
    while pos < bytes.len() {
        let head = bytes.get(pos..pos + 12).ok_or("truncated record header")?;
        let (len, len_crc) = head.split_at(8);
        if masked_crc(len).to_le_bytes() != len_crc {
            return Err(format!("length checksum mismatch at byte {pos}"));
        }
        let n = u64::from_le_bytes(len.try_into().unwrap()) as usize;
        let data = bytes.get(pos + 12..pos + 12 + n).ok_or("truncated record")?;
        let crc = bytes.get(pos + 12 + n..pos + 16 + n).ok_or("truncated record")?;
        if masked_crc(data).to_le_bytes() != crc {
            return Err(format!("data checksum mismatch at byte {pos}"));
        }
        pos += 16 + n;
        let event = fields(data)?;
        let step = event.iter().find(|f| f.number == 2).map_or(0, |f| f.varint as i64);
        if first {
            first = false;
            let version = event.iter().find(|f| f.number == 3).map(|f| f.bytes);
            if version != Some(b"brain.Event:2") {
                return Err("the first event is not file_version brain.Event:2".into());
            }
        }
        for summary in event.iter().filter(|f| f.number == 5) {
            for value in fields(summary.bytes)?.into_iter().filter(|f| f.number == 1) {
                let v = fields(value.bytes)?;
                let tag = v.iter().find(|f| f.number == 1).map(|f| String::from_utf8_lossy(f.bytes).to_string()).unwrap_or_default();
                if let Some(x) = v.iter().find(|f| f.number == 2) {
                    out.push(Scalar {
                        tag,
                        step,
                        value: f32::from_le_bytes(x.bytes.try_into().map_err(|_| "simple_value is not 4 bytes")?),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Writes the event files of a plan from its event stream (the TUI and
/// `--batch` both feed it). A file that cannot be written costs TensorBoard
/// its view of the run: the first failure is returned (the caller decides
/// whether the plan goes on) and TensorBoard output stops.
pub struct Recorder {
    root: PathBuf,
    writers: HashMap<String, EventWriter>,
    failed: bool,
}

impl Recorder {
    pub fn new(root: PathBuf) -> Self {
        Self { root, writers: HashMap::new(), failed: false }
    }

    pub fn run_dir(&self, run_id: &str) -> PathBuf {
        self.root.join(run_id)
    }

    /// Handles one event; after the first failure, nothing more.
    pub fn on_event(&mut self, event: &TrainEvent) -> Result<(), WriteError> {
        if self.failed {
            return Ok(());
        }
        self.handle(event).map_err(|(path, source)| {
            self.failed = true;
            self.writers.clear();
            WriteError { path, source }
        })
    }

    /// The file (or directory) that failed, and why.
    fn handle(&mut self, event: &TrainEvent) -> Result<(), (PathBuf, std::io::Error)> {
        let flush = |w: &mut EventWriter| w.flush().map_err(|e| (w.path.clone(), e));
        match event {
            TrainEvent::RunStarted { run_id, steps_per_epoch, history, .. } => {
                let dir = self.run_dir(run_id);
                // Earlier epochs are in an earlier session's file, unless this
                // results directory is new to the run.
                let has_files = std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some());
                let replay = *steps_per_epoch == 0; // see `TrainEvent::replay`
                if replay && has_files {
                    return Ok(());
                }
                let mut w = EventWriter::create(&dir).map_err(|e| (dir.clone(), e))?;
                if !has_files {
                    for m in history {
                        w.epoch(m);
                    }
                }
                flush(&mut w)?;
                if !replay {
                    self.writers.insert(run_id.clone(), w);
                }
            }
            TrainEvent::Step { run_id, step, loss, accuracy, .. } => {
                if let Some(w) = self.writers.get_mut(run_id) {
                    w.scalar("step/loss", *step as i64, f64::from(*loss));
                    w.scalar("step/accuracy", *step as i64, f64::from(*accuracy));
                }
            }
            TrainEvent::EpochFinished { run_id, metrics } => {
                if let Some(w) = self.writers.get_mut(run_id) {
                    w.epoch(metrics);
                    flush(w)?;
                }
            }
            TrainEvent::RunFinished { result } => {
                if let Some(mut w) = self.writers.remove(&result.run_id) {
                    flush(&mut w)?;
                }
            }
            TrainEvent::RunFailed { run_id, .. } => {
                if let Some(mut w) = self.writers.remove(run_id) {
                    flush(&mut w)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC-32C's published check value, and TensorFlow's mask written its way.
    #[test]
    #[allow(clippy::manual_rotate)]
    fn crc_is_castagnoli_masked() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283, "CRC-32C check value");
        let crc = 0xe306_9283u32;
        assert_eq!(masked_crc(b"123456789"), ((crc >> 15) | (crc << 17)).wrapping_add(0xa282_ead8));
    }

    #[test]
    fn scalars_read_back_with_tags_steps_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.scalar("loss/train", 3, 0.25);
        w.scalar("step/loss", 300, 1.5);
        w.flush().unwrap();
        let back = read_scalars(&w.path).unwrap();
        assert_eq!(
            back,
            vec![Scalar { tag: "loss/train".into(), step: 3, value: 0.25 }, Scalar { tag: "step/loss".into(), step: 300, value: 1.5 },]
        );
        let mut bytes = std::fs::read(&w.path).unwrap();
        let last = bytes.len() - 6;
        bytes[last] ^= 0x40;
        std::fs::write(&w.path, bytes).unwrap();
        assert!(read_scalars(&w.path).unwrap_err().contains("checksum"));
    }

    fn metrics(epoch: usize, test_accuracy: f64) -> EpochMetrics {
        EpochMetrics {
            epoch,
            train_loss: 1.0,
            train_accuracy: 0.5,
            test_loss: 0.9,
            test_accuracy,
            seconds: 1.0,
            images_per_sec: 100.0,
            diagnostics: None,
        }
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut f: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        f.sort();
        f
    }

    /// A run reused from its checkpoint gets its epochs written once, into a
    /// results directory that lacks them; a resumed run adds a file with what
    /// it trains.
    #[test]
    fn the_recorder_writes_each_epoch_once_across_sessions() {
        let root = tempfile::tempdir().unwrap();
        let started =
            |steps_per_epoch, history| TrainEvent::RunStarted { run_id: "soft-T5-s1".into(), epochs: 3, steps_per_epoch, step: 0, history };
        let dir = root.path().join("soft-T5-s1");
        // A replay (steps_per_epoch 0) into an empty directory writes the history.
        let mut rec = Recorder::new(root.path().to_path_buf());
        assert!(rec.on_event(&started(0, vec![metrics(1, 0.5), metrics(2, 0.6)])).is_ok());
        let tags = |f: &Path| {
            read_scalars(f).unwrap().into_iter().filter(|s| s.tag == "accuracy/test").map(|s| (s.step, s.value)).collect::<Vec<_>>()
        };
        assert_eq!(files(&dir).len(), 1);
        assert_eq!(tags(&files(&dir)[0]), vec![(1, 0.5), (2, 0.6)]);
        // Replayed again: nothing new.
        let mut rec = Recorder::new(root.path().to_path_buf());
        rec.on_event(&started(0, vec![metrics(1, 0.5), metrics(2, 0.6)])).unwrap();
        assert_eq!(files(&dir).len(), 1);
        // Resumed training: a new file with the new epoch and its steps only.
        rec.on_event(&started(4, vec![metrics(1, 0.5), metrics(2, 0.6)])).unwrap();
        let step = TrainEvent::Step { run_id: "soft-T5-s1".into(), epoch: 3, step: 10, loss: 0.25, accuracy: 0.75, images_per_sec: 1.0 };
        rec.on_event(&step).unwrap();
        rec.on_event(&TrainEvent::EpochFinished { run_id: "soft-T5-s1".into(), metrics: metrics(3, 0.7) }).unwrap();
        let newest = files(&dir).into_iter().find(|f| tags(f) != vec![(1, 0.5), (2, 0.6)]).unwrap();
        assert_eq!(tags(&newest), vec![(3, 0.7)]);
        let steps: Vec<(String, i64, f32)> =
            read_scalars(&newest).unwrap().into_iter().filter(|s| s.tag.starts_with("step/")).map(|s| (s.tag, s.step, s.value)).collect();
        assert_eq!(steps, vec![("step/loss".into(), 10, 0.25), ("step/accuracy".into(), 10, 0.75)]);
    }

    #[test]
    fn an_unwritable_directory_is_one_error_and_no_more() {
        let root = tempfile::tempdir().unwrap();
        let blocker = root.path().join("tensorboard");
        std::fs::write(&blocker, "a file where the directory should be").unwrap();
        let mut rec = Recorder::new(blocker);
        let start = TrainEvent::RunStarted { run_id: "teacher".into(), epochs: 1, steps_per_epoch: 3, step: 0, history: vec![] };
        let error = rec.on_event(&start).unwrap_err();
        assert!(error.path.ends_with("tensorboard/teacher") && !error.is_disk_full(), "{error}");
        assert!(rec.on_event(&start).is_ok(), "one failure, then silence");
    }
}
