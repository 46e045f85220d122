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
    /// Learned queries reading the features by cross-attention (Flamingo's Perceiver
    /// resampler): a fixed number of tokens per media item.
    #[serde(rename = "resampler")]
    Resampler,
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
    /// A resampler's learned queries: its output tokens per media item (default 32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queries: Option<usize>,
    /// A resampler's layers (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<usize>,
    /// A resampler's attention heads (default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<usize>,
}

impl ProjectorConfig {
    /// The MLP's hidden width.
    pub fn hidden(&self) -> usize {
        self.hidden_dim.unwrap_or(self.output_dim)
    }

    /// A resampler's output tokens per media item.
    pub fn queries(&self) -> usize {
        self.queries.unwrap_or(32)
    }

    /// A resampler's layers.
    pub fn layers(&self) -> usize {
        self.layers.unwrap_or(2)
    }

    /// A resampler's attention heads.
    pub fn heads(&self) -> usize {
        self.heads.unwrap_or(8)
    }

    /// An MLP of `kind` from `input_dim` to `output_dim` with the default sizes.
    pub fn new(kind: ProjectorKind, input_dim: usize, output_dim: usize) -> Self {
        Self {
            kind,
            input_dim,
            output_dim,
            hidden_dim: None,
            queries: None,
            layers: None,
            heads: None,
        }
    }

    /// Checks the dimensions are usable.
    pub fn validate(&self) -> Result<()> {
        if self.input_dim == 0 || self.output_dim == 0 || self.hidden() == 0 {
            return Err(Error::InvalidInput(format!(
                "projector dimensions must be positive: {self:?}"
            )));
        }
        if self.kind == ProjectorKind::Resampler
            && (self.queries() == 0
                || self.heads() == 0
                || !self.hidden().is_multiple_of(self.heads()))
        {
            return Err(Error::InvalidInput(format!(
                "a resampler needs at least one query and a width ({}) divisible by its \
                 heads ({}): {self:?}",
                self.hidden(),
                self.heads()
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
