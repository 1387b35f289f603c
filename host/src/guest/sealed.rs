//! A directory whose files the service trusts because it sealed them.
//!
//! Compiled components are native code that runs as is, so a file that
//! merely has the right name is not enough (anyone who can write one could
//! run anything, past the admin token and the smoke check). The directory
//! must be the service user's own and closed to everyone else (it is
//! created 0700; an existing one with group or other access is refused).
//! Each file is sealed with an HMAC-SHA256, under a key kept in the
//! directory (0600), over what it is for (the source's sha256) and its
//! bytes; a file whose seal does not verify is never used.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The key's file name (a dot file: never a cache entry).
const KEY_FILE: &str = ".seal-key";
const KEY_BYTES: usize = 32;

/// Why a directory is not used.
#[derive(Debug, thiserror::Error)]
pub enum SealedDirError {
    /// Someone else owns it, or others may enter it.
    #[error("{path} is refused: {reason} (it must be the service user's own, mode 0700)")]
    Unsafe {
        /// The directory.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// It cannot be created or read.
    #[error("{path}: {source}")]
    Io {
        /// The directory.
        path: String,
        /// The system's error.
        source: std::io::Error,
    },
}

/// An open sealed directory.
#[derive(Clone)]
pub struct SealedDir {
    path: PathBuf,
    key: [u8; KEY_BYTES],
}

impl std::fmt::Debug for SealedDir {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("SealedDir").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SealedDir {
    /// Opens (creating it 0700 if missing) the directory at `path`.
    pub fn open(path: &Path) -> Result<Self, SealedDirError> {
        let io = |source| SealedDirError::Io { path: path.display().to_string(), source };
        fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(io)?;
        let metadata = fs::metadata(path).map_err(io)?;
        let unsafe_dir = |reason: String| SealedDirError::Unsafe { path: path.display().to_string(), reason };
        if metadata.uid() != current_uid() {
            return Err(unsafe_dir(format!("it belongs to uid {}", metadata.uid())));
        }
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(unsafe_dir(format!("its mode is {mode:o}")));
        }
        let key = read_or_make_key(&path.join(KEY_FILE)).map_err(io)?;
        Ok(Self { path: path.to_path_buf(), key })
    }

    /// Where `name` lives.
    pub fn path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The bytes of `name` if its seal for `subject` verifies; `None` if it
    /// is missing, unsealed or sealed for something else.
    pub fn read(&self, name: &str, subject: &str) -> Option<Vec<u8>> {
        let bytes = fs::read(self.path(name)).ok()?;
        let seal = fs::read_to_string(self.path(&seal_name(name))).ok()?;
        let seal = hex::decode(seal.trim()).ok()?;
        let verified = self.mac(subject, &bytes).verify_slice(&seal).is_ok();
        if !verified {
            tracing::warn!(file = %self.path(name).display(), "a cached file's seal does not verify; not using it");
        }
        verified.then_some(bytes)
    }

    /// Writes `bytes` as `name`, sealed for `subject` (each file written to
    /// a temporary name and renamed, the seal last).
    pub fn write(&self, name: &str, subject: &str, bytes: &[u8]) -> std::io::Result<()> {
        let seal = hex::encode(self.mac(subject, bytes).finalize().into_bytes());
        write_renamed(&self.path(name), bytes)?;
        write_renamed(&self.path(&seal_name(name)), seal.as_bytes())
    }

    fn mac(&self, subject: &str, bytes: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(subject.as_bytes());
        mac.update(&[0]);
        mac.update(bytes);
        mac
    }
}

fn seal_name(name: &str) -> String {
    format!("{name}.seal")
}

fn write_renamed(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let partial = path.with_extension(format!("partial.{}", std::process::id()));
    fs::write(&partial, bytes)?;
    fs::rename(&partial, path)
}

/// The key in `path`, or a new random one written there (0600).
fn read_or_make_key(path: &Path) -> std::io::Result<[u8; KEY_BYTES]> {
    if let Ok(existing) = fs::read(path)
        && let Ok(key) = <[u8; KEY_BYTES]>::try_from(existing.as_slice())
    {
        return Ok(key);
    }
    let mut key = [0u8; KEY_BYTES];
    fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    let partial = path.with_extension(format!("partial.{}", std::process::id()));
    fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&partial)?;
    fs::write(&partial, key)?;
    // Two services starting together: the first rename wins, both read it.
    if fs::hard_link(&partial, path).is_err() {
        let _ = fs::remove_file(&partial);
        let stored = fs::read(path)?;
        return <[u8; KEY_BYTES]>::try_from(stored.as_slice())
            .map_err(|_| std::io::Error::other("the seal key file is damaged"));
    }
    let _ = fs::remove_file(&partial);
    Ok(key)
}

/// This process's real user id, from /proc (Linux).
fn current_uid() -> u32 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("Uid:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("llm-service-sealed-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_sealed_file_reads_back_only_for_its_subject() {
        let sealed = SealedDir::open(&scratch("subject")).unwrap();
        sealed.write("a.cwasm", "sha-a", b"code").unwrap();
        assert_eq!(sealed.read("a.cwasm", "sha-a").as_deref(), Some(&b"code"[..]));
        assert_eq!(sealed.read("a.cwasm", "sha-b"), None, "sealed for another source");
        fs::write(sealed.path("a.cwasm"), b"other code").unwrap();
        assert_eq!(sealed.read("a.cwasm", "sha-a"), None, "changed after sealing");
    }

    #[test]
    fn the_key_outlives_the_process_and_the_directory_is_private() {
        let dir = scratch("key");
        SealedDir::open(&dir).unwrap().write("a", "s", b"x").unwrap();
        assert_eq!(SealedDir::open(&dir).unwrap().read("a", "s").as_deref(), Some(&b"x"[..]));
        assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(fs::metadata(dir.join(KEY_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_directory_others_may_write_is_refused() {
        let dir = scratch("open");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(SealedDir::open(&dir), Err(SealedDirError::Unsafe { .. })));
    }
}
