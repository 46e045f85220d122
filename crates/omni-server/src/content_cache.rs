//! Text derived from media — image descriptions, transcripts — by content hash, so that
//! a chat which sends its images and recordings again with every turn pays for them once.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// A content hash.
type Key = [u8; 32];

/// The texts, and their keys oldest first.
#[derive(Default)]
struct Entries {
    map: HashMap<Key, String>,
    order: VecDeque<Key>,
}

/// A bounded map from content hash to text; the oldest entry goes first.
pub struct ContentCache {
    capacity: usize,
    entries: Mutex<Entries>,
}

impl ContentCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: Mutex::new(Entries::default()),
        }
    }

    /// The key of `data` as input of `kind` (the same bytes may be read two ways).
    pub fn key(kind: &str, data: &[u8]) -> Key {
        let mut h = Sha256::new();
        h.update(kind.as_bytes());
        h.update([0]);
        h.update(data);
        h.finalize().into()
    }

    pub fn get(&self, key: &Key) -> Option<String> {
        self.entries.lock().ok()?.map.get(key).cloned()
    }

    pub fn insert(&self, key: Key, text: String) {
        let Ok(mut e) = self.entries.lock() else {
            return;
        };
        if e.map.insert(key, text).is_none() {
            e.order.push_back(key);
        }
        while e.order.len() > self.capacity {
            if let Some(old) = e.order.pop_front() {
                e.map.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_entries() {
        let cache = ContentCache::new(2);
        let keys: Vec<_> = (0..3u8).map(|i| ContentCache::key("image", &[i])).collect();
        for (i, k) in keys.iter().enumerate() {
            cache.insert(*k, i.to_string());
        }
        assert_eq!(cache.get(&keys[0]), None);
        assert_eq!(cache.get(&keys[2]).as_deref(), Some("2"));
        assert_ne!(
            ContentCache::key("image", b"x"),
            ContentCache::key("audio", b"x")
        );
    }
}
