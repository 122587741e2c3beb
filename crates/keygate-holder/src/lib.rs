//! The key holder's side of keygate: tools for the owner of API keys on keygate or any
//! Binance-compatible exchange.
//!
//! - [`vault`]: exchange credentials in one file encrypted under a passphrase (Argon2id,
//!   XChaCha20-Poly1305), written atomically, mode 0600.
//! - [`check`]: what a key may do and what is risky about it, from the exchange's own answers.
//! - [`portfolio`]: balances of every entry, valued in one quote currency.
//! - [`export`]: trade, deposit and withdrawal history as Koinly and CoinTracking CSV and JSONL,
//!   resumable and idempotent.
//!
//! Everything reaches exchanges over HTTP through [`keygate_client`]; nothing here links
//! keygate's store, service or server, so the tools work the same against Binance. Time is
//! passed in ([`keygate_client::TimeSource`]) so tests drive it.

pub mod check;
pub mod export;
pub mod portfolio;
pub mod vault;

use keygate_client::{Client, ClientError, TimeSource};
use std::path::PathBuf;

/// Why a holder tool failed.
#[derive(Debug, thiserror::Error)]
pub enum HolderError {
    /// The passphrase does not open the vault (or its header was altered).
    #[error("wrong passphrase (the vault was not changed)")]
    WrongPassphrase,
    /// No vault at the path.
    #[error("no vault at {0} (make one with `keygate vault init`)")]
    NoVault(PathBuf),
    /// `vault init` over an existing file.
    #[error("{0} already exists; it was left as it is")]
    Exists(PathBuf),
    /// The vault file is not one this version reads.
    #[error("the vault file is damaged or of another version: {0}")]
    Corrupt(String),
    /// No entry of that name.
    #[error("no vault entry named {0:?} (see `keygate vault list`)")]
    UnknownEntry(String),
    /// Bad input, named.
    #[error("{0}")]
    Invalid(String),
    /// A file could not be read or written.
    #[error("{}: {msg}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        msg: String,
    },
    /// The exchange could not be reached or refused.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// A client for a vault entry, stamping requests with `time`.
///
/// # Errors
/// [`HolderError::Invalid`] when the stored credential does not parse.
pub fn client_for(entry: &vault::Entry, time: TimeSource) -> Result<Client, HolderError> {
    Ok(Client::new(entry.base_url(), entry.api_key.clone(), entry.credential.signer()?, time))
}
