//! Value encryption: XChaCha20-Poly1305 with a random nonce, the keyspace and key as associated
//! data (a value cannot be moved to another key unnoticed), and a version and key id in front.
//!
//! Layout: `version (1) ‖ key id (4) ‖ nonce (24) ‖ ciphertext+tag`.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, Zeroizing};

const VERSION: u8 = 1;
const HEADER: usize = 1 + 4 + 24;

/// The store key. Zeroed when dropped; never printed.
pub struct StoreKey {
    bytes: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreKey(id {:08x})", self.id())
    }
}

/// Why the key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read or created.
    #[error("store key {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The system's reason.
        source: std::io::Error,
    },
    /// The file does not hold a key.
    #[error(
        "store key {path}: expected 32 bytes or 64 hexadecimal characters, found {found} bytes; \
         restore the original key file (the store cannot be read without it)"
    )]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What was found.
        found: usize,
    },
    /// The key file is readable by others.
    #[error("store key {path}: mode {mode:o} lets others read it; run `chmod 600 {path}`")]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
}

impl StoreKey {
    /// A key from 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self {
            bytes: Zeroizing::new(bytes),
        }
    }

    /// A new random key.
    ///
    /// # Errors
    ///
    /// When the system has no randomness to give.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b)?;
        let key = Self::from_bytes(b);
        b.zeroize();
        Ok(key)
    }

    /// The key's id: the first 4 bytes of a hash, stored in front of every value so a value
    /// sealed with another key is recognized as such.
    pub fn id(&self) -> u32 {
        let h = blake3::derive_key("migrated store key id v1", &self.bytes[..]);
        u32::from_be_bytes([h[0], h[1], h[2], h[3]])
    }

    /// A derived key for keyed hashes of names in keys, so keys cannot be guessed without the
    /// store key.
    pub(crate) fn hashing_key(&self) -> [u8; 32] {
        blake3::derive_key("migrated store key hashing v1", &self.bytes[..])
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&(*self.bytes).into())
    }

    /// Loads the key: `$CREDENTIALS_DIRECTORY/store-key` when systemd passed one
    /// (`LoadCredentialEncrypted=store-key:...`), otherwise `key_file`, which is created with
    /// mode 0600 and a random key when it does not exist yet.
    ///
    /// # Errors
    ///
    /// [`KeyError`] naming the file and what to do.
    pub fn load(credentials_dir: Option<&Path>, key_file: &Path) -> Result<Self, KeyError> {
        if let Some(dir) = credentials_dir {
            let path = dir.join("store-key");
            if path.exists() {
                return Self::read(&path, false);
            }
        }
        if key_file.exists() {
            return Self::read(key_file, true);
        }
        let io = |source| KeyError::Io {
            path: key_file.to_owned(),
            source,
        };
        if let Some(parent) = key_file.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let key = Self::generate().map_err(|e| io(std::io::Error::other(e.to_string())))?;
        let hex: Zeroizing<String> =
            Zeroizing::new(key.bytes.iter().map(|b| format!("{b:02x}")).collect());
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(key_file)
            .map_err(io)?;
        f.write_all(hex.as_bytes())
            .and_then(|()| f.write_all(b"\n"))
            .and_then(|()| f.sync_all())
            .map_err(io)?;
        Ok(key)
    }

    fn read(path: &Path, check_mode: bool) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        if check_mode {
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Permissions {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        let raw = Zeroizing::new(std::fs::read(path).map_err(io)?);
        let trimmed: &[u8] = raw.trim_ascii();
        let mut bytes = [0u8; 32];
        if trimmed.len() == 64 && trimmed.iter().all(u8::is_ascii_hexdigit) {
            for (i, pair) in trimmed.chunks(2).enumerate() {
                let s = std::str::from_utf8(pair).map_err(|_| KeyError::Malformed {
                    path: path.to_owned(),
                    found: raw.len(),
                })?;
                bytes[i] = u8::from_str_radix(s, 16).map_err(|_| KeyError::Malformed {
                    path: path.to_owned(),
                    found: raw.len(),
                })?;
            }
        } else if raw.len() == 32 {
            bytes.copy_from_slice(&raw);
        } else {
            return Err(KeyError::Malformed {
                path: path.to_owned(),
                found: raw.len(),
            });
        }
        let key = Self::from_bytes(bytes);
        bytes.zeroize();
        Ok(key)
    }

    /// Encrypts a value for `keyspace`/`key`.
    pub fn seal(&self, keyspace: &str, key: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        if getrandom::fill(&mut nonce).is_err() {
            // Without randomness a nonce could repeat: refuse to write rather than weaken it.
            panic!(
                "the system random generator failed: refusing to encrypt with a predictable nonce"
            );
        }
        let aad = associated(keyspace, key);
        let sealed = self
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(HEADER + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&self.id().to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts a value sealed for `keyspace`/`key`.
    ///
    /// # Errors
    ///
    /// A readable reason: another version, another key, or tampering.
    pub fn open(&self, keyspace: &str, key: &[u8], value: &[u8]) -> Result<Vec<u8>, String> {
        if value.len() < HEADER + 16 {
            return Err("value too short to be sealed".into());
        }
        if value[0] != VERSION {
            return Err(format!(
                "sealed with format version {}, this build reads {VERSION}",
                value[0]
            ));
        }
        let id = u32::from_be_bytes([value[1], value[2], value[3], value[4]]);
        if id != self.id() {
            return Err(format!(
                "sealed with key id {id:08x}, the key given has id {:08x}",
                self.id()
            ));
        }
        let aad = associated(keyspace, key);
        let mut nonce = [0u8; 24];
        nonce.copy_from_slice(&value[5..HEADER]);
        self.cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &value[HEADER..],
                    aad: &aad,
                },
            )
            .map_err(|_| "authentication failed: the value was altered or moved".to_owned())
    }
}

fn associated(keyspace: &str, key: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(keyspace.len() + 1 + key.len());
    aad.extend_from_slice(keyspace.as_bytes());
    aad.push(0);
    aad.extend_from_slice(key);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_under_the_same_key_and_place() {
        let k = StoreKey::from_bytes([7; 32]);
        let sealed = k.seal("jobs", b"id-1", b"secret password");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            k.open("jobs", b"id-1", &sealed).unwrap(),
            b"secret password"
        );
        assert!(
            k.open("jobs", b"id-2", &sealed).is_err(),
            "moved to another key"
        );
        assert!(
            k.open("events", b"id-1", &sealed).is_err(),
            "moved to another keyspace"
        );
        let other = StoreKey::from_bytes([8; 32]);
        assert!(
            other
                .open("jobs", b"id-1", &sealed)
                .unwrap_err()
                .contains("key id")
        );
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(k.open("jobs", b"id-1", &tampered).is_err());
    }

    #[test]
    fn a_key_file_is_created_with_mode_0600_and_read_back() {
        let dir = std::env::temp_dir().join(format!("migrated-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("store.key");
        let a = StoreKey::load(None, &path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let b = StoreKey::load(None, &path).unwrap();
        assert_eq!(a.id(), b.id());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            StoreKey::load(None, &path),
            Err(KeyError::Permissions { .. })
        ));
        // A systemd credential wins over the file.
        let creds = dir.join("creds");
        std::fs::create_dir_all(&creds).unwrap();
        std::fs::write(creds.join("store-key"), [9u8; 32]).unwrap();
        assert_eq!(
            StoreKey::load(Some(&creds), &path).unwrap().id(),
            StoreKey::from_bytes([9; 32]).id()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
