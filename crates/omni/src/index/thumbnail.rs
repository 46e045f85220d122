//! Small JPEG previews of indexed images, for result lists and the web page: stored by
//! content hash under `<index>/thumbs/`, so an unchanged or duplicated image is written
//! once.

use std::path::{Path, PathBuf};

use super::entry::hex;
use crate::modality::image::load_rgb;

/// Writes (unless present) the thumbnail of the image at `path`, with content hash `hash`,
/// its longer side at most `max_side` pixels; returns its path. `None` when the image
/// cannot be decoded or the file cannot be written: a preview is never worth failing the
/// entry for.
pub fn make_thumbnail(
    index_dir: &Path,
    path: &Path,
    hash: &[u8; 32],
    max_side: u32,
) -> Option<PathBuf> {
    let name = hex(hash);
    let out = index_dir
        .join("thumbs")
        .join(&name[..2])
        .join(format!("{name}.jpg"));
    if out.is_file() {
        return Some(out);
    }
    let image = load_rgb(path).ok()?;
    let small = image::imageops::thumbnail(&image, max_side, max_side);
    let mut bytes = Vec::new();
    small
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Jpeg,
        )
        .ok()?;
    std::fs::create_dir_all(out.parent()?).ok()?;
    // Derived data: a rename keeps readers from a half-written file; no fsync needed.
    let tmp = out.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, &bytes).ok()?;
    std::fs::rename(&tmp, &out).ok()?;
    Some(out)
}
