//! Models from a Hugging Face hub, when one is reachable: `hf:org/name[@rev][/file]` or a bare
//! `org/name`.
//!
//! Downloads go through `hf-hub` into `<root>/hub` (the hub's own cache layout:
//! `models--org--name/{refs,blobs,snapshots}`), so a model fetched once resolves offline.
//! A whole-repo fetch takes the files a safetensors checkpoint needs (configs, tokenizer,
//! weights); a GGUF or other single file is fetched by naming it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hf_hub::progress::{DownloadEvent, Progress, ProgressEvent, ProgressHandler};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::{Error, Result};

/// Files taken from a repo when no single file is named.
pub const SNAPSHOT_PATTERNS: &[&str] = &[
    "*.json",
    "*.safetensors",
    "*.txt",
    "tokenizer.model",
    "*.tiktoken",
];

/// File endings that mark a bare `a/b` as a (missing) local path rather than a hub repo id.
const FILE_ENDINGS: &[&str] = &[
    ".gguf",
    ".bin",
    ".safetensors",
    ".onnx",
    ".json",
    ".pth",
    ".pt",
    ".npz",
    ".txt",
    ".model",
];

/// A model on the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRef {
    /// `org/name` (or a legacy single-segment id such as `gpt2`).
    pub repo: String,
    /// Branch, tag or commit; `main` when absent.
    pub revision: Option<String>,
    /// One file inside the repo; the whole checkpoint when absent.
    pub file: Option<String>,
}

impl HubRef {
    /// Parses `hf:org/name[@rev][/path/in/repo]`, `hf:name`, or a bare `org/name[@rev]`.
    /// Returns `None` for anything else (catalogue names, paths).
    pub fn parse(s: &str) -> Option<HubRef> {
        if let Some(rest) = s.strip_prefix("hf:") {
            let mut segments = rest.split('/');
            let first = segments.next()?;
            let rest: Vec<&str> = segments.collect();
            let (repo, revision, file) = match rest.split_first() {
                None => {
                    let (name, rev) = split_revision(first);
                    (name.to_string(), rev, None)
                }
                Some((second, file)) => {
                    let (name, rev) = split_revision(second);
                    let file = (!file.is_empty()).then(|| file.join("/"));
                    (format!("{first}/{name}"), rev, file)
                }
            };
            if !repo.split('/').all(valid_segment)
                || file
                    .as_deref()
                    .is_some_and(|f| f.split('/').any(|p| p.is_empty() || p == ".."))
                || revision.as_deref() == Some("")
            {
                return None;
            }
            return Some(HubRef {
                repo,
                revision,
                file,
            });
        }
        let (org, rest) = s.split_once('/')?;
        if rest.contains('/') {
            return None;
        }
        let (name, revision) = split_revision(rest);
        let lower = name.to_ascii_lowercase();
        if !valid_segment(org)
            || !valid_segment(name)
            || revision.as_deref() == Some("")
            || FILE_ENDINGS.iter().any(|e| lower.ends_with(e))
        {
            return None;
        }
        Some(HubRef {
            repo: format!("{org}/{name}"),
            revision,
            file: None,
        })
    }

    /// The display form, `hf:org/name[@rev][/file]`.
    pub fn spec(&self) -> String {
        let mut s = format!("hf:{}", self.repo);
        if let Some(rev) = &self.revision {
            s.push('@');
            s.push_str(rev);
        }
        if let Some(file) = &self.file {
            s.push('/');
            s.push_str(file);
        }
        s
    }

    /// The repo's folder in the hub cache: `models--org--name`.
    pub fn cache_folder(&self) -> String {
        std::iter::once("models")
            .chain(self.repo.split('/'))
            .collect::<Vec<_>>()
            .join("--")
    }
}

fn split_revision(segment: &str) -> (&str, Option<String>) {
    match segment.split_once('@') {
        Some((name, rev)) => (name, Some(rev.to_string())),
        None => (segment, None),
    }
}

/// A hub repo-id segment: `[A-Za-z0-9._-]`, not starting with `.` or `-`, no `..`.
fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 96
        && !s.starts_with(['.', '-'])
        && !s.contains("..")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The marker written next to a snapshot once a whole-repo fetch has fully succeeded.
fn complete_marker(hub_dir: &Path, r: &HubRef, commit: &str) -> PathBuf {
    hub_dir
        .join(r.cache_folder())
        .join(format!(".omni-complete-{commit}"))
}

/// The cached copy of `r` in `hub_dir`, without any network access: the named file, or the
/// snapshot directory of a completed whole-repo fetch.
pub fn cached(hub_dir: &Path, r: &HubRef) -> Option<PathBuf> {
    let folder = hub_dir.join(r.cache_folder());
    let revision = r.revision.as_deref().unwrap_or("main");
    let commit = if is_commit_hash(revision) {
        revision.to_string()
    } else {
        std::fs::read_to_string(folder.join("refs").join(revision))
            .ok()?
            .trim()
            .to_string()
    };
    if !is_commit_hash(&commit) {
        return None;
    }
    let snapshot = folder.join("snapshots").join(&commit);
    match &r.file {
        Some(file) => Some(snapshot.join(file)).filter(|p| p.is_file()),
        None => {
            Some(snapshot).filter(|s| s.is_dir() && complete_marker(hub_dir, r, &commit).exists())
        }
    }
}

/// Whether a downloaded snapshot holds weights omni can load.
fn has_weights(snapshot: &Path) -> bool {
    std::fs::read_dir(snapshot).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".safetensors"))
    })
}

/// The hub used when `HF_ENDPOINT` is not set.
pub const DEFAULT_HUB_ENDPOINT: &str = "https://huggingface.co";

/// Fetches `r` from the hub at `endpoint` into `hub_dir` (token: `HF_TOKEN` or the
/// `huggingface-cli login` file, as hf-hub finds it).
pub fn fetch(
    hub_dir: &Path,
    r: &HubRef,
    endpoint: &str,
    progress: bool,
    hint: &str,
) -> Result<PathBuf> {
    let fail = |reason: String| Error::Fetch {
        what: r.spec(),
        url: format!("{}/{}", endpoint.trim_end_matches('/'), r.repo),
        reason: format!("{reason}{hint}"),
    };
    let client = hf_hub::HFClient::builder()
        .endpoint(endpoint)
        .cache_dir(hub_dir)
        .retry_max_attempts(1)
        .user_agent(concat!("omni/", env!("CARGO_PKG_VERSION")))
        .build_sync()
        .map_err(|e| fail(e.to_string()))?;
    let (owner, name) = hf_hub::split_id(&r.repo);
    let repo = client.model(owner, name);
    let bar = BarHandler::new(progress, &r.spec());
    let result = match &r.file {
        Some(file) => repo
            .download_file()
            .filename(file.clone())
            .maybe_revision(r.revision.clone())
            .progress(Progress::from(bar.clone()))
            .send(),
        None => repo
            .snapshot_download()
            .maybe_revision(r.revision.clone())
            .allow_patterns(SNAPSHOT_PATTERNS.iter().map(|p| p.to_string()).collect())
            .progress(Progress::from(bar.clone()))
            .send(),
    };
    bar.bar.finish_and_clear();
    let path = result.map_err(|e| fail(error_chain(&e)))?;
    if r.file.is_none() {
        if !has_weights(&path) {
            return Err(fail(format!(
                "the repo has no safetensors weights; to fetch one file (e.g. a GGUF) name it: hf:{}/FILE",
                r.repo
            )));
        }
        let commit = path
            .file_name()
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default();
        super::integrity::write_atomic(&complete_marker(hub_dir, r, &commit), b"")?;
    }
    Ok(path)
}

/// An error and its sources, e.g. `HTTP request error: …: dns error: failed to lookup address`,
/// each message once.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// Draws hf-hub's download events as one indicatif bar (hidden when stderr is no terminal).
struct BarHandler {
    bar: ProgressBar,
    files: Mutex<HashMap<String, u64>>,
}

impl BarHandler {
    fn new(progress: bool, label: &str) -> std::sync::Arc<BarHandler> {
        let bar = if progress {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(label.to_string());
        std::sync::Arc::new(BarHandler {
            bar,
            files: Mutex::new(HashMap::new()),
        })
    }
}

impl ProgressHandler for BarHandler {
    fn on_progress(&self, event: &ProgressEvent) {
        let ProgressEvent::Download(event) = event else {
            return;
        };
        match event {
            DownloadEvent::Start { total_bytes, .. } => self.bar.set_length(*total_bytes),
            DownloadEvent::Progress { files } => {
                if let Ok(mut seen) = self.files.lock() {
                    for f in files {
                        seen.insert(f.filename.clone(), f.bytes_completed);
                    }
                    self.bar.set_position(seen.values().sum());
                }
            }
            DownloadEvent::AggregateProgress {
                bytes_completed, ..
            } if *bytes_completed > self.bar.position() => {
                self.bar.set_position(*bytes_completed);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(repo: &str, revision: Option<&str>, file: Option<&str>) -> Option<HubRef> {
        Some(HubRef {
            repo: repo.into(),
            revision: revision.map(Into::into),
            file: file.map(Into::into),
        })
    }

    #[test]
    fn which_names_go_to_the_hub() {
        assert_eq!(HubRef::parse("hf:org/name"), hub("org/name", None, None));
        assert_eq!(HubRef::parse("hf:gpt2"), hub("gpt2", None, None));
        assert_eq!(
            HubRef::parse("hf:Qwen/Qwen2.5-0.5B@v1/sub/model.gguf"),
            hub("Qwen/Qwen2.5-0.5B", Some("v1"), Some("sub/model.gguf"))
        );
        assert_eq!(
            HubRef::parse("openai/whisper-tiny.en"),
            hub("openai/whisper-tiny.en", None, None)
        );
        assert_eq!(
            HubRef::parse("org/name@refs-pr-1"),
            hub("org/name", Some("refs-pr-1"), None)
        );
        // Catalogue names, paths and malformed ids are not hub refs.
        for not_hub in [
            "smollm2-135m-instruct",
            "whisper-tiny.en",
            "./org/name",
            "/abs/path",
            "models/x.gguf",
            "dir/weights.safetensors",
            "a/b/c",
            "../x",
            "org/.hidden",
            "org/-x",
            "org/na me",
            "org/",
            "/name",
            "hf:",
            "hf:org/../x",
            "hf:org/name/../../etc",
            "hf:org/name@",
        ] {
            assert_eq!(HubRef::parse(not_hub), None, "{not_hub}");
        }
    }

    #[test]
    fn specs_and_cache_folders() {
        let r = HubRef::parse("hf:org/name@dev/a.gguf").unwrap();
        assert_eq!(r.spec(), "hf:org/name@dev/a.gguf");
        assert_eq!(r.cache_folder(), "models--org--name");
        assert_eq!(
            HubRef::parse("hf:gpt2").unwrap().cache_folder(),
            "models--gpt2"
        );
    }

    #[test]
    fn cached_lookup_follows_refs_without_network() {
        let dir = std::env::temp_dir().join(format!("omni-hub-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let folder = dir.join("models--org--name");
        let snapshot = folder.join("snapshots").join(commit);
        std::fs::create_dir_all(&snapshot).unwrap();
        std::fs::create_dir_all(folder.join("refs")).unwrap();
        std::fs::write(folder.join("refs").join("main"), format!("{commit}\n")).unwrap();
        std::fs::write(snapshot.join("model.gguf"), b"x").unwrap();

        let whole = HubRef::parse("org/name").unwrap();
        // A snapshot without the completion marker may be partial: not cached.
        assert_eq!(cached(&dir, &whole), None);
        std::fs::write(complete_marker(&dir, &whole, commit), b"").unwrap();
        assert_eq!(cached(&dir, &whole), Some(snapshot.clone()));

        let file = HubRef::parse("hf:org/name/model.gguf").unwrap();
        assert_eq!(cached(&dir, &file), Some(snapshot.join("model.gguf")));
        let missing = HubRef::parse("hf:org/name/other.gguf").unwrap();
        assert_eq!(cached(&dir, &missing), None);
        let by_commit = HubRef::parse(&format!("hf:org/name@{commit}/model.gguf")).unwrap();
        assert_eq!(cached(&dir, &by_commit), Some(snapshot.join("model.gguf")));
        let other_branch = HubRef::parse("hf:org/name@dev/model.gguf").unwrap();
        assert_eq!(cached(&dir, &other_branch), None);
        assert_eq!(cached(&dir, &HubRef::parse("org/other").unwrap()), None);

        assert!(!has_weights(&snapshot));
        std::fs::write(snapshot.join("model.safetensors"), b"x").unwrap();
        assert!(has_weights(&snapshot));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
