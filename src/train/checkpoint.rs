//! The teacher's checkpoint and its cached logits over the training set, in
//! `<checkpoints>/<plan>/teacher-<hash>/`, keyed by a hash of the config that
//! shaped them so a changed config never loads a stale teacher.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};

use super::event::RunResult;
use crate::atomic_file::{self, WriteError};
use crate::data::CLASSES;
use crate::model::Cnn;

const LOGITS_MAGIC: &[u8; 8] = b"KDLOGIT1";

pub struct TeacherStore {
    pub dir: PathBuf,
}

impl TeacherStore {
    pub fn new(checkpoints: &Path, plan: &str, hash: &str) -> Self {
        Self {
            dir: checkpoints.join(plan).join(format!("teacher-{hash}")),
        }
    }

    fn model_path(&self) -> PathBuf {
        self.dir.join("model.mpk")
    }
    fn logits_path(&self) -> PathBuf {
        self.dir.join("train_logits.bin")
    }
    fn result_path(&self) -> PathBuf {
        self.dir.join("result.json")
    }

    pub fn save_model<B: Backend>(&self, model: Cnn<B>) -> Result<(), WriteError> {
        let bytes = NamedMpkBytesRecorder::<FullPrecisionSettings>::new()
            .record(model.into_record(), ())
            .expect("in-memory recording cannot fail");
        atomic_file::write(&self.model_path(), &bytes)
    }

    /// The stored teacher, or None when absent or unreadable (then it is retrained).
    pub fn load_model<B: Backend>(&self, fresh: Cnn<B>, device: &B::Device) -> Option<Cnn<B>> {
        let bytes = std::fs::read(self.model_path()).ok()?;
        let record = NamedMpkBytesRecorder::<FullPrecisionSettings>::new().load(bytes, device).ok()?;
        Some(fresh.load_record(record))
    }

    pub fn save_result(&self, result: &RunResult) -> Result<(), WriteError> {
        let json = serde_json::to_vec_pretty(result).expect("results serialise");
        atomic_file::write(&self.result_path(), &json)
    }

    pub fn load_result(&self) -> Option<RunResult> {
        serde_json::from_slice(&std::fs::read(self.result_path()).ok()?).ok()
    }

    /// Logits [n, 10] row-major.
    pub fn save_logits(&self, logits: &[f32]) -> Result<(), WriteError> {
        let mut bytes = Vec::with_capacity(16 + logits.len() * 4);
        bytes.extend_from_slice(LOGITS_MAGIC);
        bytes.extend_from_slice(&((logits.len() / CLASSES) as u64).to_le_bytes());
        for v in logits {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        atomic_file::write(&self.logits_path(), &bytes)
    }

    /// The cached logits when present, whole and for `n` images.
    pub fn load_logits(&self, n: usize) -> Option<Vec<f32>> {
        let bytes = std::fs::read(self.logits_path()).ok()?;
        if bytes.len() != 16 + n * CLASSES * 4 || &bytes[..8] != LOGITS_MAGIC {
            return None;
        }
        if u64::from_le_bytes(bytes[8..16].try_into().ok()?) != n as u64 {
            return None;
        }
        Some(bytes[16..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logits_round_trip_and_reject_wrong_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let store = TeacherStore::new(dir.path(), "p", "abc");
        let logits: Vec<f32> = (0..30).map(|i| i as f32 * 0.5 - 3.0).collect();
        store.save_logits(&logits).unwrap();
        assert_eq!(store.load_logits(3), Some(logits));
        assert_eq!(store.load_logits(4), None);
    }
}
