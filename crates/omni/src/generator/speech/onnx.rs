//! Kokoro's ONNX graph run by ONNX Runtime, loaded at run time from the library file the
//! model store fetched (`libonnxruntime.so.*`), so that building omni needs no download.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::Session;
use ort::value::Tensor;

use super::AcousticModel;
use crate::{Error, Result};

/// Kokoro's output rate.
const SAMPLE_RATE: u32 = 24_000;

/// The ONNX Runtime environment: one per process, bound to the first library loaded.
static ENVIRONMENT: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();

fn environment(library: &Path) -> Result<&'static Environment> {
    ENVIRONMENT
        .get_or_init(|| {
            let builder = ort::init_from(library).map_err(|e| e.to_string())?;
            builder.with_name("omni").build().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|reason| Error::model_file(library, format!("cannot load ONNX Runtime: {reason}")))
}

/// Kokoro-82M (`tokens`, `style`, `speed` → `audio`) in an ONNX Runtime session.
pub struct KokoroOnnx {
    session: Mutex<Session>,
    path: PathBuf,
}

impl KokoroOnnx {
    /// Loads `model` with the ONNX Runtime at `library`, on `threads` intra-op threads.
    pub fn load(model: &Path, library: &Path, threads: usize) -> Result<KokoroOnnx> {
        for path in [model, library] {
            if !path.is_file() {
                return Err(Error::model_file(
                    path,
                    "missing (run `omni models pull kokoro-82m`)",
                ));
            }
        }
        let env = environment(library)?;
        let fail = |e: ort::Error| Error::model_file(model, e.to_string());
        let session = Session::builder(env)
            .map_err(fail)?
            .with_intra_threads(threads.max(1))
            .map_err(|e| fail(e.into()))?
            .with_inter_threads(1)
            .map_err(|e| fail(e.into()))?
            .commit_from_file(model)
            .map_err(fail)?;
        Ok(KokoroOnnx {
            session: Mutex::new(session),
            path: model.to_path_buf(),
        })
    }
}

impl AcousticModel for KokoroOnnx {
    fn sample_rate(&self) -> u32 {
        SAMPLE_RATE
    }

    fn synthesize(&self, ids: &[i64], style: &[f32], speed: f32) -> Result<Vec<f32>> {
        let fail = |e: ort::Error| Error::model_file(&self.path, format!("running the model: {e}"));
        let mut padded = Vec::with_capacity(ids.len() + 2);
        padded.push(0);
        padded.extend_from_slice(ids);
        padded.push(0);
        let tokens = Tensor::from_array(([1usize, padded.len()], padded)).map_err(fail)?;
        let style = Tensor::from_array(([1usize, style.len()], style.to_vec())).map_err(fail)?;
        let speed = Tensor::from_array(([1usize], vec![speed])).map_err(fail)?;
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session
            .run(ort::inputs!["tokens" => tokens, "style" => style, "speed" => speed])
            .map_err(fail)?;
        let (_, audio) = outputs["audio"].try_extract_tensor::<f32>().map_err(fail)?;
        Ok(audio.to_vec())
    }
}
