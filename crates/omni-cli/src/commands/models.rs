//! `omni models …`: list, fetch, inspect, verify and remove models in the local cache.

use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use omni::models::{FileState, ModelEntry, ModelStatus, Store};
use omni::tasks::align::AlignerInfo;
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List the catalogue's models and whether they are in the cache.
    List(ListArgs),
    /// Fetch models into the cache (no names: the default models).
    Pull(PullArgs),
    /// Remove models from the cache.
    Rm(RmArgs),
    /// Show a model's files, sizes, sha256 digests, sources and cache state.
    Info(InfoArgs),
    /// Print the path a model resolves to, fetching it first if needed.
    Path(PathArgs),
    /// Re-hash cached models against the catalogue (no names: every cached model).
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Catalogue names or hub ids (`hf:org/name`, `hf:org/name/file.gguf`).
    pub names: Vec<String>,
    /// Pull every model of the catalogue.
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Catalogue names, names of models placed in the cache, or hub ids.
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// A catalogue name.
    pub name: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PathArgs {
    /// A catalogue name, a hub id or a path.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Catalogue names.
    pub names: Vec<String>,
}

/// Runs one `omni models` subcommand.
pub fn run(command: ModelsCommand) -> anyhow::Result<()> {
    let store = Store::open()?;
    match command {
        ModelsCommand::List(args) => list(&store, &args),
        ModelsCommand::Pull(args) => pull(&store, &args),
        ModelsCommand::Rm(args) => rm(&store, &args),
        ModelsCommand::Info(args) => info(&store, &args),
        ModelsCommand::Path(args) => {
            let path = store.resolve(&args.name)?;
            println!("{}", path.display());
            Ok(())
        }
        ModelsCommand::Verify(args) => verify(&store, &args),
    }
}

fn list(store: &Store, args: &ListArgs) -> anyhow::Result<()> {
    let rows: Vec<(&ModelEntry, ModelStatus)> = store
        .catalog()
        .models()
        .iter()
        .map(|m| Ok((m, store.status(&m.name)?)))
        .collect::<omni::Result<_>>()?;
    let local = local_models(store);
    if args.json {
        let items: Vec<_> = rows
            .iter()
            .map(|(m, s)| {
                json!({
                    "name": m.name,
                    "kind": m.kind,
                    "default": m.default,
                    "size": m.size(),
                    "status": s.label(),
                    "verified": s.verified,
                    "path": s.dir,
                    "license": m.license,
                    "description": m.description,
                })
            })
            .chain(local.iter().map(|l| {
                json!({
                    "name": l.name, "kind": l.kind, "default": false, "size": l.size,
                    "status": "local", "path": l.dir, "description": l.description,
                })
            }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(());
    }
    let mut table = vec![[
        "NAME".to_string(),
        "KIND".into(),
        "SIZE".into(),
        "STATUS".into(),
        "DESCRIPTION".into(),
    ]];
    for (m, s) in &rows {
        let name = if m.default {
            format!("{} *", m.name)
        } else {
            m.name.clone()
        };
        table.push([
            name,
            m.kind.to_string(),
            human_size(m.size()),
            s.label().to_string(),
            m.description.clone(),
        ]);
    }
    for l in &local {
        table.push([
            l.name.clone(),
            l.kind.to_string(),
            human_size(l.size),
            "local".into(),
            l.description.clone(),
        ]);
    }
    print_table(&table);
    println!(
        "\n* default model (pulled by a bare `omni models pull`); local: made here (e.g. by \
         `omni train align`); cache: {}",
        store.root().join("models").display()
    );
    Ok(())
}

fn pull(store: &Store, args: &PullArgs) -> anyhow::Result<()> {
    let names: Vec<String> = if args.all {
        store
            .catalog()
            .models()
            .iter()
            .map(|m| m.name.clone())
            .collect()
    } else if args.names.is_empty() {
        store.catalog().defaults().map(|m| m.name.clone()).collect()
    } else {
        args.names.clone()
    };
    let mut failures = Vec::new();
    for name in &names {
        if let Ok(status) = store.status(name)
            && !status.is_complete()
        {
            let size = store.catalog().get(name).map(|m| m.size()).unwrap_or(0);
            eprintln!("pulling {name} ({}) …", human_size(size));
        }
        let start = Instant::now();
        match store.pull(name) {
            Ok(report) if report.fetched.is_empty() => {
                println!("{name}: cached at {}", report.path.display());
            }
            Ok(report) => {
                let files = report.fetched.len();
                println!(
                    "{name}: fetched {files} file{} ({}) in {:.1} s → {}",
                    if files == 1 { "" } else { "s" },
                    human_size(report.bytes),
                    start.elapsed().as_secs_f64(),
                    report.path.display()
                );
            }
            Err(err) if names.len() == 1 => return Err(err.into()),
            Err(err) => {
                eprintln!("{name}: error: {err}");
                failures.push(name.clone());
            }
        }
    }
    match failures.len() {
        0 => Ok(()),
        _ => bail!(
            "could not pull {} of {} models: {}",
            failures.len(),
            names.len(),
            failures.join(", ")
        ),
    }
}

fn rm(store: &Store, args: &RmArgs) -> anyhow::Result<()> {
    for name in &args.names {
        match store.remove(name)? {
            Some(path) => println!("removed {}", path.display()),
            None => println!("{name}: not in the cache"),
        }
    }
    Ok(())
}

fn info(store: &Store, args: &InfoArgs) -> anyhow::Result<()> {
    let entry = store
        .catalog()
        .get(&args.name)
        .ok_or_else(|| omni::Error::UnknownModel {
            name: args.name.clone(),
        })?;
    let status = store.status(&entry.name)?;
    let wheels: Vec<_> = store
        .catalog()
        .wheels()
        .iter()
        .filter(|w| {
            entry
                .files
                .iter()
                .flat_map(|f| &f.parts)
                .any(|p| p.package == w.package && p.version == w.version)
        })
        .collect();
    if args.json {
        let mut value = serde_json::to_value(entry).context("serializing the entry")?;
        value["size"] = json!(entry.size());
        value["path"] = json!(status.dir);
        value["status"] = json!(status.label());
        value["verified"] = json!(status.verified);
        value["file_states"] = json!(status.files);
        value["wheels"] = json!(wheels);
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "name:        {}{}",
        entry.name,
        if entry.default { "  (default)" } else { "" }
    );
    println!("kind:        {}", entry.kind);
    println!("description: {}", entry.description);
    println!("license:     {}", entry.license);
    if let Some(upstream) = &entry.upstream {
        println!("upstream:    {upstream}");
    }
    println!(
        "size:        {} in {} file{}",
        human_size(entry.size()),
        entry.files.len(),
        if entry.files.len() == 1 { "" } else { "s" }
    );
    let state = match (status.label(), status.verified) {
        ("cached", true) => "cached, verified".to_string(),
        ("cached", false) => format!(
            "cached, sha256 not checked yet (`omni models verify {}`)",
            entry.name
        ),
        (label, _) => label.to_string(),
    };
    println!("cache:       {} ({state})", status.dir.display());
    println!("files:");
    for (file, (_, file_state)) in entry.files.iter().zip(&status.files) {
        let state = match file_state {
            FileState::Present => "present".to_string(),
            FileState::Missing => "missing".to_string(),
            FileState::WrongSize { size } => format!("wrong size: {size} bytes"),
            FileState::Stale => "stale (catalogue changed)".to_string(),
        };
        println!(
            "  {}  {} bytes ({})  [{state}]",
            file.name,
            file.size,
            human_size(file.size)
        );
        println!("    sha256 {}", file.sha256);
        for part in &file.parts {
            println!("    from   {} : {}", part.requirement(), part.member);
        }
    }
    println!("wheels:");
    for wheel in wheels {
        println!(
            "  {}  {} ({})\n    sha256 {}",
            wheel.requirement(),
            wheel.file,
            human_size(wheel.size),
            wheel.sha256
        );
    }
    Ok(())
}

fn verify(store: &Store, args: &VerifyArgs) -> anyhow::Result<()> {
    let names: Vec<String> = if args.names.is_empty() {
        store
            .catalog()
            .models()
            .iter()
            .filter(|m| store.status(&m.name).is_ok_and(|s| !s.is_absent()))
            .map(|m| m.name.clone())
            .collect()
    } else {
        args.names.clone()
    };
    if names.is_empty() {
        println!("no catalogue model is in the cache");
    }
    let mut failures = Vec::new();
    for name in &names {
        match store.verify(name) {
            Ok(status) => println!("{name}: ok ({} files)", status.files.len()),
            Err(err) => {
                eprintln!("{name}: error: {err}");
                failures.push(name.clone());
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("verification failed for {}", failures.join(", "))
    }
}

/// Binary units, like the progress bars: `93.8 MiB`.
/// A model directory of the cache that is not in the catalogue.
struct LocalModel {
    name: String,
    kind: &'static str,
    size: u64,
    description: String,
    dir: std::path::PathBuf,
}

/// The cache's own models: trained aligners, and directories users placed by hand.
fn local_models(store: &Store) -> Vec<LocalModel> {
    let root = store.root().join("models");
    let mut out: Vec<LocalModel> = std::fs::read_dir(&root)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            let dir = e.path();
            if name.starts_with('.') || !dir.is_dir() || store.catalog().get(&name).is_some() {
                return None;
            }
            let (kind, description) = match AlignerInfo::load(&dir) {
                Ok(info) => (
                    "aligner",
                    format!(
                        "{} → {} projector, trained here: `{}` (Fashion-MNIST top-1 {:.1}%)",
                        info.image_model,
                        info.text_model,
                        info.command,
                        100.0 * info.evaluation.top1
                    ),
                ),
                Err(_) => ("other", "placed in the cache by hand".to_string()),
            };
            let size = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .filter_map(|f| f.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum();
            Some(LocalModel {
                name,
                kind,
                size,
                description,
                dir,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn print_table<const N: usize>(rows: &[[String; N]]) {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        println!("{}", line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_read_like_the_progress_bars() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(98_362_432), "93.8 MiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
    }
}
