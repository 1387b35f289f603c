//! Components shared through the store carry a seal the replicas check
//! before installing them: whoever can write to the store (KeyDB, Redis)
//! must not be able to replace the handler or a plugin on every replica.
//!
//! The seal is an HMAC-SHA256, under a key the operator gives every
//! replica (`FLEET_SIGNING_KEY_FILE`, at least 32 bytes), over the replica
//! the component was pushed to and its bytes; it travels with them as one
//! value: a version tag, the MAC, the replica's name and the bytes. Where
//! a component came from is read from the verified value, never from the
//! event that announced it. Without a key, handlers and plugins are not
//! shared through the store at all (each replica takes its own pushes),
//! and the start-up log says so.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;
/// What a sealed value starts with: its format's version.
const TAG: &[u8; 6] = b"llms1\0";
const MAC_BYTES: usize = 32;

/// The operator's key.
pub struct FleetSeal {
    key: Vec<u8>,
}

impl std::fmt::Debug for FleetSeal {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("FleetSeal").finish_non_exhaustive()
    }
}

/// Why a value from the store is not installed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unsealed {
    /// It carries no seal of this format.
    #[error(
        "it carries no seal (written to the store by something other than a replica with the fleet's key)"
    )]
    Unsealed,
    /// Its seal does not verify under this replica's key.
    #[error("its seal does not verify under this replica's FLEET_SIGNING_KEY_FILE")]
    Forged,
}

impl FleetSeal {
    /// The key in `path` (its bytes, one trailing newline dropped).
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let mut key = std::fs::read(path)
            .map_err(|error| format!("FLEET_SIGNING_KEY_FILE {}: {error}", path.display()))?;
        if key.last() == Some(&b'\n') {
            key.pop();
        }
        if key.len() < MIN_KEY_BYTES {
            return Err(format!(
                "FLEET_SIGNING_KEY_FILE {} holds {} bytes; the key needs at least {MIN_KEY_BYTES} (try: openssl rand -hex 32)",
                path.display(),
                key.len()
            ));
        }
        Ok(Self { key })
    }

    /// `bytes`, pushed to `origin`, as the value the store keeps.
    pub fn seal(&self, origin: &str, bytes: &[u8]) -> Vec<u8> {
        let origin = &origin.as_bytes()[..origin.len().min(usize::from(u16::MAX))];
        let mut sealed = Vec::with_capacity(TAG.len() + MAC_BYTES + 2 + origin.len() + bytes.len());
        sealed.extend_from_slice(TAG);
        sealed.extend_from_slice(&self.mac(origin, bytes).finalize().into_bytes());
        sealed.extend_from_slice(&u16::try_from(origin.len()).unwrap_or(u16::MAX).to_be_bytes());
        sealed.extend_from_slice(origin);
        sealed.extend_from_slice(bytes);
        sealed
    }

    /// The replica a sealed value was pushed to, and its bytes, if the seal verifies.
    pub fn open(&self, sealed: &[u8]) -> Result<(String, Vec<u8>), Unsealed> {
        let rest = sealed.strip_prefix(TAG.as_slice()).ok_or(Unsealed::Unsealed)?;
        if rest.len() < MAC_BYTES + 2 {
            return Err(Unsealed::Unsealed);
        }
        let (mac, rest) = rest.split_at(MAC_BYTES);
        let (length, rest) = rest.split_at(2);
        let length = usize::from(u16::from_be_bytes([length[0], length[1]]));
        if rest.len() < length {
            return Err(Unsealed::Unsealed);
        }
        let (origin, bytes) = rest.split_at(length);
        self.mac(origin, bytes).verify_slice(mac).map_err(|_| Unsealed::Forged)?;
        Ok((String::from_utf8_lossy(origin).into_owned(), bytes.to_vec()))
    }

    fn mac(&self, origin: &[u8], bytes: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(&u16::try_from(origin.len()).unwrap_or(u16::MAX).to_be_bytes());
        mac.update(origin);
        mac.update(bytes);
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(key: &str) -> FleetSeal {
        FleetSeal { key: key.as_bytes().to_vec() }
    }

    #[test]
    fn a_sealed_value_opens_under_its_key_only_and_names_its_replica() {
        let (ours, theirs) = (seal(&"k".repeat(32)), seal(&"x".repeat(32)));
        let sealed = ours.seal("replica-a", b"\0asm...");
        assert_eq!(ours.open(&sealed), Ok(("replica-a".to_string(), b"\0asm...".to_vec())));
        assert_eq!(theirs.open(&sealed), Err(Unsealed::Forged));
        assert_eq!(ours.open(b"\0asm raw component"), Err(Unsealed::Unsealed));
        let mut renamed = sealed.clone();
        let at = TAG.len() + MAC_BYTES + 2;
        renamed[at] = b'R';
        assert_eq!(ours.open(&renamed), Err(Unsealed::Forged), "the replica's name is sealed too");
    }

    #[test]
    fn a_short_key_is_refused() {
        let path = std::env::temp_dir().join(format!("fleet-seal-test-{}", std::process::id()));
        std::fs::write(&path, "short\n").unwrap();
        assert!(FleetSeal::from_file(&path).unwrap_err().contains("at least 32"));
        std::fs::remove_file(&path).unwrap();
    }
}
