//! Integrity and atomic placement: hashing writers, self-deleting temp files, rename-into-place.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Prefix of every temporary file the store creates; never a catalogue file name.
pub(crate) const TEMP_PREFIX: &str = ".omni-tmp-";

/// Lowercase hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Size and sha256 of a file, read in 1 MiB chunks.
pub fn sha256_file(path: &Path) -> Result<(u64, String)> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex(&hasher.finalize())))
}

/// Checks a size and digest against the expected ones, naming `path` on failure.
pub(crate) fn check(
    path: &Path,
    size: u64,
    sha256: &str,
    want_size: u64,
    want_sha: &str,
) -> Result<()> {
    if size != want_size {
        return Err(Error::Integrity {
            path: path.to_path_buf(),
            reason: format!("size is {size} bytes, expected {want_size}"),
        });
    }
    if sha256 != want_sha {
        return Err(Error::Integrity {
            path: path.to_path_buf(),
            reason: format!("sha256 is {sha256}, expected {want_sha}"),
        });
    }
    Ok(())
}

/// A file being written in a temporary place, deleted on drop unless [`TempFile::persist`]ed.
/// Everything written is counted and hashed on the way through.
pub(crate) struct TempFile {
    path: PathBuf,
    file: Option<File>,
    hasher: Sha256,
    written: u64,
}

impl TempFile {
    /// Creates `<dir>/.omni-tmp-<pid>-<n>-<label>`; the directory is created if needed.
    pub(crate) fn create_in(dir: &Path, label: &str) -> Result<TempFile> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let label: String = label
            .chars()
            .map(|c| if c == '/' || c == '\\' { '_' } else { c })
            .collect();
        let path = dir.join(format!("{TEMP_PREFIX}{}-{n}-{label}", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(TempFile {
            path,
            file: Some(file),
            hasher: Sha256::new(),
            written: 0,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Copies everything from `reader`, returning the number of bytes; `on_chunk` sees each
    /// chunk's length (for progress bars). Read errors are reported as `Err(io)` so the
    /// caller can name the source.
    pub(crate) fn copy_from(
        &mut self,
        reader: &mut dyn Read,
        mut on_chunk: impl FnMut(u64),
    ) -> std::result::Result<u64, CopyError> {
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CopyError::Read(e)),
            };
            self.write_all(&buf[..n]).map_err(CopyError::Write)?;
            total += n as u64;
            on_chunk(n as u64);
        }
        Ok(total)
    }

    /// Size and sha256 of everything written.
    pub(crate) fn digest(&self) -> (u64, String) {
        (self.written, hex(&self.hasher.clone().finalize()))
    }

    /// Flushes to disk and renames onto `dest` (atomic on one filesystem), then syncs the
    /// directory so the rename itself survives a crash.
    pub(crate) fn persist(mut self, dest: &Path) -> Result<()> {
        if let Some(file) = self.file.take() {
            file.sync_all().map_err(|e| Error::io(&self.path, e))?;
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::rename(&self.path, dest).map_err(|e| Error::io(dest, e))?;
        if let Some(parent) = dest.parent() {
            // Best effort: not every platform can open a directory for syncing.
            if let Ok(dir) = File::open(parent) {
                let _ = dir.sync_all();
            }
        }
        // Renamed away: nothing left to delete.
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Write for TempFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("temp file already closed"))?;
        let n = file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        self.file.take();
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Which side of a copy failed.
#[derive(Debug)]
pub(crate) enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Writes `bytes` to `dest` atomically (temp file in the same directory, then rename).
pub(crate) fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let label = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut temp = TempFile::create_in(dir, &label)?;
    temp.write_all(bytes)
        .map_err(|e| Error::io(temp.path(), e))?;
    temp.persist(dest)
}

/// Removes temp files in `dir` left by processes that no longer run (Linux: checks
/// `/proc/<pid>`; elsewhere nothing is removed). Returns how many were removed.
pub(crate) fn remove_stale_temps(dir: &Path) -> usize {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(TEMP_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !proc.join(pid.to_string()).exists() && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("omni-integrity-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn hashes_match_known_vectors() {
        let dir = tempdir("hash");
        let path = dir.join("abc");
        std::fs::write(&path, b"abc").unwrap();
        let want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_file(&path).unwrap(), (3, want.to_string()));
        let mut temp = TempFile::create_in(&dir, "x").unwrap();
        temp.write_all(b"ab").unwrap();
        temp.write_all(b"c").unwrap();
        assert_eq!(temp.digest(), (3, want.to_string()));
        let err = check(&path, 3, want, 4, want).unwrap_err();
        assert!(matches!(err, Error::Integrity { .. }), "{err}");
        assert!(check(&path, 3, want, 3, &want.replace('b', "c")).is_err());
        check(&path, 3, want, 3, want).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temp_files_vanish_unless_persisted() {
        let dir = tempdir("temp");
        let mut dropped = TempFile::create_in(&dir, "a/b").unwrap();
        dropped.write_all(b"partial").unwrap();
        let dropped_path = dropped.path().to_path_buf();
        assert!(dropped_path.exists());
        drop(dropped);
        assert!(!dropped_path.exists());

        let mut kept = TempFile::create_in(&dir, "c").unwrap();
        kept.write_all(b"whole").unwrap();
        let dest = dir.join("sub").join("c.bin");
        kept.persist(&dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"whole");
        write_atomic(&dir.join("m.json"), b"{}").unwrap();
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.starts_with(TEMP_PREFIX)),
            "{names:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_temps_of_dead_processes_are_removed() {
        let dir = tempdir("stale");
        // pid 0 never names a user process: /proc/0 does not exist.
        std::fs::write(dir.join(format!("{TEMP_PREFIX}0-0-old.bin")), b"x").unwrap();
        let live = TempFile::create_in(&dir, "live").unwrap();
        std::fs::write(dir.join("keep.bin"), b"x").unwrap();
        let removed = remove_stale_temps(&dir);
        if Path::new("/proc/self").exists() {
            assert_eq!(removed, 1);
        }
        assert!(live.path().exists());
        assert!(dir.join("keep.bin").exists());
        drop(live);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
