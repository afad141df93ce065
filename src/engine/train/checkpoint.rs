//! Checkpoints of every run, so that a quit, a crash or a kill loses at most
//! the epoch under way.
//!
//! Each run has a folder: `<checkpoints>/<plan>/<run_id>/`, and the teacher
//! `<checkpoints>/<plan>/teacher-<hash>/` (several teachers of different
//! configs can sit side by side and be reused). In it:
//! - `checkpoint.bin`: the latest training state (model, optimizer, epoch and
//!   step, metrics so far, the config hash), rewritten after every epoch and
//!   when training stops between steps; one file, written to a temporary name
//!   and renamed, and checked by a SHA-256 of its contents when read;
//! - `result.json`: the run's result, written once the run has finished
//!   (done, or diverged: then `checkpoint.bin` stays at the last good epoch);
//! - `train_logits.bin` (teacher only): its logits over the training set.
//!
//! A student folder whose hash is not the current config's is set aside (renamed
//! `<run_id>.stale-<hash>`), never loaded into the wrong model.
//!
//! The shuffling RNG is not stored: it is seeded per run and drawn once per
//! epoch, so resuming replays the draws of the finished epochs.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Record, Recorder};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::data::{CHANNELS, CLASSES, SIDE};
use crate::engine::model::{Cnn, CnnConfig, TrainBackend};
use crate::protocol::{EpochMetrics, RunResult};
use crate::study::config::TRAINING_VERSION;
use crate::study::Config;
use crate::study::{RunKind, RunSpec};
use crate::util::atomic_file::{self, WriteError};
use crate::util::short_hash;

const LOGITS_MAGIC: &[u8; 8] = b"KDLOGIT1";
const CHECKPOINT_MAGIC: &[u8; 8] = b"KDCKPT01";

/// Hash of everything that shapes a run's training: its checkpoint is used
/// only while this is unchanged. `data_digest`: the data as loaded
/// (`Data::digest`), so that other images behind the same settings are
/// another run.
pub fn run_hash(config: &Config, data_digest: &str, spec: &RunSpec) -> String {
    if spec.kind == RunKind::Teacher {
        return config.teacher_hash(data_digest);
    }
    let key = serde_json::json!({
        "data": data_digest,
        "student": config.student,
        "train": config.training(),
        "distill": config.distill,
        "teacher": spec.loss.needs_teacher().then(|| config.teacher_hash(data_digest)),
        "spec": spec,
        "version": TRAINING_VERSION,
    });
    short_hash(key.to_string().as_bytes())
}

/// Where a run stands inside its training, besides model and optimizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub hash: String,
    pub run_id: String,
    /// Epochs completed and evaluated.
    pub epochs_done: usize,
    /// Optimizer steps taken in the epoch after `epochs_done` (training stopped
    /// between steps); 0 at an epoch boundary.
    pub steps_into_epoch: usize,
    /// Optimizer steps taken in the whole run.
    pub step: usize,
    /// Sums over the steps of the unfinished epoch.
    pub partial: PartialEpoch,
    pub history: Vec<EpochMetrics>,
    /// Training time spent in earlier sessions.
    pub wall_seconds: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PartialEpoch {
    pub loss_sum: f64,
    pub correct: usize,
    pub seen: usize,
    pub seconds: f64,
}

impl PartialEpoch {
    /// Adds steps' metrics read from the device.
    pub fn add(&mut self, read: &super::step::Read) {
        self.loss_sum += read.loss_sum;
        self.correct += read.hits;
        self.seen += read.images;
    }
}

/// A checkpoint read back: the progress and the model and optimizer records
/// (still encoded: they decode against the caller's backend).
pub struct Saved {
    pub progress: Progress,
    pub model: Vec<u8>,
    pub optimizer: Option<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
struct Finished {
    hash: String,
    result: RunResult,
}

/// What a run's folder holds for the current config.
pub enum Prior {
    Nothing,
    Finished(RunResult),
    Partial(Progress),
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("cannot move {from} aside to {to}: {source}")]
    SetAside { from: PathBuf, to: PathBuf, source: std::io::Error },
}

pub struct RunStore {
    pub dir: PathBuf,
    pub hash: String,
}

impl RunStore {
    pub fn new(config: &Config, data_digest: &str, spec: &RunSpec) -> Self {
        let hash = run_hash(config, data_digest, spec);
        let plan_dir = config.plan.checkpoints.join(&config.plan.name);
        let dir = match spec.kind {
            RunKind::Teacher => plan_dir.join(format!("teacher-{hash}")),
            _ => plan_dir.join(&spec.run_id),
        };
        Self { dir, hash }
    }

    fn checkpoint_path(&self) -> PathBuf {
        self.dir.join("checkpoint.bin")
    }
    fn result_path(&self) -> PathBuf {
        self.dir.join("result.json")
    }
    fn logits_path(&self) -> PathBuf {
        self.dir.join("train_logits.bin")
    }

    /// Sets aside a folder written under another config (or unreadable), and
    /// says what the rest of it holds. The returned note, if any, is worth a
    /// line in the log.
    pub fn survey(&self) -> Result<(Prior, Option<String>), CheckpointError> {
        if !self.dir.exists() {
            return Ok((Prior::Nothing, None));
        }
        atomic_file::remove_leftovers(&self.dir);
        let finished = read_json::<Finished>(&self.result_path());
        let saved = read_checkpoint(&self.checkpoint_path());
        let foreign = match (&finished, &saved) {
            (Some(f), _) if f.hash != self.hash => Some(f.hash.clone()),
            (_, Ok(Some(s))) if s.progress.hash != self.hash => Some(s.progress.hash.clone()),
            _ => None,
        };
        if let Some(old) = foreign {
            let to = self.set_aside(&format!("stale-{old}"))?;
            return Ok((
                Prior::Nothing,
                Some(format!("checkpoint in {} is for another config; set aside in {}", self.dir.display(), to.display())),
            ));
        }
        if let Err(why) = &saved {
            let to = self.set_aside("corrupt")?;
            return Ok((
                Prior::Nothing,
                Some(format!(
                    "{} is unreadable ({why}); set aside in {}, the run starts over",
                    self.checkpoint_path().display(),
                    to.display()
                )),
            ));
        }
        Ok(match (finished, saved) {
            (Some(f), _) => (Prior::Finished(f.result), None),
            (None, Ok(Some(s))) => (Prior::Partial(s.progress), None),
            _ => (Prior::Nothing, None),
        })
    }

    /// Renames the folder to `<name>.<suffix>` (plus a time when that exists).
    fn set_aside(&self, suffix: &str) -> Result<PathBuf, CheckpointError> {
        let name = self.dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let mut to = self.dir.with_file_name(format!("{name}.{suffix}"));
        if to.exists() {
            to = self.dir.with_file_name(format!("{name}.{suffix}-{}", crate::util::unix_time()));
        }
        std::fs::rename(&self.dir, &to).map_err(|source| CheckpointError::SetAside { from: self.dir.clone(), to: to.clone(), source })?;
        Ok(to)
    }

    /// Removes the folder (`--fresh`).
    pub fn discard(&self) -> std::io::Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub fn load(&self) -> Option<Saved> {
        read_checkpoint(&self.checkpoint_path()).ok().flatten().filter(|s| s.progress.hash == self.hash)
    }

    pub fn save(&self, progress: &Progress, model: &[u8], optimizer: Option<&[u8]>) -> Result<(), WriteError> {
        let meta = serde_json::to_vec(progress).expect("progress serialises");
        let mut bytes = Vec::with_capacity(64 + meta.len() + model.len() + optimizer.map_or(0, <[u8]>::len));
        bytes.extend_from_slice(CHECKPOINT_MAGIC);
        for part in [&meta[..], model, optimizer.unwrap_or_default()] {
            bytes.extend_from_slice(&(part.len() as u64).to_le_bytes());
            bytes.extend_from_slice(part);
        }
        bytes.push(u8::from(optimizer.is_some()));
        let digest = Sha256::digest(&bytes);
        bytes.extend_from_slice(&digest);
        atomic_file::write(&self.checkpoint_path(), &bytes)
    }

    pub fn save_result(&self, result: &RunResult) -> Result<(), WriteError> {
        let finished = Finished { hash: self.hash.clone(), result: result.clone() };
        atomic_file::write(&self.result_path(), &serde_json::to_vec_pretty(&finished).expect("results serialise"))
    }

    /// The teacher's logits [n, 10] row-major over the training set (the soft targets' source).
    pub fn save_logits(&self, logits: &[f32]) -> Result<(), WriteError> {
        write_logits(&self.logits_path(), logits)
    }

    /// The cached training-set logits when present, whole and for `n` images.
    pub fn load_logits(&self, n: usize) -> Option<Vec<f32>> {
        read_logits(&self.logits_path(), n)
    }

    /// The teacher's logits over the test set (what students' agreement and
    /// KL are measured against).
    pub fn save_test_logits(&self, logits: &[f32]) -> Result<(), WriteError> {
        write_logits(&self.dir.join("test_logits.bin"), logits)
    }

    pub fn load_test_logits(&self, n: usize) -> Option<Vec<f32>> {
        read_logits(&self.dir.join("test_logits.bin"), n)
    }
}

fn write_logits(path: &Path, logits: &[f32]) -> Result<(), WriteError> {
    let mut bytes = Vec::with_capacity(16 + logits.len() * 4);
    bytes.extend_from_slice(LOGITS_MAGIC);
    bytes.extend_from_slice(&((logits.len() / CLASSES) as u64).to_le_bytes());
    for v in logits {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    atomic_file::write(path, &bytes)
}

/// Cached logits when present, whole and for `n` images.
fn read_logits(path: &Path, n: usize) -> Option<Vec<f32>> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() != 16 + n * CLASSES * 4 || &bytes[..8] != LOGITS_MAGIC {
        return None;
    }
    if u64::from_le_bytes(bytes[8..16].try_into().ok()?) != n as u64 {
        return None;
    }
    Some(bytes[16..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
}

/// A module's or optimizer's record as bytes (burn's named MessagePack).
pub fn encode<B: Backend, R: Record<B>>(record: R) -> Vec<u8> {
    NamedMpkBytesRecorder::<FullPrecisionSettings>::new().record(record, ()).expect("in-memory recording cannot fail")
}

pub fn decode<B: Backend, R: Record<B>>(bytes: Vec<u8>, device: &B::Device) -> Option<R> {
    NamedMpkBytesRecorder::<FullPrecisionSettings>::new().load(bytes, device).ok()
}

/// A run's initial weights, drawn by the CPU backend whatever `B` is: a
/// seed means the same starting network on every device, so a GPU run can
/// be compared with a CPU run of the same plan (tests/gpu_path.rs).
pub(super) fn initial_model<B: TrainBackend>(shape: &CnnConfig, seed: u64, device: &B::Device) -> Cnn<B> {
    let cpu = Default::default();
    burn::backend::Flex::seed(&cpu, seed);
    let drawn: Cnn<burn::backend::Flex> = shape.init(&cpu);
    // burn draws a parameter when it is first read: read them in the order
    // a training step's forward pass does, so that a seed keeps the network
    // it has always drawn on the CPU (without autodiff nothing else changes).
    let _ = drawn.forward(Tensor::zeros([1, CHANNELS, SIDE, SIDE], &cpu));
    // Full precision both ways: the same numbers arrive on the device.
    match decode::<B, _>(encode::<burn::backend::Flex, _>(drawn.into_record()), device) {
        Some(record) => shape.init::<B>(device).load_record(record),
        None => unreachable!("a record encoded in memory decodes into the same module"),
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Ok(None) when there is no checkpoint; Err when there is one that cannot be read.
pub fn read_checkpoint(path: &Path) -> Result<Option<Saved>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if bytes.len() < 8 + 3 * 8 + 1 + 32 || &bytes[..8] != CHECKPOINT_MAGIC {
        return Err("not a kdtui checkpoint".into());
    }
    let (body, digest) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body).as_slice() != digest {
        return Err("checksum mismatch".into());
    }
    let mut pos = 8;
    let mut part = || -> Result<Vec<u8>, String> {
        let len = body.get(pos..pos + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize).ok_or("truncated")?;
        let data = body.get(pos + 8..pos + 8 + len).ok_or("truncated")?.to_vec();
        pos += 8 + len;
        Ok(data)
    };
    let meta = part()?;
    let model = part()?;
    let optimizer = part()?;
    let has_optimizer = body.last() == Some(&1);
    let progress: Progress = serde_json::from_slice(&meta).map_err(|e| format!("progress: {e}"))?;
    Ok(Some(Saved { progress, model, optimizer: has_optimizer.then_some(optimizer) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path, run_id: &str) -> RunStore {
        let mut config = Config::default();
        config.plan.checkpoints = dir.to_path_buf();
        let spec = crate::study::plan::full_plan(&config).into_iter().find(|s| s.run_id == run_id).unwrap();
        RunStore::new(&config, "d1", &spec)
    }

    fn progress(store: &RunStore) -> Progress {
        Progress {
            hash: store.hash.clone(),
            run_id: "soft-T5-s1".into(),
            epochs_done: 2,
            steps_into_epoch: 3,
            step: 17,
            partial: PartialEpoch::default(),
            history: vec![],
            wall_seconds: 1.5,
        }
    }

    #[test]
    fn logits_round_trip_and_reject_wrong_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), "teacher");
        let logits: Vec<f32> = (0..30).map(|i| i as f32 * 0.5 - 3.0).collect();
        store.save_logits(&logits).unwrap();
        assert_eq!(store.load_logits(3), Some(logits));
        assert_eq!(store.load_logits(4), None);
    }

    #[test]
    fn checkpoint_round_trips_and_a_flipped_byte_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), "soft-T5-s1");
        s.save(&progress(&s), b"model bytes", Some(b"optim")).unwrap();
        let back = s.load().unwrap();
        assert_eq!(back.progress, progress(&s));
        assert_eq!(back.model, b"model bytes");
        assert_eq!(back.optimizer.as_deref(), Some(&b"optim"[..]));
        assert!(matches!(s.survey().unwrap(), (Prior::Partial(_), None)));

        let path = s.checkpoint_path();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let (prior, note) = s.survey().unwrap();
        assert!(matches!(prior, Prior::Nothing));
        assert!(note.unwrap().contains("checksum"));
        assert!(!s.dir.exists());
        assert!(dir.path().join("study/soft-T5-s1.corrupt/checkpoint.bin").exists(), "kept for inspection");
    }

    #[test]
    fn another_configs_checkpoint_is_set_aside_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), "soft-T5-s1");
        let mut p = progress(&s);
        p.hash = "0123456789abcdef".into();
        s.save(&p, b"m", None).unwrap();
        assert!(s.load().is_none());
        let (prior, note) = s.survey().unwrap();
        assert!(matches!(prior, Prior::Nothing));
        assert!(note.unwrap().contains("another config"));
        assert!(dir.path().join("study/soft-T5-s1.stale-0123456789abcdef").is_dir());
    }

    #[test]
    fn run_hash_follows_what_shapes_the_run() {
        let config = Config::default();
        let plan = crate::study::plan::full_plan(&config);
        let soft = plan.iter().find(|r| r.run_id == "soft-T5-s1").unwrap();
        let mut other = config.clone();
        other.train.log_every = 99;
        other.plan.only = vec!["soft".into()];
        let hash = |config: &Config, spec| run_hash(config, "d1", spec);
        assert_eq!(hash(&config, soft), hash(&other, soft), "display settings do not matter");
        assert_ne!(hash(&config, soft), run_hash(&config, "d2", soft), "other images, another run");
        other.student.epochs = 3;
        assert_ne!(hash(&config, soft), hash(&other, soft));
        let mut teacher_changed = config.clone();
        teacher_changed.teacher.epochs = 9;
        assert_ne!(hash(&config, soft), hash(&teacher_changed, soft), "soft targets come from the teacher");
        assert_eq!(hash(&config, &plan[1]), hash(&teacher_changed, &plan[1]), "the baseline needs no teacher");
    }
}
