//! The indexing job: walk a directory, embed new and changed images and text files in
//! batches, skip unchanged ones (same SHA-256), drop entries of deleted files, and carry
//! on past bad files, listing them in the report. The model is behind [`Embedder`].

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use super::entry::{Kind, NewEntry};
use super::store::Index;
use super::thumbnail::make_thumbnail;
use crate::modality::image::ImageSource;
use crate::{Error, Result};

/// Image extensions indexed (lower case).
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "gif", "bmp"];
/// Text extensions indexed (lower case).
pub const TEXT_EXTENSIONS: &[&str] = &["txt", "md"];

/// Turns images and texts into vectors of one embedding space.
pub trait Embedder {
    /// The embedding space (model) name; an index holds vectors of one space only.
    fn space(&self) -> &str;
    /// The vector dimension.
    fn dim(&self) -> usize;
    /// One result per image (a file or bytes), in order: a bad image fails alone.
    fn embed_images(&self, images: &[ImageSource]) -> Vec<Result<Vec<f32>>>;
    /// One vector per text, in order.
    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
    /// How cosine similarities become label probabilities (zero-shot classification).
    fn scoring(&self) -> Scoring {
        Scoring::Softmax { scale: 100.0 }
    }
}

/// How a space turns cosine similarities into probabilities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scoring {
    /// CLIP: softmax over the labels of `scale · cos`.
    Softmax { scale: f32 },
    /// SigLIP: each label on its own, `sigmoid(scale · cos + bias)`.
    Sigmoid { scale: f32, bias: f32 },
}

impl Scoring {
    /// Probabilities of the labels from their cosine similarities with one input.
    pub fn probabilities(&self, cosines: &[f32]) -> Vec<f32> {
        match *self {
            Scoring::Softmax { scale } => {
                let max = cosines.iter().fold(f32::NEG_INFINITY, |m, &c| m.max(c));
                let exps: Vec<f32> = cosines.iter().map(|&c| (scale * (c - max)).exp()).collect();
                let sum: f32 = exps.iter().sum();
                exps.iter().map(|e| e / sum).collect()
            }
            Scoring::Sigmoid { scale, bias } => cosines
                .iter()
                .map(|&c| 1.0 / (1.0 + (-(scale * c + bias)).exp()))
                .collect(),
        }
    }
}

/// Options of [`index_dir`].
#[derive(Debug, Clone)]
pub struct IndexDirOptions {
    /// Files embedded (and acknowledged) per batch.
    pub batch_size: usize,
    /// Bytes of a text file given to the embedder (its tokenizer truncates further).
    pub text_bytes: usize,
    /// Characters of a text file kept as its snippet.
    pub snippet_chars: usize,
    /// Longer side of the JPEG thumbnails written under `<index>/thumbs/` (`None`: none).
    pub thumbnail_size: Option<u32>,
}

impl Default for IndexDirOptions {
    fn default() -> Self {
        Self {
            batch_size: 32,
            text_bytes: 16 << 10,
            snippet_chars: 200,
            thumbnail_size: Some(256),
        }
    }
}

/// What [`index_dir`] reports while it runs.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// The walk found `total` image and text files.
    Found { total: usize },
    /// `done` of `total` files are handled; `path` is the latest.
    File {
        done: usize,
        total: usize,
        path: &'a Path,
    },
}

/// A file that could not be indexed, and why (one line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedFile {
    pub path: PathBuf,
    pub reason: String,
}

/// The outcome of [`index_dir`].
#[derive(Debug, Clone, Default)]
pub struct IndexReport {
    /// Image and text files found.
    pub found: usize,
    /// Files embedded for the first time.
    pub added: usize,
    /// Files whose content changed, embedded again.
    pub updated: usize,
    /// Files skipped because their hash is unchanged.
    pub unchanged: usize,
    /// Entries dropped because their file is gone.
    pub removed: usize,
    /// Files that could not be indexed.
    pub failed: Vec<FailedFile>,
}

/// Whether `path` has an image extension that is indexed.
pub fn is_image_path(path: &Path) -> bool {
    has_ext(path, IMAGE_EXTENSIONS)
}

/// Whether `path` has a text extension that is indexed.
pub fn is_text_path(path: &Path) -> bool {
    has_ext(path, TEXT_EXTENSIONS)
}

fn has_ext(path: &Path, list: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| list.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Indexes every image and text file under `dir` (recursively; hidden files and
/// directories and directory symlinks are skipped) into `index`, with `embedder`.
///
/// Unchanged files (same SHA-256) are skipped; entries of files under `dir` that no longer
/// exist are removed; each batch is acknowledged (durable) before the next. Bad files are
/// listed in the report and do not stop the run; an I/O error on the index itself does.
pub fn index_dir(
    index: &mut Index,
    dir: &Path,
    embedder: &dyn Embedder,
    opts: &IndexDirOptions,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<IndexReport> {
    if embedder.space() != index.space() {
        return Err(Error::SpaceMismatch {
            path: index.dir().to_path_buf(),
            index: index.space().to_string(),
            query: embedder.space().to_string(),
        });
    }
    if embedder.dim() != index.dim() {
        return Err(Error::DimensionMismatch {
            what: format!(
                "embedder `{}` vs index {}",
                embedder.space(),
                index.dir().display()
            ),
            expected: index.dim(),
            got: embedder.dim(),
        });
    }
    let root = fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    if !root.is_dir() {
        return Err(Error::InvalidInput(format!(
            "{}: not a directory",
            dir.display()
        )));
    }
    let mut report = IndexReport::default();
    let mut files = Vec::new();
    walk(&root, &mut files, &mut report.failed);
    files.sort();
    report.found = files.len();
    progress(Progress::Found { total: files.len() });

    let mut seen: HashSet<String> = HashSet::new();
    let mut done = 0;
    for chunk in files.chunks(opts.batch_size.max(1)) {
        let mut pending = Vec::new();
        for path in chunk {
            match inspect(index, path, opts, &mut seen) {
                Ok(Some(p)) => pending.push(p),
                Ok(None) => report.unchanged += 1,
                Err(reason) => report.failed.push(FailedFile {
                    path: path.clone(),
                    reason,
                }),
            }
        }
        let thumbs = opts
            .thumbnail_size
            .map(|size| (index.dir().to_path_buf(), size));
        let entries = embed(embedder, pending, opts.snippet_chars, thumbs, &mut report);
        if !entries.is_empty() {
            index.add(entries)?;
        }
        for path in chunk {
            done += 1;
            progress(Progress::File {
                done,
                total: files.len(),
                path,
            });
        }
    }

    // Entries under `root` whose file is gone (or no longer an indexed kind).
    let gone: Vec<String> = index
        .entries()
        .filter(|e| Path::new(&e.path).starts_with(&root) && !seen.contains(&e.path))
        .map(|e| e.path.clone())
        .collect();
    let refs: Vec<&str> = gone.iter().map(String::as_str).collect();
    report.removed = index.remove(&refs)?;
    index.save_graph()?;
    Ok(report)
}

/// Recursively lists indexable files; unreadable directories go to `failed`.
fn walk(dir: &Path, out: &mut Vec<PathBuf>, failed: &mut Vec<FailedFile>) {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            failed.push(FailedFile {
                path: dir.to_path_buf(),
                reason: format!("cannot list directory: {e}"),
            });
            return;
        }
    };
    for entry in rd {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                failed.push(FailedFile {
                    path: dir.to_path_buf(),
                    reason: format!("cannot list directory: {e}"),
                });
                continue;
            }
        };
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            walk(&path, out, failed);
        } else if (ft.is_file() || (ft.is_symlink() && path.is_file()))
            && (is_image_path(&path) || is_text_path(&path))
        {
            out.push(path);
        }
    }
}

/// A file to embed.
struct Pending {
    path: PathBuf,
    key: String,
    kind: Kind,
    hash: [u8; 32],
    modified_ns: i64,
    /// The text to embed (text files).
    text: Option<String>,
    existed: bool,
}

/// Hashes a file and decides whether it needs embedding (`None`: unchanged).
fn inspect(
    index: &Index,
    path: &Path,
    opts: &IndexDirOptions,
    seen: &mut HashSet<String>,
) -> std::result::Result<Option<Pending>, String> {
    let key = path
        .to_str()
        .ok_or("the path is not valid UTF-8; not indexed")?
        .to_string();
    seen.insert(key.clone());
    let one_line = |e: std::io::Error| format!("cannot read: {e}");
    let mut f = fs::File::open(path).map_err(one_line)?;
    let meta = f.metadata().map_err(one_line)?;
    let modified_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64);
    let kind = if is_image_path(path) {
        Kind::Image
    } else {
        Kind::Text
    };
    // Hash the whole file, keeping the head of a text file.
    let mut hasher = Sha256::new();
    let mut head = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = f.read(&mut buf).map_err(one_line)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        if kind == Kind::Text && head.len() < opts.text_bytes {
            let take = n.min(opts.text_bytes - head.len());
            head.extend_from_slice(&buf[..take]);
        }
    }
    let hash: [u8; 32] = hasher.finalize().into();
    let old = index.get(&key);
    if old.is_some_and(|e| e.hash == hash && e.kind == kind) {
        return Ok(None);
    }
    let text = if kind == Kind::Text {
        let s = match std::str::from_utf8(&head) {
            Ok(s) => s,
            // A multi-byte character cut at the end of the head is fine; anything else is not text.
            Err(e) if e.error_len().is_none() => {
                std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
            }
            Err(e) => {
                return Err(format!(
                    "not UTF-8 text (invalid byte at offset {})",
                    e.valid_up_to()
                ));
            }
        };
        if s.trim().is_empty() {
            return Err("empty text file".into());
        }
        Some(s.to_string())
    } else {
        None
    };
    Ok(Some(Pending {
        path: path.to_path_buf(),
        key,
        kind,
        hash,
        modified_ns,
        text,
        existed: old.is_some(),
    }))
}

/// Embeds a batch; failures go to the report, successes become entries.
fn embed(
    embedder: &dyn Embedder,
    pending: Vec<Pending>,
    snippet_chars: usize,
    thumbs: Option<(PathBuf, u32)>,
    report: &mut IndexReport,
) -> Vec<NewEntry> {
    let dim = embedder.dim();
    let mut vectors: Vec<std::result::Result<Vec<f32>, String>> =
        vec![Err(String::new()); pending.len()];

    let images: Vec<usize> = (0..pending.len())
        .filter(|&i| pending[i].kind == Kind::Image)
        .collect();
    if !images.is_empty() {
        let sources: Vec<ImageSource> = images
            .iter()
            .map(|&i| ImageSource::File(&pending[i].path))
            .collect();
        let out = embedder.embed_images(&sources);
        if out.len() != images.len() {
            let why = format!(
                "the embedder returned {} results for {} images",
                out.len(),
                images.len()
            );
            images.iter().for_each(|&i| vectors[i] = Err(why.clone()));
        } else {
            for (&i, r) in images.iter().zip(out) {
                vectors[i] = r.map_err(|e| one_line(&e.to_string()));
            }
        }
    }

    let texts: Vec<usize> = (0..pending.len())
        .filter(|&i| pending[i].kind == Kind::Text)
        .collect();
    if !texts.is_empty() {
        let strs: Vec<&str> = texts
            .iter()
            .map(|&i| pending[i].text.as_deref().unwrap_or(""))
            .collect();
        match embedder.embed_texts(&strs) {
            Ok(out) if out.len() == texts.len() => {
                for (&i, v) in texts.iter().zip(out) {
                    vectors[i] = Ok(v);
                }
            }
            // The batch failed (or came back short): retry one by one to isolate the bad text.
            _ => {
                for (&i, s) in texts.iter().zip(&strs) {
                    vectors[i] = match embedder.embed_texts(&[s]) {
                        Ok(mut v) if v.len() == 1 => Ok(v.remove(0)),
                        Ok(v) => Err(format!(
                            "the embedder returned {} vectors for 1 text",
                            v.len()
                        )),
                        Err(e) => Err(one_line(&e.to_string())),
                    };
                }
            }
        }
    }

    let mut entries = Vec::new();
    for (p, v) in pending.into_iter().zip(vectors) {
        let checked = v.and_then(|v| {
            if v.len() != dim {
                Err(format!(
                    "the embedder returned a {}-d vector, expected {dim}",
                    v.len()
                ))
            } else if !v.iter().all(|x| x.is_finite()) || v.iter().all(|&x| x == 0.0) {
                Err("the embedding is zero or not finite".into())
            } else {
                Ok(v)
            }
        });
        match checked {
            Ok(vector) => {
                if p.existed {
                    report.updated += 1;
                } else {
                    report.added += 1;
                }
                let snippet = p.text.as_deref().map(|t| snippet(t, snippet_chars));
                let thumbnail = match (&thumbs, p.kind) {
                    (Some((dir, size)), Kind::Image) => {
                        make_thumbnail(dir, &p.path, &p.hash, *size)
                            .map(|t| t.display().to_string())
                    }
                    _ => None,
                };
                entries.push(NewEntry {
                    path: p.key,
                    kind: p.kind,
                    hash: p.hash,
                    modified_ns: p.modified_ns,
                    thumbnail,
                    snippet,
                    vector,
                });
            }
            Err(reason) => report.failed.push(FailedFile {
                path: p.path,
                reason,
            }),
        }
    }
    entries
}

/// The first `n` characters of `text` on one line.
fn snippet(text: &str, n: usize) -> String {
    let s: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

fn one_line(s: &str) -> String {
    s.lines().map(str::trim).collect::<Vec<_>>().join(" ")
}
