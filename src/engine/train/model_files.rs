//! Where each finished run's model file goes (`<run_id>.safetensors`, the
//! packed format of `model::packed`), if anywhere.

use std::path::PathBuf;

use burn::prelude::Backend;

use crate::engine::data::batcher::Normalizer;
use crate::engine::model::{packed, Cnn, CnnConfig};
use crate::study::RunSpec;
use crate::util::atomic_file::{self, WriteError};

pub(super) struct ModelFiles {
    dir: Option<PathBuf>,
}

impl ModelFiles {
    /// None: no model files are written.
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }

    fn path(&self, spec: &RunSpec) -> Option<PathBuf> {
        Some(self.dir.as_ref()?.join(format!("{}.safetensors", spec.run_id)))
    }

    /// A run's file should be there and is not (a run finished in an
    /// earlier session that did not write it).
    pub fn missing(&self, spec: &RunSpec) -> bool {
        self.path(spec).is_some_and(|path| !path.exists())
    }

    /// A finished run's model file (its size is the run's `model_bytes`).
    pub fn write<B: Backend>(&self, spec: &RunSpec, model: &Cnn<B>, shape: &CnnConfig, norm: &Normalizer) -> Result<(), WriteError> {
        match self.path(spec) {
            Some(path) => atomic_file::write(&path, &packed::pack(model, shape, norm)),
            None => Ok(()),
        }
    }
}
