//! The model store: find a model by name or path, fetch and verify it, cache it.
