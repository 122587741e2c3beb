//! Encryption of HMAC secrets at rest under a master key that never enters the database.
//!
//! XChaCha20-Poly1305 with a random 192-bit nonce per secret; the associated data binds each
//! ciphertext to its key id and account, so a ciphertext copied onto another key row fails to
//! decrypt. Each ciphertext is stored with the id of the master key that sealed it, so a new master
//! key can be introduced while old ones still open old rows (rotation).

use crate::StoreError;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use zeroize::Zeroizing;

const NONCE_LEN: usize = 24;

/// A 256-bit master key and its public id (a hash prefix, safe to store beside ciphertexts).
pub struct MasterKey {
    id: String,
    key: Zeroizing<[u8; 32]>,
}

impl MasterKey {
    /// A master key from raw bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let key = Zeroizing::new(bytes);
        let digest = Sha256::new().chain_update(b"keygate-master-key-id-v1").chain_update(key.as_slice()).finalize();
        Self { id: hex::encode(&digest[..8]), key }
    }

    /// A fresh random master key.
    ///
    /// # Errors
    /// [`StoreError::Setup`] if the operating system has no randomness to give.
    pub fn generate() -> Result<Self, StoreError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::getrandom(bytes.as_mut_slice())
            .map_err(|e| StoreError::Setup(format!("no system randomness: {e}")))?;
        Ok(Self::from_bytes(*bytes))
    }

    /// Reads the key file at `path`, creating it (mode 0600, 64 hex characters) when missing.
    ///
    /// A file readable by group or others is refused, as ssh refuses a loose private key.
    ///
    /// # Errors
    /// [`StoreError::Setup`] with a message naming the file and the problem.
    pub fn load_or_create(path: &Path) -> Result<Self, StoreError> {
        let setup = |what: &str, e: &dyn fmt::Display| {
            StoreError::Setup(format!("master key file {}: {what}: {e}", path.display()))
        };
        if !path.exists() {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
                // Only a directory keygate creates is made private; an existing one (say /etc) is
                // never touched: the key file's own 0600 mode is what protects it.
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| setup("cannot create its directory", &e))?;
            }
            let key = Self::generate()?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| setup("cannot create it", &e))?;
            let text = Zeroizing::new(format!("{}\n", hex::encode(key.key.as_slice())));
            f.write_all(text.as_bytes()).map_err(|e| setup("cannot write it", &e))?;
            f.sync_all().map_err(|e| setup("cannot sync it", &e))?;
            tracing::info!(path = %path.display(), key_id = %key.id, "created a new master key");
            return Ok(key);
        }
        let meta = std::fs::metadata(path).map_err(|e| setup("cannot read it", &e))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(StoreError::Setup(format!(
                "master key file {} is accessible by other users (mode {:o}); run: chmod 600 {}",
                path.display(),
                meta.permissions().mode() & 0o777,
                path.display()
            )));
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| setup("cannot read it", &e))?);
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), bytes.as_mut_slice()).map_err(|_| {
            StoreError::Setup(format!("master key file {} must hold 64 hex characters", path.display()))
        })?;
        Ok(Self::from_bytes(*bytes))
    }

    /// The key's public id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({}, <hidden>)", self.id)
    }
}

/// Seals secrets under the current master key and opens them under any known one.
#[derive(Debug)]
pub struct SecretCipher {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

/// A sealed secret as stored: the id of the master key that sealed it and `nonce ‖ ciphertext`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Which master key sealed it.
    pub master_key_id: String,
    /// Nonce followed by ciphertext and tag.
    pub bytes: Vec<u8>,
}

impl SecretCipher {
    /// A cipher sealing with `current` and also opening secrets sealed with `previous` keys.
    #[must_use]
    pub fn new(current: MasterKey, previous: Vec<MasterKey>) -> Self {
        Self { current, previous }
    }

    /// The id of the key new secrets are sealed with.
    #[must_use]
    pub fn current_id(&self) -> &str {
        self.current.id()
    }

    /// Encrypts `plaintext` bound to `aad`.
    ///
    /// # Errors
    /// [`StoreError::Crypto`] if randomness is unavailable.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Sealed, StoreError> {
        let cipher = XChaCha20Poly1305::new(self.current.key.as_slice().into());
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce).map_err(|e| StoreError::Crypto(format!("no system randomness: {e}")))?;
        let ct = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad })
            .map_err(|_| StoreError::Crypto("encryption failed".into()))?;
        let mut bytes = Vec::with_capacity(NONCE_LEN + ct.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&ct);
        Ok(Sealed { master_key_id: self.current.id().to_owned(), bytes })
    }

    /// A key for `purpose` derived from the current master key: HKDF-Expand (RFC 5869) with the
    /// master key as the pseudorandom key (it is uniformly random, so the extract step adds
    /// nothing) and `purpose` as the info, one block of HMAC-SHA256. Nodes that share the master
    /// key derive the same key without another secret to distribute (the internal channel between
    /// nodes signs with one); a different `purpose` gives an unrelated key.
    #[must_use]
    pub fn derive(&self, purpose: &[u8]) -> Zeroizing<[u8; 32]> {
        use hmac::{KeyInit as _, Mac as _};
        let mut mac = <hmac::Hmac<Sha256>>::new_from_slice(self.current.key.as_slice())
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(purpose);
        mac.update(&[1]);
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&mac.finalize().into_bytes());
        out
    }

    /// Decrypts a sealed secret bound to `aad`.
    ///
    /// # Errors
    /// [`StoreError::Crypto`] when the master key is unknown here, or the ciphertext, its
    /// associated data or the key do not match.
    pub fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id() == sealed.master_key_id)
            .ok_or_else(|| {
                StoreError::Crypto(format!(
                    "secret sealed with master key {} but this process has {}; use the master key file that created the data",
                    sealed.master_key_id,
                    self.current.id()
                ))
            })?;
        if sealed.bytes.len() < NONCE_LEN {
            return Err(StoreError::Crypto("sealed secret too short".into()));
        }
        let (nonce, ct) = sealed.bytes.split_at(NONCE_LEN);
        let cipher = XChaCha20Poly1305::new(key.key.as_slice().into());
        cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| StoreError::Crypto("sealed secret does not match its key id, account or master key".into()))
    }
}

/// The associated data binding a key's secret to that key and account.
#[must_use]
pub fn secret_aad(key_id: &str, account_id: i64) -> Vec<u8> {
    format!("keygate/hmac-secret/v1|{key_id}|{account_id}").into_bytes()
}

/// The associated data binding a TOTP seed to its account, so a sealed seed moved to another
/// account's row fails to open.
#[must_use]
pub fn totp_seed_aad(account_id: i64) -> Vec<u8> {
    format!("keygate/totp-seed/v1|{account_id}").into_bytes()
}

/// The associated data binding a webhook endpoint's signing secret to that endpoint and account,
/// so a sealed secret moved to another endpoint's row fails to open.
#[must_use]
pub fn webhook_secret_aad(endpoint_id: i64, account_id: i64) -> Vec<u8> {
    format!("keygate/webhook-secret/v1|{endpoint_id}|{account_id}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secret_opens_only_with_its_key_and_associated_data() {
        let c = SecretCipher::new(MasterKey::from_bytes([1; 32]), vec![]);
        let s = c.seal(b"kgs_secret", b"aad-1").unwrap();
        assert_eq!(&*c.open(&s, b"aad-1").unwrap(), b"kgs_secret");
        assert!(c.open(&s, b"aad-2").is_err());
        let other = SecretCipher::new(MasterKey::from_bytes([2; 32]), vec![]);
        assert!(other.open(&s, b"aad-1").is_err());
    }

    #[test]
    fn a_totp_seed_opens_only_for_the_account_it_was_sealed_for() {
        let c = SecretCipher::new(MasterKey::from_bytes([1; 32]), vec![]);
        let s = c.seal(&[9; 20], &totp_seed_aad(7)).unwrap();
        assert_eq!(&*c.open(&s, &totp_seed_aad(7)).unwrap(), &[9; 20]);
        assert!(c.open(&s, &totp_seed_aad(8)).is_err(), "a seed moved to another account opened");
        assert!(c.open(&s, &secret_aad("kg_x", 7)).is_err(), "a seed opened as an HMAC secret");
    }

    #[test]
    fn a_rotated_cipher_still_opens_secrets_of_the_previous_master_key() {
        let old = SecretCipher::new(MasterKey::from_bytes([1; 32]), vec![]);
        let s = old.seal(b"x", b"a").unwrap();
        let rotated = SecretCipher::new(MasterKey::from_bytes([2; 32]), vec![MasterKey::from_bytes([1; 32])]);
        assert_eq!(&*rotated.open(&s, b"a").unwrap(), b"x");
        assert_ne!(rotated.seal(b"x", b"a").unwrap().master_key_id, s.master_key_id);
    }

    #[test]
    fn key_file_is_created_private_and_loose_permissions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfg/master.key");
        let a = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let b = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(a.id(), b.id());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = MasterKey::load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }
}
