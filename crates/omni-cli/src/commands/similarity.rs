//! `omni similarity A B…`: cosine similarity of the first input with each of the others,
//! in one image–text space. An input naming an existing image file is an image; anything
//! else is text.

use std::path::Path;

use anyhow::Context;
use clap::Args;
use omni::index::{dot, is_image_path};
use omni::modality::image::ImageSource;
use serde_json::json;

use super::index::{DEFAULT_MODEL, load_embedder};

#[derive(Debug, Args)]
pub struct SimilarityArgs {
    /// The input the others are compared with (text or image file).
    pub first: String,
    /// Inputs to compare with the first.
    #[arg(required = true)]
    pub others: Vec<String>,
    /// The image–text space (as for `omni classify`).
    #[arg(long, short, default_value = DEFAULT_MODEL)]
    pub model: String,
    /// Print JSON: {"model", "first", "scores": [{"input", "kind", "cosine"}]}.
    #[arg(long)]
    pub json: bool,
}

/// Runs `omni similarity`.
pub fn run(args: SimilarityArgs) -> anyhow::Result<()> {
    let space = load_embedder(&args.model)?;
    let embed = |input: &str| -> anyhow::Result<Vec<f32>> {
        let path = Path::new(input);
        if is_image_input(input) {
            space
                .embed_images(&[ImageSource::File(path)])
                .pop()
                .context("the model returned no vector")?
                .map_err(Into::into)
        } else {
            space
                .embed_texts(&[input])?
                .pop()
                .context("the model returned no vector")
        }
    };
    let first = embed(&args.first)?;
    let mut scores = Vec::with_capacity(args.others.len());
    for other in &args.others {
        let e = embed(other)?;
        scores.push((other, dot(&first, &e)));
    }
    let kind = |s: &str| if is_image_input(s) { "image" } else { "text" };
    if args.json {
        let items: Vec<_> = scores
            .iter()
            .map(|(input, c)| json!({"input": input, "kind": kind(input), "cosine": c}))
            .collect();
        let out = json!({"model": args.model, "first": args.first, "scores": items});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for (input, c) in &scores {
            println!("{c:.4}  {input}");
        }
    }
    Ok(())
}

/// Whether `input` names an existing image file (otherwise it is text).
fn is_image_input(input: &str) -> bool {
    let path = Path::new(input);
    path.is_file() && is_image_path(path)
}
