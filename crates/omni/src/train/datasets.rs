//! Datasets that ship as Debian packages, for training and evaluating alignment.
//!
//! Fashion-MNIST (Xiao et al., 2017; Debian `dataset-fashion-mnist`): 70,000 labelled
//! 28×28 grayscale images of 10 kinds of clothing, in LeCun's IDX format, gzipped.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Where Debian's `dataset-fashion-mnist` puts the files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Fashion-MNIST's class names, by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// The training or the test part of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Split {
    Train,
    Test,
}

/// Grayscale images of one size with a label each.
#[derive(Debug, Clone)]
pub struct LabelledImages {
    pub width: usize,
    pub height: usize,
    /// Row-major 8-bit pixels, image after image.
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
}

impl LabelledImages {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.width * self.height;
        &self.pixels[i * n..(i + 1) * n]
    }
}

/// Reads a Fashion-MNIST split from `dir` (default [`FASHION_MNIST_DIR`]).
pub fn fashion_mnist(dir: Option<&Path>, split: Split) -> Result<LabelledImages> {
    let dir = dir.unwrap_or(Path::new(FASHION_MNIST_DIR));
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let find = |kind: &str| -> Result<PathBuf> {
        let name = format!(
            "{prefix}-{kind}-idx{}-ubyte",
            if kind == "images" { 3 } else { 1 }
        );
        [dir.join(format!("{name}.gz")), dir.join(&name)]
            .into_iter()
            .find(|p| p.is_file())
            .ok_or_else(|| {
                Error::io(
                    dir.join(format!("{name}.gz")),
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "not found (apt-get install dataset-fashion-mnist)",
                    ),
                )
            })
    };
    let (images_path, labels_path) = (find("images")?, find("labels")?);
    let (dims, pixels) = read_idx(&images_path, 3)?;
    let (label_dims, labels) = read_idx(&labels_path, 1)?;
    if dims[0] != label_dims[0] {
        return Err(Error::model_file(
            &labels_path,
            format!("{} labels for {} images", label_dims[0], dims[0]),
        ));
    }
    if let Some(bad) = labels
        .iter()
        .find(|&&l| l as usize >= FASHION_MNIST_CLASSES.len())
    {
        return Err(Error::model_file(
            &labels_path,
            format!("label {bad} out of range"),
        ));
    }
    Ok(LabelledImages {
        height: dims[1],
        width: dims[2],
        pixels,
        labels,
    })
}

/// Reads an unsigned-byte IDX file (optionally gzipped) of `rank` dimensions.
fn read_idx(path: &Path, rank: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::new();
    let read = if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(file).read_to_end(&mut bytes)
    } else {
        std::io::BufReader::new(file).read_to_end(&mut bytes)
    };
    read.map_err(|e| Error::io(path, e))?;
    let bad = |reason: String| Error::model_file(path, reason);
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(bad("truncated IDX header".into()));
    }
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 || bytes[3] as usize != rank {
        return Err(bad(format!(
            "not an unsigned-byte IDX file of rank {rank} (magic {:02x?})",
            &bytes[..4]
        )));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| {
            u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap_or([0; 4])) as usize
        })
        .collect();
    let count: usize = dims.iter().product();
    if bytes.len() != header + count {
        return Err(bad(format!(
            "{} data bytes, the header says {count} ({dims:?})",
            bytes.len() - header
        )));
    }
    bytes.drain(..header);
    Ok((dims, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_idx_and_rejects_bad_files() {
        let dir = std::env::temp_dir().join(format!("omni-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x-idx1-ubyte");
        std::fs::write(&path, [0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]).unwrap();
        assert_eq!(read_idx(&path, 1).unwrap(), (vec![3], vec![7, 8, 9]));
        std::fs::write(&path, [0, 0, 8, 1, 0, 0, 0, 4, 7, 8, 9]).unwrap();
        assert!(
            read_idx(&path, 1)
                .unwrap_err()
                .to_string()
                .contains("header says 4")
        );
        std::fs::write(&path, [0, 0, 9, 1, 0, 0, 0, 3, 7, 8, 9]).unwrap();
        assert!(read_idx(&path, 1).unwrap_err().to_string().contains("IDX"));
        let err = fashion_mnist(Some(&dir), Split::Test)
            .unwrap_err()
            .to_string();
        assert!(err.contains("dataset-fashion-mnist"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_debian_fashion_mnist() {
        if !Path::new(FASHION_MNIST_DIR).is_dir() {
            eprintln!("SKIP: {FASHION_MNIST_DIR} is absent");
            return;
        }
        let test = fashion_mnist(None, Split::Test).unwrap();
        assert_eq!((test.len(), test.width, test.height), (10_000, 28, 28));
        // The test split is balanced: 1,000 images per class.
        let mut counts = [0; 10];
        test.labels.iter().for_each(|&l| counts[l as usize] += 1);
        assert_eq!(counts, [1000; 10]);
        assert_eq!(test.image(9_999).len(), 784);
    }
}
