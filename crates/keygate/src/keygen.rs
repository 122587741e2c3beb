//! `keygate keys keygen`: an Ed25519 key pair for users with no tool for it.

use anyhow::{Context as _, bail};
use ed25519_dalek::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, KeypairBytes, spki::der::pem::LineEnding};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use zeroize::Zeroizing;

/// A fresh Ed25519 key pair: the private key as PKCS#8 v1 PEM (LF, 119 bytes, as
/// `openssl genpkey -algorithm ed25519` writes it), the public key as SPKI PEM.
///
/// # Errors
/// When the system has no randomness.
pub fn pair() -> anyhow::Result<(Zeroizing<String>, String)> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::getrandom(seed.as_mut_slice()).context("no system randomness")?;
    let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
    let private_pem = KeypairBytes { secret_key: *seed, public_key: None }
        .to_pkcs8_pem(LineEnding::LF)
        .context("encoding the private key")?;
    let public_pem = signing.verifying_key().to_public_key_pem(LineEnding::LF).context("encoding the public key")?;
    Ok((Zeroizing::new(private_pem.as_str().to_owned()), public_pem))
}

/// Writes `out` (PKCS#8 PEM private key, LF line endings, mode 0600) and `out.pub` (SPKI PEM).
///
/// Length matters: ccxt and python-binance tell Ed25519 from RSA by PEM length (<= 120 bytes), so
/// the key is written in the short PKCS#8 v1 form with LF line endings; CRLF or the v2 form with
/// the public key embedded would push it over their threshold.
///
/// # Errors
/// If either file exists or cannot be written.
pub fn run(out: &Path) -> anyhow::Result<()> {
    let public_path = {
        let mut p = out.as_os_str().to_owned();
        p.push(".pub");
        std::path::PathBuf::from(p)
    };
    for p in [out, public_path.as_path()] {
        if p.exists() {
            bail!("{} already exists; not overwriting a key", p.display());
        }
    }
    let (private_pem, public_pem) = pair()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    f.write_all(private_pem.as_bytes())?;
    f.sync_all()?;
    std::fs::write(&public_path, public_pem.as_bytes())
        .with_context(|| format!("cannot write {}", public_path.display()))?;
    outln!("Private key: {} (mode 0600; keep it secret, give it to your client library)", out.display());
    outln!(
        "Public key:  {} (register it: keygate keys create --account NAME --ed25519-public-key {})",
        public_path.display(),
        public_path.display()
    );
    Ok(())
}
