//! The state dict of an EfficientNet checkpoint, with shape checks and missing / unused key
//! reports that name the file.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};

use crate::{Error, Result};

/// Tensors by key; remembers which keys the model read.
pub(crate) struct Weights {
    tensors: HashMap<String, Tensor>,
    used: RefCell<BTreeSet<String>>,
    path: PathBuf,
}

impl Weights {
    pub fn new(tensors: Vec<(String, Tensor)>, path: &Path) -> Self {
        Self {
            tensors: tensors.into_iter().collect(),
            used: RefCell::default(),
            path: path.into(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn contains(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    /// The f32 tensor `key`, which must have shape `shape`.
    pub fn get(&self, key: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self
            .tensors
            .get(key)
            .ok_or_else(|| Error::model_file(&self.path, format!("missing tensor `{key}`")))?;
        if t.dims() != shape {
            return Err(Error::model_file(
                &self.path,
                format!(
                    "tensor `{key}` has shape {:?}, expected {shape:?}",
                    t.dims()
                ),
            ));
        }
        self.used.borrow_mut().insert(key.into());
        Ok(t.to_dtype(DType::F32)?)
    }

    /// The dims of `key`, which must have rank `rank`.
    pub fn dims(&self, key: &str, rank: usize) -> Result<Vec<usize>> {
        let t = self
            .tensors
            .get(key)
            .ok_or_else(|| Error::model_file(&self.path, format!("missing tensor `{key}`")))?;
        if t.rank() != rank {
            return Err(Error::model_file(
                &self.path,
                format!(
                    "tensor `{key}` has shape {:?}, expected rank {rank}",
                    t.dims()
                ),
            ));
        }
        Ok(t.dims().to_vec())
    }

    /// Keys that the model did not read (BatchNorm's `num_batches_tracked` excepted).
    pub fn unused(&self) -> Vec<String> {
        let used = self.used.borrow();
        let mut keys: Vec<String> = self
            .tensors
            .keys()
            .filter(|k| !used.contains(*k) && !k.ends_with("num_batches_tracked"))
            .cloned()
            .collect();
        keys.sort();
        keys
    }
}
