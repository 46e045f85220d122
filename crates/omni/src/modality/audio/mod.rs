//! Audio: decode common formats, resample to the model rate, log-mel features.
