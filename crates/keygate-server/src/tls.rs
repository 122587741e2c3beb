//! TLS for `serve --tls-cert --tls-key`: rustls with the ring provider, passed in as a value.

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// Why a certificate or key could not be used; the message names the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The PEM holds nothing usable.
    #[error("{0}")]
    Pem(String),
    /// rustls refused the pair (the key does not match, an unsupported algorithm, ...).
    #[error("the certificate and key cannot be used together: {0}")]
    Config(String),
}

/// A ready server-side TLS configuration (HTTP/1.1 over TLS 1.2/1.3).
#[derive(Debug, Clone)]
pub struct TlsConfig(pub(crate) Arc<rustls::ServerConfig>);

impl TlsConfig {
    /// Loads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1).
    ///
    /// # Errors
    /// [`TlsError`] naming the file that cannot be read or used.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let read =
            |p: &Path| std::fs::read(p).map_err(|source| TlsError::Read { path: p.display().to_string(), source });
        let cert_pem = read(cert)?;
        let key_pem = zeroize::Zeroizing::new(read(key)?);
        Self::from_pem(&cert_pem, &key_pem).map_err(|e| match e {
            TlsError::Pem(m) => TlsError::Pem(format!("{m} (certificate {}, key {})", cert.display(), key.display())),
            other => other,
        })
    }

    /// Builds the configuration from PEM text.
    ///
    /// # Errors
    /// [`TlsError::Pem`] when no certificate or key is found, [`TlsError::Config`] when they do
    /// not form a usable pair.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::Pem(format!("unreadable certificate PEM: {e}")))?;
        if certs.is_empty() {
            return Err(TlsError::Pem("no CERTIFICATE block found in the certificate file".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| TlsError::Pem(format!("no usable private key found in the key file: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self(Arc::new(config)))
    }
}
