//! Whisper (Radford et al. 2022): audio encoder and its text decoder.
