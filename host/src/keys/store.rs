//! The keys' file: a JSON list of key records (SHA-256 only, never a
//! secret), mode 0600, replaced whole by a rename so a crash mid-write
//! leaves the old file, never half of one.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::ClientKey;

/// The keys in `file`; none when it does not exist yet.
pub fn read(file: &Path) -> Result<Vec<ClientKey>, String> {
    match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|error| format!("the client keys' file {} is not a key list: {error}", file.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(format!("reading the client keys' file {}: {error}", file.display())),
    }
}

/// Replaces `file` with `keys`.
pub fn write(file: &Path, keys: &[&ClientKey]) -> Result<(), String> {
    let failed = |error: std::io::Error| format!("writing the client keys' file {}: {error}", file.display());
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    let staged = file.with_extension("json.new");
    let bytes =
        serde_json::to_vec_pretty(keys).map_err(|error| format!("encoding the client keys: {error}"))?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&staged)
        .map_err(failed)?;
    // A file left from before with wider permissions keeps its mode on open.
    out.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(failed)?;
    out.write_all(&bytes).and_then(|()| out.sync_all()).map_err(failed)?;
    std::fs::rename(&staged, file).map_err(failed)
}
