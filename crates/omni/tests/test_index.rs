//! The embedded index: ANN recall against exact search on 100k vectors, persistence,
//! incremental directory indexing with a fake embedder, crash safety under SIGKILL, and
//! clear errors for corrupt files and mismatched spaces/dimensions.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use omni::index::{
    Embedder, HnswParams, Index, IndexDirOptions, IndexOptions, Kind, NewEntry, SearchMode,
    SearchOptions, index_dir,
};
use omni::modality::image::ImageSource;

// ---------------------------------------------------------------- test doubles

/// splitmix64: deterministic pseudo-random numbers for the synthetic data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f32 {
        ((self.next() >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }
    /// A standard normal sample (Box–Muller).
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
    fn unit(&mut self, dim: usize) -> Vec<f32> {
        normalize((0..dim).map(|_| self.normal()).collect())
    }
}

fn normalize(v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

/// A vector near a random cluster centre: `centre + spread·noise`, normalised.
fn clustered(rng: &mut Rng, centres: &[Vec<f32>], spread: f32) -> Vec<f32> {
    let c = &centres[(rng.next() % centres.len() as u64) as usize];
    let dim = c.len();
    let s = spread / (dim as f32).sqrt();
    normalize(c.iter().map(|x| x + s * rng.normal()).collect())
}

fn entry(path: String, vector: Vec<f32>) -> NewEntry {
    NewEntry {
        path,
        kind: Kind::Image,
        hash: [0; 32],
        modified_ns: 0,
        thumbnail: None,
        snippet: None,
        vector,
    }
}

/// TEST DOUBLE, not a model: embeds bytes by hashing them into a fixed pseudo-random
/// vector, so equal content gives equal vectors. Images whose bytes start with `BAD`
/// fail, like an undecodable file would.
struct HashEmbedder {
    dim: usize,
}

impl HashEmbedder {
    fn vector(&self, bytes: &[u8]) -> Vec<f32> {
        let mut seed = 0xcbf2_9ce4_8422_2325u64;
        for &b in bytes {
            seed = (seed ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        Rng(seed).unit(self.dim)
    }
}

impl Embedder for HashEmbedder {
    fn space(&self) -> &str {
        "test-hash"
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn embed_images(&self, images: &[ImageSource]) -> Vec<omni::Result<Vec<f32>>> {
        images
            .iter()
            .map(|source| {
                let p = source.name();
                let bytes = std::fs::read(p).map_err(|e| omni::Error::io(p, e))?;
                if bytes.starts_with(b"BAD") {
                    return Err(omni::Error::Media {
                        path: p.to_path_buf(),
                        reason: "not a decodable image\n(second line)".into(),
                    });
                }
                Ok(self.vector(&bytes))
            })
            .collect()
    }
    fn embed_texts(&self, texts: &[&str]) -> omni::Result<Vec<Vec<f32>>> {
        if texts.iter().any(|t| t.contains("POISON")) {
            return Err(omni::Error::Tokenizer("cannot tokenize".into()));
        }
        Ok(texts.iter().map(|t| self.vector(t.as_bytes())).collect())
    }
}

fn fresh_dir(tag: &str) -> PathBuf {
    let d = common::temp_dir(tag);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

// ---------------------------------------------------------------- recall + persistence

#[test]
fn hnsw_recall_at_10_on_100k_vectors_and_persistence() {
    let dim = 384;
    let n = 100_000;
    let mut rng = Rng(7);
    let centres: Vec<Vec<f32>> = (0..2_000).map(|_| rng.unit(dim)).collect();
    let spread = 1.0;
    let dir = fresh_dir("index-recall");
    let opts = IndexOptions {
        exact_threshold: 1_000,
        ..IndexOptions::default()
    };
    let t0 = Instant::now();
    let mut index = Index::open(&dir, "synthetic", dim, opts.clone()).unwrap();
    for b in 0..n / 5_000 {
        let batch = (0..5_000)
            .map(|i| {
                entry(
                    format!("v{}", b * 5_000 + i),
                    clustered(&mut rng, &centres, spread),
                )
            })
            .collect();
        index.add(batch).unwrap();
    }
    index.save_graph().unwrap();
    eprintln!("built {n} x {dim} in {:.1?}", t0.elapsed());
    assert!(index.has_graph());
    assert_eq!(index.len(), n);

    let queries: Vec<Vec<f32>> = (0..200)
        .map(|_| clustered(&mut rng, &centres, spread))
        .collect();
    let exact = SearchOptions {
        mode: SearchMode::Exact,
        ..SearchOptions::default()
    };
    let ann = SearchOptions::default();
    let (mut hits, mut t_exact, mut t_ann) = (0usize, 0.0, 0.0);
    let mut ann_results = Vec::new();
    for q in &queries {
        let t = Instant::now();
        let want = index.search("synthetic", q, &exact).unwrap();
        t_exact += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let got = index.search("synthetic", q, &ann).unwrap();
        t_ann += t.elapsed().as_secs_f64();
        assert_eq!(want.len(), 10);
        assert!(want.windows(2).all(|w| w[0].score >= w[1].score));
        let want: HashSet<u64> = want.iter().map(|h| h.entry.id).collect();
        hits += got.iter().filter(|h| want.contains(&h.entry.id)).count();
        ann_results.push(got);
    }
    let recall = hits as f64 / (queries.len() * 10) as f64;
    eprintln!(
        "recall@10 = {recall:.4}; exact {:.2} ms/query, hnsw {:.3} ms/query",
        t_exact * 1e3 / 200.0,
        t_ann * 1e3 / 200.0
    );
    assert!(recall >= 0.95, "recall@10 {recall} < 0.95");

    // Close, reopen (graph from disk): the same results.
    drop(index);
    let t = Instant::now();
    let index = Index::open_read_only(&dir, opts).unwrap();
    eprintln!("reopened in {:.1?}", t.elapsed());
    assert_eq!(index.len(), n);
    assert!(index.has_graph());
    for (q, before) in queries.iter().zip(&ann_results) {
        assert_eq!(&index.search("synthetic", q, &ann).unwrap(), before);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn small_index_round_trip_remove_and_replace() {
    let dir = fresh_dir("index-small");
    let mut rng = Rng(1);
    let vs: Vec<Vec<f32>> = (0..50).map(|_| rng.unit(16)).collect();
    {
        let mut index = Index::open(&dir, "s", 16, IndexOptions::default()).unwrap();
        let ids = index
            .add(
                vs.iter()
                    .enumerate()
                    .map(|(i, v)| entry(format!("p{i}"), v.clone()))
                    .collect(),
            )
            .unwrap();
        assert_eq!(ids, (0..50).collect::<Vec<u64>>());
        assert_eq!(index.remove(&["p3", "nope"]).unwrap(), 1);
        // Replacing p4's vector keeps one entry for p4.
        index.add(vec![entry("p4".into(), vs[0].clone())]).unwrap();
        assert_eq!(index.len(), 49);
        index.compact().unwrap();
    }
    let index = Index::open_read_only(&dir, IndexOptions::default()).unwrap();
    assert_eq!(index.len(), 49);
    assert!(index.get("p3").is_none());
    let hits = index
        .search(
            "s",
            &vs[0],
            &SearchOptions {
                k: 2,
                ..Default::default()
            },
        )
        .unwrap();
    let paths: HashSet<&str> = hits.iter().map(|h| h.entry.path.as_str()).collect();
    assert_eq!(paths, HashSet::from(["p0", "p4"]));
    assert!((hits[0].score - 1.0).abs() < 1e-5);
    let q = &vs[10];
    let top = index.search("s", q, &SearchOptions::default()).unwrap();
    assert_eq!(top[0].entry.path, "p10");
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------------- index_dir

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn index_dir_is_incremental_and_reports_bad_files() {
    let root = fresh_dir("index-dir");
    let data = root.join("data");
    let idx = root.join("idx");
    write(&data.join("a.txt"), b"a cat sat on the mat");
    write(&data.join("notes/b.md"), b"# dogs\nbark at night");
    write(&data.join("img1.PNG"), b"fake png bytes 1");
    write(&data.join("deep/er/img2.jpg"), b"fake jpg bytes 2");
    write(&data.join("bad.webp"), b"BAD image");
    write(&data.join("latin1.txt"), b"caf\xe9 au lait");
    write(&data.join("empty.md"), b"  \n");
    write(&data.join("poison.txt"), b"POISON text");
    write(&data.join("ignored.rs"), b"fn main() {}");
    write(&data.join(".hidden/x.txt"), b"hidden");

    let emb = HashEmbedder { dim: 24 };
    let opts = IndexDirOptions {
        batch_size: 3,
        ..Default::default()
    };
    let mut index = Index::open(&idx, "test-hash", 24, IndexOptions::default()).unwrap();
    let mut events = 0;
    let report = index_dir(&mut index, &data, &emb, &opts, &mut |_| events += 1).unwrap();
    assert_eq!(report.found, 8);
    assert_eq!(report.added, 4, "{report:?}");
    assert_eq!(
        (report.updated, report.unchanged, report.removed),
        (0, 0, 0)
    );
    assert_eq!(events, 9); // Found + one per file
    let failed: Vec<(String, String)> = report
        .failed
        .iter()
        .map(|f| {
            (
                f.path.file_name().unwrap().to_string_lossy().into_owned(),
                f.reason.clone(),
            )
        })
        .collect();
    assert_eq!(failed.len(), 4, "{failed:?}");
    let reason = |name: &str| {
        failed
            .iter()
            .find(|f| f.0 == name)
            .map(|f| f.1.clone())
            .unwrap()
    };
    assert!(reason("bad.webp").contains("not a decodable image (second line)"));
    assert!(!reason("bad.webp").contains('\n'));
    assert!(reason("latin1.txt").contains("not UTF-8"));
    assert!(reason("empty.md").contains("empty"));
    assert!(reason("poison.txt").contains("cannot tokenize"));

    let data = std::fs::canonicalize(&data).unwrap();
    let key = |p: &str| data.join(p).to_string_lossy().into_owned();
    let a = index.get(&key("a.txt")).unwrap().clone();
    assert_eq!(a.kind, Kind::Text);
    assert_eq!(a.snippet.as_deref(), Some("a cat sat on the mat"));
    assert_eq!(index.get(&key("img1.PNG")).unwrap().kind, Kind::Image);

    // Second run: nothing changed.
    let report = index_dir(&mut index, &data, &emb, &opts, &mut |_| {}).unwrap();
    assert_eq!(
        (
            report.added,
            report.updated,
            report.unchanged,
            report.removed
        ),
        (0, 0, 4, 0)
    );

    // Change one file, delete one, add one.
    write(&data.join("a.txt"), b"a cat sat on the hat");
    std::fs::remove_file(data.join("deep/er/img2.jpg")).unwrap();
    write(&data.join("img3.gif"), b"fake gif");
    drop(index);
    let mut index = Index::open(&idx, "test-hash", 24, IndexOptions::default()).unwrap();
    let report = index_dir(&mut index, &data, &emb, &opts, &mut |_| {}).unwrap();
    assert_eq!(
        (
            report.added,
            report.updated,
            report.unchanged,
            report.removed
        ),
        (1, 1, 2, 1)
    );
    assert!(index.get(&key("deep/er/img2.jpg")).is_none());
    let a2 = index.get(&key("a.txt")).unwrap();
    assert_ne!(a2.hash, a.hash);
    assert_ne!(a2.id, a.id);
    assert_eq!(index.len(), 4);

    // The changed text is found by its own embedding, restricted to texts.
    let q = emb
        .embed_texts(&["a cat sat on the hat"])
        .unwrap()
        .remove(0);
    let so = SearchOptions {
        k: 3,
        kind: Some(Kind::Text),
        ..Default::default()
    };
    let hits = index.search("test-hash", &q, &so).unwrap();
    assert_eq!(hits[0].entry.path, key("a.txt"));
    assert!((hits[0].score - 1.0).abs() < 1e-5);
    assert!(hits.iter().all(|h| h.entry.kind == Kind::Text));
    std::fs::remove_dir_all(&root).ok();
}

// ---------------------------------------------------------------- errors

#[test]
fn mismatches_and_corruption_give_clear_errors() {
    let dir = fresh_dir("index-errors");
    let mut rng = Rng(3);
    {
        let mut index = Index::open(&dir, "space-a", 8, IndexOptions::default()).unwrap();
        // A second writer is refused while the first holds the lock.
        let e = Index::open(&dir, "space-a", 8, IndexOptions::default()).unwrap_err();
        assert!(e.to_string().contains("another process"), "{e}");
        for b in 0..3 {
            let batch = (0..10)
                .map(|i| entry(format!("b{b}i{i}"), rng.unit(8)))
                .collect();
            index.add(batch).unwrap();
        }
        let e = index
            .search("space-b", &[1.0; 8], &SearchOptions::default())
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("space-a") && msg.contains("space-b"), "{msg}");
        let e = index
            .search("space-a", &[1.0; 5], &SearchOptions::default())
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("expected 8") && msg.contains("got 5"), "{msg}");
        let e = index
            .add(vec![entry("z".into(), vec![0.0; 8])])
            .unwrap_err();
        assert!(e.to_string().contains("zero"), "{e}");
    }
    let e = Index::open(&dir, "space-b", 8, IndexOptions::default()).unwrap_err();
    assert!(e.to_string().contains("space-a"), "{e}");
    let e = Index::open(&dir, "space-a", 16, IndexOptions::default()).unwrap_err();
    assert!(e.to_string().contains("expected 8, got 16"), "{e}");
    {
        // index_dir refuses an embedder of another space or dimension, naming both.
        let mut index = Index::open(&dir, "space-a", 8, IndexOptions::default()).unwrap();
        let emb = HashEmbedder { dim: 8 };
        let e = index_dir(
            &mut index,
            &dir,
            &emb,
            &IndexDirOptions::default(),
            &mut |_| {},
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("test-hash") && e.to_string().contains("space-a"),
            "{e}"
        );
        let other = dir.join("other");
        let mut index = Index::open(&other, "test-hash", 8, IndexOptions::default()).unwrap();
        let emb = HashEmbedder { dim: 12 };
        let e = index_dir(
            &mut index,
            &dir,
            &emb,
            &IndexDirOptions::default(),
            &mut |_| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains("expected 8, got 12"), "{e}");
    }

    // A torn tail (an unacknowledged half record) is dropped silently.
    let wal = dir.join("wal-000000.log");
    let good = std::fs::read(&wal).unwrap();
    let mut torn = good.clone();
    torn.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&wal, &torn).unwrap();
    let index = Index::open(&dir, "space-a", 8, IndexOptions::default()).unwrap();
    assert_eq!(index.len(), 30);
    drop(index);
    assert_eq!(std::fs::read(&wal).unwrap(), good);

    // A flipped byte inside the first record: corruption, named with the file.
    let mut bad = good.clone();
    bad[40] ^= 0xff;
    std::fs::write(&wal, &bad).unwrap();
    let msg = Index::open_read_only(&dir, IndexOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("wal-000000.log") && msg.contains("checksum"),
        "{msg}"
    );
    std::fs::write(&wal, &good).unwrap();

    // Snapshot corruption.
    {
        let mut index = Index::open(&dir, "space-a", 8, IndexOptions::default()).unwrap();
        index.compact().unwrap();
    }
    let snap = dir.join("snapshot.bin");
    let mut bytes = std::fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&snap, &bytes).unwrap();
    let msg = Index::open_read_only(&dir, IndexOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("snapshot.bin") && msg.contains("corrupt"),
        "{msg}"
    );
    bytes[mid] ^= 1;
    std::fs::write(&snap, &bytes[..bytes.len() - 9]).unwrap();
    let msg = Index::open_read_only(&dir, IndexOptions::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("snapshot.bin"), "{msg}");
    std::fs::write(dir.join("index.json"), b"{not json").unwrap();
    let msg = Index::open_read_only(&dir, IndexOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("index.json") && msg.contains("invalid JSON"),
        "{msg}"
    );
    let msg = Index::open_read_only(&dir.join("nothing"), IndexOptions::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("no index here"), "{msg}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_corrupt_graph_is_rebuilt() {
    let dir = fresh_dir("index-graph");
    let mut rng = Rng(5);
    let opts = IndexOptions {
        exact_threshold: 100,
        hnsw: HnswParams {
            m: 8,
            ef_construction: 32,
        },
        ..Default::default()
    };
    let vs: Vec<Vec<f32>> = (0..300).map(|_| rng.unit(32)).collect();
    {
        let mut index = Index::open(&dir, "g", 32, opts.clone()).unwrap();
        index
            .add(
                vs.iter()
                    .enumerate()
                    .map(|(i, v)| entry(format!("{i}"), v.clone()))
                    .collect(),
            )
            .unwrap();
        assert!(index.has_graph());
        index.save_graph().unwrap();
    }
    let graph = dir.join("graph.bin");
    let mut bytes = std::fs::read(&graph).unwrap();
    bytes[20] ^= 0x55;
    std::fs::write(&graph, &bytes).unwrap();
    let index = Index::open_read_only(&dir, opts).unwrap();
    let hits = index
        .search("g", &vs[42], &SearchOptions::default())
        .unwrap();
    assert_eq!(hits[0].entry.path, "42");
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------------- crash safety

const CHILD_ENV: &str = "OMNI_INDEX_CRASH_CHILD";
const CRASH_DIM: usize = 64;
const PER_BATCH: usize = 20;

fn crash_vector(batch: u64, i: usize) -> Vec<f32> {
    Rng(batch * 1000 + i as u64).unit(CRASH_DIM)
}

fn crash_opts() -> IndexOptions {
    IndexOptions {
        // Frequent compactions and a live graph: the kill lands in every phase.
        exact_threshold: 400,
        compact_after_bytes: 150_000,
        hnsw: HnswParams {
            m: 8,
            ef_construction: 32,
        },
    }
}

/// The child side of the crash test: adds batches forever, printing `ACK n` after each
/// acknowledged batch (a no-op unless the parent set the env var).
#[test]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, first) = spec.split_once('|').unwrap();
    let first: u64 = first.parse().unwrap();
    let mut index = Index::open(Path::new(dir), "crash", CRASH_DIM, crash_opts()).unwrap();
    for b in first.. {
        let batch = (0..PER_BATCH)
            .map(|i| entry(format!("b{b}/i{i}"), crash_vector(b, i)))
            .collect();
        index.add(batch).unwrap();
        if b > first {
            // Entry 0 of the previous batch is removed once this batch is in.
            index.remove(&[&format!("b{}/i0", b - 1)]).unwrap();
        }
        println!("ACK {b}");
    }
}

#[test]
fn kill_9_during_add_loses_nothing_acknowledged() {
    let dir = fresh_dir("index-crash");
    let exe = std::env::current_exe().unwrap();
    let mut acked: Vec<(u64, u64)> = Vec::new(); // (first, last) acknowledged per round
    for round in 0..4u64 {
        let first = round * 1_000_000;
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, format!("{}|{first}", dir.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let kill_after = 30 + 17 * round as usize;
        let mut last = None;
        let mut count = 0;
        let mut killed = false;
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("ACK ") {
                last = Some(n.parse::<u64>().unwrap());
                count += 1;
                if count == kill_after && !killed {
                    child.kill().unwrap(); // SIGKILL
                    killed = true;
                }
            }
        }
        let status = child.wait().unwrap();
        assert!(killed, "child ended on its own: {status:?}");
        acked.push((first, last.expect("no batch acknowledged")));
    }

    // Reopen: every acknowledged entry is there with its vector; batches are atomic.
    let mut index = Index::open(&dir, "crash", CRASH_DIM, crash_opts()).unwrap();
    for &(first, last) in &acked {
        for b in first..=last {
            for i in 0..PER_BATCH {
                let path = format!("b{b}/i{i}");
                let got = index.get(&path).map(|e| e.id);
                if i == 0 && b < last {
                    assert!(got.is_none(), "{path} was removed (acknowledged)");
                    continue;
                }
                if i == 0 && b == last {
                    continue; // its removal may or may not have been logged
                }
                let id = got.unwrap_or_else(|| panic!("acknowledged {path} is missing"));
                let v = index.vector(id).unwrap();
                let want = crash_vector(b, i);
                assert!(
                    v.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6),
                    "{path}"
                );
            }
        }
        // The unacknowledged next batch is all there or not at all.
        let next = (1..PER_BATCH)
            .filter(|i| index.get(&format!("b{}/i{i}", last + 1)).is_some())
            .count();
        assert!(
            next == 0 || next == PER_BATCH - 1,
            "batch {} is torn: {next}",
            last + 1
        );
    }
    eprintln!(
        "acknowledged per round: {acked:?}; {} live entries",
        index.len()
    );

    // Still usable: search finds an entry, and more adds work and persist.
    let (first, last) = acked[1];
    let b = (first + last) / 2;
    let hits = index
        .search("crash", &crash_vector(b, 5), &SearchOptions::default())
        .unwrap();
    assert_eq!(hits[0].entry.path, format!("b{b}/i5"));
    index
        .add(vec![entry("after/crash".into(), crash_vector(7, 7))])
        .unwrap();
    let n = index.len();
    drop(index);
    let index = Index::open_read_only(&dir, crash_opts()).unwrap();
    assert_eq!(index.len(), n);
    assert!(index.get("after/crash").is_some());
    std::fs::remove_dir_all(&dir).ok();
}
