//! Turning a stream of token bytes into text: never splitting a UTF-8 character, and
//! holding back text that may be the start of a stop string until it is known not to be.

/// Incremental text assembly with stop strings.
#[derive(Debug, Default)]
pub struct TextStream {
    /// Bytes of an incomplete UTF-8 character at the end of the stream.
    pending: Vec<u8>,
    /// Decoded text not yet released because it could begin a stop string.
    held: String,
    stops: Vec<String>,
}

/// What a push released.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Text safe to show.
    pub text: String,
    /// A stop string was completed; `text` ends right before it.
    pub stopped: bool,
}

impl TextStream {
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            ..Self::default()
        }
    }

    /// Adds the bytes of one token.
    pub fn push(&mut self, bytes: &[u8]) -> Released {
        self.pending.extend_from_slice(bytes);
        let mut decoded = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    decoded.push_str(s);
                    self.pending.clear();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // The prefix up to `valid_up_to` is valid UTF-8.
                    decoded
                        .push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // An incomplete character at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..valid);
                            break;
                        }
                        Some(bad) => {
                            decoded.push('\u{FFFD}');
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
        self.held.push_str(&decoded);
        if let Some(at) = self.first_stop() {
            let text = self.held[..at].to_string();
            self.held.clear();
            self.pending.clear();
            return Released {
                text,
                stopped: true,
            };
        }
        let keep = self.partial_stop_suffix();
        let cut = self.held.len() - keep;
        let text = self.held[..cut].to_string();
        self.held.drain(..cut);
        Released {
            text,
            stopped: false,
        }
    }

    /// Releases whatever is held at the end of generation.
    pub fn finish(&mut self) -> String {
        let mut text = std::mem::take(&mut self.held);
        if !self.pending.is_empty() {
            text.push_str(&String::from_utf8_lossy(&self.pending));
            self.pending.clear();
        }
        text
    }

    fn first_stop(&self) -> Option<usize> {
        self.stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
    }

    /// Length of the longest suffix of `held` that is a proper prefix of a stop string.
    fn partial_stop_suffix(&self) -> usize {
        let mut best = 0;
        for stop in &self.stops {
            let max = stop.len().saturating_sub(1).min(self.held.len());
            for len in (best + 1..=max).rev() {
                let start = self.held.len() - len;
                if self.held.is_char_boundary(start) && stop.starts_with(&self.held[start..]) {
                    best = len;
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_tokens() {
        let mut s = TextStream::new(&[]);
        let bytes = "é😀".as_bytes();
        assert_eq!(s.push(&bytes[..1]).text, "");
        assert_eq!(s.push(&bytes[1..3]).text, "é");
        assert_eq!(s.push(&bytes[3..]).text, "😀");
        assert_eq!(s.push(&[0xFF, b'a']).text, "\u{FFFD}a");
        s.push(&[0xE2, 0x82]);
        assert_eq!(s.finish(), "\u{FFFD}");
    }

    #[test]
    fn stop_string_spanning_tokens() {
        let mut s = TextStream::new(&["END".to_string(), "\n\n".to_string()]);
        assert_eq!(
            s.push(b"Hello E"),
            Released {
                text: "Hello ".into(),
                stopped: false
            }
        );
        assert_eq!(
            s.push(b"N"),
            Released {
                text: "".into(),
                stopped: false
            }
        );
        assert_eq!(
            s.push(b"Dless"),
            Released {
                text: "".into(),
                stopped: true
            }
        );
        let mut s = TextStream::new(&["END".to_string()]);
        assert_eq!(s.push(b"E").text, "");
        assert_eq!(s.push(b"x").text, "Ex");
        assert_eq!(s.push(b"a\n").text, "a\n");
        let mut s = TextStream::new(&["\n\n".to_string()]);
        assert_eq!(
            s.push(b"a\n"),
            Released {
                text: "a".into(),
                stopped: false
            }
        );
        assert_eq!(
            s.push(b"\nb"),
            Released {
                text: "".into(),
                stopped: true
            }
        );
    }
}
