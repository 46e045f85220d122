//! Models from a Hugging Face hub, when one is reachable: `hf:org/name[@rev][/file]` or a bare
//! `org/name`.
//!
//! Downloads go through the hub's HTTP API (`api/models/…/revision`, `…/tree`, `…/resolve`)
//! into `<root>/hub`, in the hub's cache layout (`models--org--name/{refs,snapshots}`), so a
//! model fetched once resolves offline. Sizes are checked, and LFS files' sha256.
//! A whole-repo fetch takes the files a safetensors checkpoint needs (configs, tokenizer,
//! weights); a GGUF or other single file is fetched by naming it.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;

use super::integrity::{CopyError, TempFile, check};
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

/// The hub used when `HF_ENDPOINT` is not set.
pub const DEFAULT_HUB_ENDPOINT: &str = "https://huggingface.co";

/// One file of a repo tree, as the hub's `tree` API lists it.
#[derive(Debug, Deserialize)]
struct TreeEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: u64,
    /// Present for files stored in LFS: their sha256.
    lfs: Option<LfsInfo>,
}

#[derive(Debug, Deserialize)]
struct LfsInfo {
    oid: String,
}

/// Whether `path` matches a snapshot pattern: `*suffix` or an exact file name.
fn wanted(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    SNAPSHOT_PATTERNS.iter().any(|p| match p.strip_prefix('*') {
        Some(suffix) => path.ends_with(suffix),
        None => name == *p,
    })
}

/// The access token: `HF_TOKEN`, else the file `huggingface-cli login` writes
/// (`$HF_HOME/token`, default `~/.cache/huggingface/token`).
fn token() -> Option<String> {
    let from_env = std::env::var("HF_TOKEN").ok();
    let from_file = || {
        let home = std::env::var_os("HF_HOME").map(PathBuf::from).or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface"))
        })?;
        std::fs::read_to_string(home.join("token")).ok()
    };
    from_env
        .or_else(from_file)
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// Talks to one hub endpoint for one repo.
struct HubClient<'a> {
    agent: ureq::Agent,
    endpoint: String,
    repo: &'a str,
    token: Option<String>,
}

impl HubClient<'_> {
    fn get(&self, url: &str) -> std::result::Result<ureq::http::Response<ureq::Body>, String> {
        let mut request = self.agent.get(url);
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        request.call().map_err(|e| format!("{url}: {e}"))
    }

    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> std::result::Result<(T, Option<String>), String> {
        let mut response = self.get(url)?;
        let next = response
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .and_then(next_link);
        let body = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| format!("{url}: {e}"))?;
        let value = serde_json::from_str(&body).map_err(|e| format!("{url}: bad reply: {e}"))?;
        Ok((value, next))
    }

    /// The commit a branch, tag or commit names.
    fn commit(&self, revision: &str) -> std::result::Result<String, String> {
        #[derive(Deserialize)]
        struct Info {
            sha: String,
        }
        let url = format!(
            "{}/api/models/{}/revision/{revision}",
            self.endpoint, self.repo
        );
        let (info, _): (Info, _) = self.get_json(&url)?;
        if !is_commit_hash(&info.sha) {
            return Err(format!("{url}: `{}` is not a commit hash", info.sha));
        }
        Ok(info.sha)
    }

    /// Every file of the repo at `commit`, following the listing's pages.
    fn files(&self, commit: &str) -> std::result::Result<Vec<TreeEntry>, String> {
        let mut url = Some(format!(
            "{}/api/models/{}/tree/{commit}?recursive=true",
            self.endpoint, self.repo
        ));
        let mut files = Vec::new();
        while let Some(page) = url {
            let (entries, next): (Vec<TreeEntry>, _) = self.get_json(&page)?;
            files.extend(entries.into_iter().filter(|e| e.kind == "file"));
            url = next;
        }
        Ok(files)
    }

    /// Downloads `file` at `commit` into `dest`, checking its size and (for LFS files) sha256.
    fn download(
        &self,
        commit: &str,
        file: &str,
        expected: Option<&TreeEntry>,
        dest: &Path,
        bar: &ProgressBar,
    ) -> Result<()> {
        let url = format!("{}/{}/resolve/{commit}/{file}", self.endpoint, self.repo);
        let response = self.get(&url).map_err(|reason| Error::Fetch {
            what: file.to_string(),
            url: url.clone(),
            reason,
        })?;
        let tmp_dir = dest.parent().unwrap_or(dest);
        let mut temp = TempFile::create_in(tmp_dir, file)?;
        let mut body = response.into_body().into_reader();
        match temp.copy_from(&mut body, |n| bar.inc(n)) {
            Ok(_) => {}
            Err(CopyError::Read(e)) => {
                return Err(Error::Fetch {
                    what: file.to_string(),
                    url,
                    reason: e.to_string(),
                });
            }
            Err(CopyError::Write(e)) => return Err(Error::io(temp.path(), e)),
        }
        if let Some(entry) = expected {
            let (size, sha256) = temp.digest();
            // The tree lists sha256 only for LFS files (others carry a git blob id).
            let want_sha = entry
                .lfs
                .as_ref()
                .map_or(sha256.as_str(), |l| l.oid.as_str());
            check(dest, size, &sha256, entry.size, want_sha)?;
        }
        temp.persist(dest)
    }
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

/// Fetches `r` from the hub at `endpoint` into `hub_dir` (token: `HF_TOKEN` or the
/// `huggingface-cli login` file). `hint` is appended to network errors.
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
    let client = HubClient {
        agent: super::pypi::http_agent(),
        endpoint: endpoint.trim_end_matches('/').to_string(),
        repo: &r.repo,
        token: token(),
    };
    let revision = r.revision.as_deref().unwrap_or("main");
    let commit = client.commit(revision).map_err(fail)?;
    let folder = hub_dir.join(r.cache_folder());
    let snapshot = folder.join("snapshots").join(&commit);
    let (todo, listed): (Vec<String>, Vec<TreeEntry>) = match &r.file {
        Some(file) => (vec![file.clone()], Vec::new()),
        None => {
            let listed: Vec<TreeEntry> = client
                .files(&commit)
                .map_err(fail)?
                .into_iter()
                .filter(|e| wanted(&e.path))
                .collect();
            if !listed.iter().any(|e| e.path.ends_with(".safetensors")) {
                return Err(fail(format!(
                    "the repo has no safetensors weights; to fetch one file (e.g. a GGUF) name it: hf:{}/FILE",
                    r.repo
                )));
            }
            (listed.iter().map(|e| e.path.clone()).collect(), listed)
        }
    };
    let bar = progress_bar(progress, &r.spec(), listed.iter().map(|e| e.size).sum());
    for file in &todo {
        let dest = snapshot.join(file);
        let entry = listed.iter().find(|e| &e.path == file);
        if dest.is_file() && entry.is_none_or(|e| file_size(&dest) == e.size) {
            bar.inc(entry.map_or(0, |e| e.size));
            continue;
        }
        let fetched = client.download(&commit, file, entry, &dest, &bar);
        if let Err(err) = fetched {
            bar.finish_and_clear();
            return Err(match err {
                Error::Fetch { url, reason, .. } => Error::Fetch {
                    what: r.spec(),
                    url,
                    reason: format!("{reason}{hint}"),
                },
                other => other,
            });
        }
    }
    bar.finish_and_clear();
    if !is_commit_hash(revision) {
        super::integrity::write_atomic(&folder.join("refs").join(revision), commit.as_bytes())?;
    }
    match &r.file {
        Some(file) => Ok(snapshot.join(file)),
        None => {
            super::integrity::write_atomic(&complete_marker(hub_dir, r, &commit), b"")?;
            Ok(snapshot)
        }
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// One byte-count bar for a whole fetch (drawn only when stderr is a terminal).
fn progress_bar(progress: bool, label: &str, total: u64) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let bar =
        ProgressBar::with_draw_target((total > 0).then_some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_string());
    bar
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

        std::fs::remove_dir_all(&dir).unwrap();
    }
}
