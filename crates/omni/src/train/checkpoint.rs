//! Resumable checkpoints: every save is a complete `step-NNNNNNNN/` directory, written
//! under a temporary name and renamed into place, and the file `latest` (replaced
//! atomically) names the newest. A kill at any moment leaves the previous checkpoint
//! intact and `latest` pointing at a complete one. The two newest are kept.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

const LATEST: &str = "latest";
const STATE: &str = "state.json";
const KEEP: usize = 2;

/// A directory of checkpoints.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    dir: PathBuf,
}

impl Checkpoints {
    /// Opens (creating if needed) the checkpoint directory `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Self { dir })
    }

    /// Where the checkpoints live.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Saves the tensor files (`NAME.safetensors` for each `(NAME, tensors)`) and `state`
    /// (as `state.json`) as the checkpoint of `step`; returns its directory.
    pub fn save(
        &self,
        step: usize,
        tensors: &[(&str, &HashMap<String, Tensor>)],
        state: &impl Serialize,
    ) -> Result<PathBuf> {
        let name = format!("step-{step:08}");
        let tmp = self.dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        for (file, map) in tensors {
            let path = tmp.join(format!("{file}.safetensors"));
            candle_core::safetensors::save(map, &path)
                .map_err(|e| Error::model_file(&path, e.to_string()))?;
            sync(&path)?;
        }
        let json = serde_json::to_vec_pretty(state)
            .map_err(|e| Error::InvalidInput(format!("cannot serialise the state: {e}")))?;
        write_synced(&tmp.join(STATE), &json)?;
        sync(&tmp)?;
        let target = self.dir.join(&name);
        if target.exists() {
            std::fs::remove_dir_all(&target).map_err(|e| Error::io(&target, e))?;
        }
        std::fs::rename(&tmp, &target).map_err(|e| Error::io(&target, e))?;
        let pointer = self
            .dir
            .join(format!(".{LATEST}.tmp-{}", std::process::id()));
        write_synced(&pointer, format!("{name}\n").as_bytes())?;
        let latest = self.dir.join(LATEST);
        std::fs::rename(&pointer, &latest).map_err(|e| Error::io(&latest, e))?;
        sync(&self.dir)?;
        self.prune(&name)?;
        Ok(target)
    }

    /// The newest complete checkpoint: its step and directory.
    pub fn latest(&self) -> Result<Option<(usize, PathBuf)>> {
        let pointer = self.dir.join(LATEST);
        let name = match std::fs::read_to_string(&pointer) {
            Ok(name) => name.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&pointer, e)),
        };
        let step = name
            .strip_prefix("step-")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::model_file(&pointer, format!("names no checkpoint: `{name}`")))?;
        let dir = self.dir.join(&name);
        if !dir.join(STATE).is_file() {
            return Err(Error::model_file(&pointer, format!("{name} is incomplete")));
        }
        Ok(Some((step, dir)))
    }

    /// Reads `NAME.safetensors` of a checkpoint.
    pub fn load_tensors(checkpoint: &Path, name: &str) -> Result<HashMap<String, Tensor>> {
        let path = checkpoint.join(format!("{name}.safetensors"));
        candle_core::safetensors::load(&path, &Device::Cpu)
            .map_err(|e| Error::model_file(&path, e.to_string()))
    }

    /// Reads a checkpoint's `state.json`.
    pub fn load_state<T: DeserializeOwned>(checkpoint: &Path) -> Result<T> {
        let path = checkpoint.join(STATE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::model_file(&path, e.to_string()))
    }

    /// Removes all but the newest checkpoints (never `keep`) and stale temporaries.
    fn prune(&self, keep: &str) -> Result<()> {
        let mut steps = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".step-") {
                let _ = std::fs::remove_dir_all(entry.path());
            } else if name.starts_with("step-") && name != keep {
                steps.push(name);
            }
        }
        steps.sort();
        let excess = (steps.len() + 1).saturating_sub(KEEP);
        for name in steps.iter().take(excess) {
            let path = self.dir.join(name);
            std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::create(path).map_err(|e| Error::io(path, e))?;
    file.write_all(bytes).map_err(|e| Error::io(path, e))?;
    file.sync_all().map_err(|e| Error::io(path, e))
}

fn sync(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_resumes_and_prunes() {
        let dir = std::env::temp_dir().join(format!("omni-ckpt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ckpts = Checkpoints::open(&dir).unwrap();
        assert!(ckpts.latest().unwrap().is_none());
        for step in [10, 20, 30] {
            let mut map = HashMap::new();
            map.insert(
                "w".to_string(),
                Tensor::new(&[step as f32], &Device::Cpu).unwrap(),
            );
            ckpts.save(step, &[("model", &map)], &step).unwrap();
        }
        let (step, path) = ckpts.latest().unwrap().unwrap();
        assert_eq!(step, 30);
        let w = Checkpoints::load_tensors(&path, "model").unwrap();
        assert_eq!(w["w"].to_vec1::<f32>().unwrap(), [30.0]);
        assert_eq!(Checkpoints::load_state::<usize>(&path).unwrap(), 30);
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["latest", "step-00000020", "step-00000030"]);
        // A torn pointer is a clear error, not a panic.
        std::fs::write(dir.join("latest"), "garbage").unwrap();
        assert!(ckpts.latest().unwrap_err().to_string().contains("latest"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
