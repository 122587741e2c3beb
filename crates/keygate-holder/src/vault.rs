//! The vault: exchange credentials in one file encrypted under a passphrase.
//!
//! Format (JSON, one object): a header (`format`, `version`, the Argon2id parameters and salt,
//! the cipher and its nonce) and `ciphertext`, the entries as JSON sealed with
//! XChaCha20-Poly1305 under a key derived by Argon2id (RFC 9106) from the passphrase. The header's
//! exact bytes are the associated data, so a header changed on disk (weaker parameters, another
//! salt) fails to open like a wrong passphrase. Every save draws a fresh 24-byte nonce from the
//! OS and replaces the file atomically (temporary file, fsync, rename, fsync of the directory), so
//! a crash leaves the old vault or the new one, never half of one. The file is mode 0600.

use crate::HolderError;
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The `format` field: tells a vault from any other JSON file.
const FORMAT: &str = "keygate-vault";
/// The only version this build reads; a newer one is refused rather than misread.
const VERSION: u32 = 1;
/// Passphrases shorter than this are refused when a vault is made: Argon2id slows guessing, it
/// does not make a short passphrase long.
pub const MIN_PASSPHRASE_CHARS: usize = 12;

/// Argon2id cost parameters, stored in the file so they can be raised later without breaking
/// old vaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// RFC 9106 section 4's second recommended option (64 MiB, t=3, p=4): above OWASP's minimum
    /// and about a third of a second on a small machine.
    pub const RECOMMENDED: Self = Self { memory_kib: 64 * 1024, iterations: 3, parallelism: 4 };

    /// Cheap parameters for tests that open vaults many times; never for real passphrases.
    pub const INSECURE_FOR_TESTS: Self = Self { memory_kib: 64, iterations: 1, parallelism: 1 };
}

/// What signs an entry's requests.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Credential {
    /// An HMAC-SHA256 secret.
    Hmac {
        /// The secret as the exchange showed it.
        secret: String,
    },
    /// An Ed25519 private key, PKCS#8 PEM.
    Ed25519 {
        /// The PEM text.
        private_key_pem: String,
    },
}

impl Credential {
    /// Reads a secret as typed or piped: a PEM block is an Ed25519 private key, anything else an
    /// HMAC secret (surrounding whitespace dropped).
    ///
    /// # Errors
    /// [`HolderError::Invalid`] for empty input or a PEM that is not an Ed25519 PKCS#8 key.
    pub fn parse(text: &str) -> Result<Self, HolderError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(HolderError::Invalid("the secret is empty".into()));
        }
        if t.starts_with("-----BEGIN") {
            let pem = format!("{t}\n");
            keygate_client::Signer::ed25519_pem(&pem)
                .map_err(|_| HolderError::Invalid("the PEM is not an unencrypted Ed25519 PKCS#8 private key".into()))?;
            return Ok(Self::Ed25519 { private_key_pem: pem });
        }
        if t.chars().any(char::is_whitespace) {
            return Err(HolderError::Invalid("an HMAC secret holds no spaces or line breaks".into()));
        }
        Ok(Self::Hmac { secret: t.to_owned() })
    }

    /// `HMAC` or `Ed25519`, for listings.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hmac { .. } => "HMAC",
            Self::Ed25519 { .. } => "Ed25519",
        }
    }

    /// A request signer for this credential.
    ///
    /// # Errors
    /// [`HolderError::Invalid`] when the stored PEM no longer parses.
    pub fn signer(&self) -> Result<keygate_client::Signer, HolderError> {
        match self {
            Self::Hmac { secret } => Ok(keygate_client::Signer::hmac(secret)),
            Self::Ed25519 { private_key_pem } => keygate_client::Signer::ed25519_pem(private_key_pem)
                .map_err(|_| HolderError::Invalid("the stored Ed25519 key does not parse".into())),
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credential::{}(<hidden>)", self.kind())
    }
}

/// What an entry's key is meant for: `keygate check` flags permissions beyond it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Reading only: portfolio trackers, tax exports.
    Read,
    /// Trading bots: read and trade, never withdraw.
    Trade,
    /// Withdrawals are intended.
    Withdraw,
}

/// One exchange credential.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct Entry {
    /// The owner's name for it, unique in the vault.
    pub name: String,
    /// The exchange's base URL, e.g. `https://api.binance.com` or `http://127.0.0.1:8080`.
    pub url: String,
    /// The API key id (`X-MBX-APIKEY`); not secret on its own, but kept here beside its secret.
    pub api_key: String,
    /// The secret half.
    pub credential: Credential,
    /// What the key is for, when the owner said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[zeroize(skip)]
    pub purpose: Option<Purpose>,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("api_key", &self.api_key)
            .field("credential", &self.credential)
            .field("purpose", &self.purpose)
            .finish()
    }
}

impl Entry {
    /// Checks the fields an owner typed.
    ///
    /// # Errors
    /// [`HolderError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), HolderError> {
        // It names files and fills CSV cells: a letter or digit first (no `.`, `..` or a cell
        // a spreadsheet would run as a formula).
        let name_ok = self.name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && self.name.len() <= 64
            && self.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(HolderError::Invalid(format!(
                "name {:?}: 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit",
                self.name
            )));
        }
        let url =
            reqwest::Url::parse(&self.url).map_err(|e| HolderError::Invalid(format!("url {:?}: {e}", self.url)))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(HolderError::Invalid(format!("url {:?}: an http(s) URL with a host", self.url)));
        }
        if self.api_key.is_empty() || !self.api_key.chars().all(|c| c.is_ascii_graphic()) {
            return Err(HolderError::Invalid("api key: printable characters without spaces".into()));
        }
        Ok(())
    }

    /// The base URL without a trailing slash, as the client joins paths to it.
    #[must_use]
    pub fn base_url(&self) -> &str {
        self.url.trim_end_matches('/')
    }
}

/// The header: everything needed to derive the key and open the ciphertext, authenticated as the
/// ciphertext's associated data.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
    kdf: String,
    kdf_params: KdfParams,
    salt: String,
    cipher: String,
    nonce: String,
}

/// The file: the header and the sealed entries.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    header: Header,
    ciphertext: String,
}

/// The sealed payload.
#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Contents {
    entries: Vec<Entry>,
}

/// An open vault: its entries in memory and the derived key to save them again.
pub struct Vault {
    path: PathBuf,
    key: Zeroizing<[u8; 32]>,
    params: KdfParams,
    salt: [u8; 16],
    entries: Vec<Entry>,
    /// An exclusive lock on the vault's lock file, held while the vault is open, so that two
    /// commands changing it at once cannot lose each other's entries (the second waits).
    _lock: std::fs::File,
}

/// Largest Argon2id parameters a vault may name: a damaged or hostile header must not make
/// opening it exhaust memory or run for ever before the passphrase is even checked.
const MAX_KDF_MEMORY_KIB: u32 = 4 * 1024 * 1024;
/// See [`MAX_KDF_MEMORY_KIB`].
const MAX_KDF_ITERATIONS: u32 = 64;
/// See [`MAX_KDF_MEMORY_KIB`].
const MAX_KDF_PARALLELISM: u32 = 64;

/// Takes the exclusive lock of the vault at `path` (`.NAME.lock` beside it, mode 0600), waiting
/// for another command that holds it, then removes the temporary files a killed command left
/// beside it (no other command can be writing one while the lock is held).
fn lock(path: &Path) -> Result<std::fs::File, HolderError> {
    let name = path.file_name().map_or_else(|| "vault".into(), |n| n.to_string_lossy().into_owned());
    let f = lock_file(&path.with_file_name(format!(".{name}.lock")))?;
    remove_stale_temporaries(path)?;
    Ok(f)
}

/// Opens `lock_path` (mode 0600) and takes its exclusive lock, waiting for whoever holds it. A
/// symbolic link there is refused: opening it would create a file wherever it points.
pub(crate) fn lock_file(lock_path: &Path) -> Result<std::fs::File, HolderError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if std::fs::symlink_metadata(lock_path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(HolderError::Invalid(format!("{} is a symbolic link; refused", lock_path.display())));
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(lock_path)
        .map_err(io(lock_path))?;
    f.lock().map_err(io(lock_path))?;
    Ok(f)
}

/// The directory `path` is in (`.` for a bare file name), where its temporary files go.
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Removes the temporary files [`write_atomic`] makes for `path` (`.NAME.tmp-*`) that a process
/// killed between creating and renaming one left behind. Only while holding the lock that every
/// writer of `path` takes.
pub(crate) fn remove_stale_temporaries(path: &Path) -> Result<(), HolderError> {
    let dir = parent_dir(path);
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Ok(());
    };
    let prefix = format!(".{name}.tmp-");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(&dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io(&dir))?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let stale = entry.path();
            std::fs::remove_file(&stale).map_err(io(&stale))?;
        }
    }
    Ok(())
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault").field("path", &self.path).field("entries", &self.entries.len()).finish_non_exhaustive()
    }
}

fn derive(passphrase: &[u8], salt: &[u8], params: KdfParams) -> Result<Zeroizing<[u8; 32]>, HolderError> {
    let p = Params::new(params.memory_kib, params.iterations, params.parallelism, Some(32))
        .map_err(|e| HolderError::Corrupt(format!("Argon2id parameters: {e}")))?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
        .hash_password_into(passphrase, salt, key.as_mut())
        .map_err(|e| HolderError::Corrupt(format!("Argon2id: {e}")))?;
    Ok(key)
}

fn random<const N: usize>() -> Result<[u8; N], HolderError> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b)
        .map_err(|e| HolderError::Io { path: PathBuf::new(), msg: format!("OS randomness: {e}") })?;
    Ok(b)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> HolderError + '_ {
    move |e| HolderError::Io { path: path.to_owned(), msg: e.to_string() }
}

impl Vault {
    /// Makes a new, empty vault at `path` (its directory created with mode 0700 if missing).
    ///
    /// # Errors
    /// [`HolderError::Exists`] when a file is already there (never overwritten),
    /// [`HolderError::Invalid`] for a passphrase shorter than [`MIN_PASSPHRASE_CHARS`],
    /// [`HolderError::Io`] when it cannot be written.
    pub fn init(path: &Path, passphrase: &[u8], params: KdfParams) -> Result<Self, HolderError> {
        if String::from_utf8_lossy(passphrase).chars().count() < MIN_PASSPHRASE_CHARS {
            return Err(HolderError::Invalid(format!(
                "the passphrase needs at least {MIN_PASSPHRASE_CHARS} characters"
            )));
        }
        if path.exists() {
            return Err(HolderError::Exists(path.to_owned()));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            create_private_dir(dir).map_err(io(dir))?;
        }
        let lock = lock(path)?;
        if path.exists() {
            return Err(HolderError::Exists(path.to_owned()));
        }
        let salt = random::<16>()?;
        let key = derive(passphrase, &salt, params)?;
        let vault = Self { path: path.to_owned(), key, params, salt, entries: Vec::new(), _lock: lock };
        vault.save()?;
        Ok(vault)
    }

    /// Opens the vault at `path` with `passphrase`.
    ///
    /// # Errors
    /// [`HolderError::NoVault`] when there is no file, [`HolderError::WrongPassphrase`] when the
    /// passphrase (or an altered header) does not open it, [`HolderError::Corrupt`] when the file
    /// is not a vault this version reads.
    pub fn open(path: &Path, passphrase: &[u8]) -> Result<Self, HolderError> {
        if !path.exists() {
            return Err(HolderError::NoVault(path.to_owned()));
        }
        // A vault reached through a symbolic link is the file it points to: written there (not
        // replacing the link) and locked there (so both paths take one lock).
        let resolved = std::fs::canonicalize(path).map_err(io(path))?;
        let path = resolved.as_path();
        let lock = lock(path)?;
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(HolderError::NoVault(path.to_owned())),
            Err(e) => return Err(io(path)(e)),
        };
        let file: File =
            serde_json::from_slice(&text).map_err(|e| HolderError::Corrupt(format!("not a vault file: {e}")))?;
        let h = &file.header;
        if h.format != FORMAT {
            return Err(HolderError::Corrupt(format!("not a vault file (format {:?})", h.format)));
        }
        if h.version != VERSION {
            return Err(HolderError::Corrupt(format!(
                "vault version {} is not one this keygate reads ({VERSION})",
                h.version
            )));
        }
        if h.kdf != "argon2id" || h.cipher != "xchacha20poly1305" {
            return Err(HolderError::Corrupt(format!("unknown kdf {:?} or cipher {:?}", h.kdf, h.cipher)));
        }
        let salt: [u8; 16] = hex::decode(&h.salt)
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| HolderError::Corrupt("salt".into()))?;
        let nonce: [u8; 24] = hex::decode(&h.nonce)
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| HolderError::Corrupt("nonce".into()))?;
        let sealed = STANDARD.decode(&file.ciphertext).map_err(|_| HolderError::Corrupt("ciphertext".into()))?;
        let aad = serde_json::to_vec(h).map_err(|e| HolderError::Corrupt(e.to_string()))?;
        let k = h.kdf_params;
        if k.memory_kib > MAX_KDF_MEMORY_KIB || k.iterations > MAX_KDF_ITERATIONS || k.parallelism > MAX_KDF_PARALLELISM
        {
            return Err(HolderError::Corrupt(format!(
                "Argon2id parameters beyond what keygate makes (memory {} KiB, {} iterations, {} lanes)",
                k.memory_kib, k.iterations, k.parallelism
            )));
        }
        let key = derive(passphrase, &salt, h.kdf_params)?;
        let cipher = XChaCha20Poly1305::new(key.as_ref().into());
        let plain = Zeroizing::new(
            cipher
                .decrypt(XNonce::from_slice(&nonce), Payload { msg: &sealed, aad: &aad })
                .map_err(|_| HolderError::WrongPassphrase)?,
        );
        let contents: Contents =
            serde_json::from_slice(&plain).map_err(|e| HolderError::Corrupt(format!("entries: {e}")))?;
        let mut entries = contents.entries;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self { path: path.to_owned(), key, params: h.kdf_params, salt, entries, _lock: lock })
    }

    /// The file this vault lives in.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every entry, by name.
    #[must_use]
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry named `name`.
    ///
    /// # Errors
    /// [`HolderError::UnknownEntry`].
    pub fn get(&self, name: &str) -> Result<&Entry, HolderError> {
        self.entries.iter().find(|e| e.name == name).ok_or_else(|| HolderError::UnknownEntry(name.to_owned()))
    }

    /// Adds `entry` and saves.
    ///
    /// # Errors
    /// [`HolderError::Invalid`] for a bad field or a name already taken; [`HolderError::Io`]
    /// when saving fails (the file on disk is then unchanged).
    pub fn add(&mut self, entry: Entry) -> Result<(), HolderError> {
        entry.validate()?;
        if self.entries.iter().any(|e| e.name == entry.name) {
            return Err(HolderError::Invalid(format!("an entry named {:?} exists (remove it first)", entry.name)));
        }
        self.entries.push(entry);
        self.entries.sort_by(|a, b| a.name.cmp(&b.name));
        self.save()
    }

    /// Replaces the entry of the same name and saves (key rotation).
    ///
    /// # Errors
    /// As [`Vault::add`], and [`HolderError::UnknownEntry`].
    pub fn replace(&mut self, entry: Entry) -> Result<(), HolderError> {
        entry.validate()?;
        let slot = self
            .entries
            .iter_mut()
            .find(|e| e.name == entry.name)
            .ok_or_else(|| HolderError::UnknownEntry(entry.name.clone()))?;
        *slot = entry;
        self.save()
    }

    /// Removes the entry named `name` and saves.
    ///
    /// # Errors
    /// [`HolderError::UnknownEntry`], or [`HolderError::Io`] when saving fails.
    pub fn remove(&mut self, name: &str) -> Result<(), HolderError> {
        let before = self.entries.len();
        self.entries.retain(|e| e.name != name);
        if self.entries.len() == before {
            return Err(HolderError::UnknownEntry(name.to_owned()));
        }
        self.save()
    }

    /// Seals the entries under a fresh nonce and replaces the file atomically.
    fn save(&self) -> Result<(), HolderError> {
        let nonce = random::<24>()?;
        let header = Header {
            format: FORMAT.into(),
            version: VERSION,
            kdf: "argon2id".into(),
            kdf_params: self.params,
            salt: hex::encode(self.salt),
            cipher: "xchacha20poly1305".into(),
            nonce: hex::encode(nonce),
        };
        let aad = serde_json::to_vec(&header).map_err(|e| HolderError::Corrupt(e.to_string()))?;
        // Sized up front so the buffer holding the plain entries does not grow (a reallocation
        // would leave a copy behind that nothing zeroizes).
        let size: usize = self.entries.iter().map(|e| 256 + e.name.len() + e.url.len() + e.api_key.len() + 4096).sum();
        let mut plain = Zeroizing::new(Vec::with_capacity(size + 64));
        serde_json::to_writer(&mut *plain, &ContentsRef { entries: &self.entries })
            .map_err(|e| HolderError::Corrupt(e.to_string()))?;
        let cipher = XChaCha20Poly1305::new(self.key.as_ref().into());
        let sealed = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: &plain, aad: &aad })
            .map_err(|_| HolderError::Corrupt("encryption failed".into()))?;
        let file = File { header, ciphertext: STANDARD.encode(sealed) };
        let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| HolderError::Corrupt(e.to_string()))?;
        bytes.push(b'\n');
        write_atomic(&self.path, &bytes)
    }
}

/// The sealed payload, borrowed for writing.
#[derive(Serialize)]
struct ContentsRef<'a> {
    entries: &'a [Entry],
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Writes `bytes` to `path` so that a crash at any point leaves either the old file or the new
/// one: a mode-0600 temporary file in the same directory, fsync, rename over `path`, fsync of
/// the directory (so the rename itself is durable).
///
/// # Errors
/// [`HolderError::Io`] naming the path; the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), HolderError> {
    let dir = parent_dir(path);
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", hex::encode(random::<6>()?)));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        #[cfg(unix)]
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(())
    })();
    result.map_err(|e: std::io::Error| {
        let _ = std::fs::remove_file(&tmp);
        HolderError::Io { path: path.to_owned(), msg: e.to_string() }
    })
}

/// The default vault path: `$XDG_CONFIG_HOME/keygate/vault.json`, else
/// `~/.config/keygate/vault.json` (beside keygate's master key, outside any data directory).
#[must_use]
pub fn default_path() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("keygate").join("vault.json"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(name: &str) -> Entry {
        Entry {
            name: name.into(),
            url: "http://127.0.0.1:8080".into(),
            api_key: "kg_abc".into(),
            credential: Credential::Hmac { secret: "kgs_secret_value".into() },
            purpose: Some(Purpose::Read),
        }
    }

    #[test]
    fn a_vault_round_trips_and_a_wrong_passphrase_leaves_it_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("vault.json");
        let mut v = Vault::init(&path, b"correct horse battery", KdfParams::INSECURE_FOR_TESTS).unwrap();
        v.add(entry("binance")).unwrap();
        let before = std::fs::read(&path).unwrap();
        assert!(!String::from_utf8_lossy(&before).contains("kgs_secret_value"));
        drop(v); // it holds the vault's lock
        assert!(matches!(Vault::open(&path, b"wrong horse battery"), Err(HolderError::WrongPassphrase)));
        assert_eq!(std::fs::read(&path).unwrap(), before);
        let v = Vault::open(&path, b"correct horse battery").unwrap();
        assert_eq!(v.entries(), &[entry("binance")]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        }
        // No temporary file is left beside it (only the vault and its lock file).
        let mut names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [".vault.json.lock", "vault.json"]);
    }

    #[test]
    fn a_weakened_header_fails_like_a_wrong_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.json");
        let mut v = Vault::init(&path, b"correct horse battery", KdfParams::INSECURE_FOR_TESTS).unwrap();
        v.add(entry("a")).unwrap();
        let mut f: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        f["header"]["kdf_params"]["iterations"] = 2.into();
        std::fs::write(&path, serde_json::to_vec(&f).unwrap()).unwrap();
        drop(v);
        assert!(matches!(Vault::open(&path, b"correct horse battery"), Err(HolderError::WrongPassphrase)));
    }

    #[test]
    fn a_header_naming_huge_argon2_parameters_is_refused_before_deriving() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.json");
        drop(Vault::init(&path, b"correct horse battery", KdfParams::INSECURE_FOR_TESTS).unwrap());
        let good: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for (field, value) in
            [("memory_kib", u64::from(u32::MAX)), ("iterations", u64::from(u32::MAX)), ("parallelism", 65)]
        {
            let mut f = good.clone();
            f["header"]["kdf_params"][field] = value.into();
            std::fs::write(&path, serde_json::to_vec(&f).unwrap()).unwrap();
            // Refused before deriving: deriving with these would take gigabytes or hours.
            let err = Vault::open(&path, b"correct horse battery").unwrap_err();
            assert!(matches!(err, HolderError::Corrupt(ref m) if m.contains("Argon2id parameters")), "{field}: {err}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_vault_reached_through_a_symlink_is_written_where_it_points() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("vault.json");
        Vault::init(&real, b"correct horse battery", KdfParams::INSECURE_FOR_TESTS).unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        Vault::open(&link, b"correct horse battery").unwrap().add(entry("via-link")).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");
        let v = Vault::open(&real, b"correct horse battery").unwrap();
        assert!(v.get("via-link").is_ok(), "the entry did not reach the vault the link points to");
    }

    #[cfg(unix)]
    #[test]
    fn a_lock_file_that_is_a_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        let lock = dir.path().join(".x.lock");
        std::os::unix::fs::symlink(&outside, &lock).unwrap();
        assert!(lock_file(&lock).unwrap_err().to_string().contains("symbolic link"));
        assert!(!outside.exists(), "the lock created a file where the link points");
    }

    #[test]
    fn two_commands_adding_at_once_both_land() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.json");
        drop(Vault::init(&path, b"correct horse battery", KdfParams::INSECURE_FOR_TESTS).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut v = Vault::open(&path, b"correct horse battery").unwrap();
                    v.add(entry(&format!("e{i}"))).unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(Vault::open(&path, b"correct horse battery").unwrap().entries().len(), 8);
    }

    #[test]
    fn every_save_draws_a_fresh_nonce() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.json");
        let mut v = Vault::init(&path, b"correct horse battery", KdfParams::INSECURE_FOR_TESTS).unwrap();
        let nonce = |p: &Path| -> String {
            let f: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
            f["header"]["nonce"].as_str().unwrap().to_owned()
        };
        let first = nonce(&path);
        v.add(entry("a")).unwrap();
        assert_ne!(first, nonce(&path));
    }

    #[test]
    fn init_refuses_an_existing_file_and_a_short_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.json");
        std::fs::write(&path, b"precious").unwrap();
        assert!(matches!(
            Vault::init(&path, b"correct horse battery", KdfParams::INSECURE_FOR_TESTS),
            Err(HolderError::Exists(_))
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
        let other = dir.path().join("other.json");
        assert!(matches!(Vault::init(&other, b"short", KdfParams::INSECURE_FOR_TESTS), Err(HolderError::Invalid(_))));
        assert!(!other.exists());
    }

    #[test]
    fn secrets_are_parsed_by_shape_and_hidden_from_debug() {
        assert_eq!(Credential::parse("  kgs_x \n").unwrap(), Credential::Hmac { secret: "kgs_x".into() });
        assert!(Credential::parse("").is_err());
        assert!(Credential::parse("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----").is_err());
        assert!(!format!("{:?}", entry("a")).contains("kgs_secret_value"));
    }

    #[test]
    fn bad_fields_are_named() {
        let mut e = entry("has space");
        assert!(e.validate().unwrap_err().to_string().contains("name"));
        for bad in ["-12", ".", "..", ".hidden", "_x", "a/b", ""] {
            e.name = bad.into();
            assert!(e.validate().unwrap_err().to_string().contains("name"), "{bad}");
        }
        e.name = "ok".into();
        e.url = "ftp://x".into();
        assert!(e.validate().unwrap_err().to_string().contains("url"));
    }
}
