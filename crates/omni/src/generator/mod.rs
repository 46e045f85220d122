//! Stage 5, modality generators: turn the system's answer into speech (and, later, images).

pub mod speech;
