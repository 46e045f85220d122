//! What a projector is: its kind and dimensions, saved as `projector.json` beside the
//! weights.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The projector architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProjectorKind {
    /// One linear layer (LLaVA-1's `linear`).
    #[serde(rename = "linear")]
    Linear,
    /// Linear → GELU → linear (LLaVA-1.5's `mlp2x_gelu`).
    #[serde(rename = "mlp2x_gelu")]
    Mlp2xGelu,
}

/// A projector's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectorConfig {
    pub kind: ProjectorKind,
    /// Width of the encoder features it reads.
    pub input_dim: usize,
    /// Width of the vectors it writes.
    pub output_dim: usize,
    /// Hidden width of an MLP (default: `output_dim`, as in LLaVA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_dim: Option<usize>,
}

impl ProjectorConfig {
    /// The MLP's hidden width.
    pub fn hidden(&self) -> usize {
        self.hidden_dim.unwrap_or(self.output_dim)
    }

    /// Checks the dimensions are usable.
    pub fn validate(&self) -> Result<()> {
        if self.input_dim == 0 || self.output_dim == 0 || self.hidden() == 0 {
            return Err(Error::InvalidInput(format!(
                "projector dimensions must be positive: {self:?}"
            )));
        }
        Ok(())
    }

    /// Reads a `projector.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let config: Self = serde_json::from_str(&text)
            .map_err(|e| Error::model_file(path, format!("not a projector config: {e}")))?;
        config
            .validate()
            .map_err(|e| Error::model_file(path, e.to_string()))?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_llava_names() {
        let c: ProjectorConfig =
            serde_json::from_str(r#"{"kind":"mlp2x_gelu","input_dim":1280,"output_dim":384}"#)
                .unwrap();
        assert_eq!(c.kind, ProjectorKind::Mlp2xGelu);
        assert_eq!(c.hidden(), 384);
        let zero = ProjectorConfig { input_dim: 0, ..c };
        assert!(zero.validate().is_err());
    }
}
