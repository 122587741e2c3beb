//! The store layer's error type.

/// Why a store operation failed. Backend details stay inside the message; no backend type leaks.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record to change does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A unique value (account name, key id) is taken.
    #[error("already exists: {0}")]
    Conflict(String),
    /// The record changed between the caller's read and its write (another request, on this
    /// node or another): nothing was written; read it again and retry.
    #[error("changed meanwhile: {0}")]
    Stale(String),
    /// This process is no longer the exchange's writer: another node took over (a higher term),
    /// so nothing it appends is accepted. It must rebuild from the store and follow.
    #[error("fenced: {0}")]
    Fenced(String),
    /// Stored data that cannot be read back (a bug or tampering).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A secret could not be encrypted or decrypted (wrong or missing master key).
    #[error("secret encryption failed: {0}")]
    Crypto(String),
    /// The data directory or master key file could not be used.
    #[error("{0}")]
    Setup(String),
    /// The database failed.
    #[error("database error: {0}")]
    Backend(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict(db.message().to_owned()),
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => Self::NotFound(db.message().to_owned()),
            _ => Self::Backend(e.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Self::Setup(format!("database migration failed: {e}"))
    }
}
