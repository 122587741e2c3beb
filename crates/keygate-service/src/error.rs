//! The service layer's error type.

use keygate_store::StoreError;

/// Why a service operation was refused or failed. Messages are for the person who asked.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No such account or key (also answered for another owner's key, to reveal nothing).
    #[error("{0} not found")]
    NotFound(String),
    /// The input is invalid; the message says how.
    #[error("{0}")]
    Invalid(String),
    /// The actor may not do this at all.
    #[error("not allowed: {0}")]
    Forbidden(String),
    /// The actor may do this only after a fresh TOTP code (step-up).
    #[error("this change needs a fresh 2FA code (step-up): {0}")]
    StepUpRequired(String),
    /// The change collides with the current state: a unique name is taken, or the key was
    /// revoked meanwhile.
    #[error("{0}")]
    Conflict(String),
    /// No valid session, or a login failed. The message never says whether the name exists.
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    /// A TOTP or recovery code was wrong or already used.
    #[error("{0}")]
    InvalidCode(String),
    /// Too many failures: refused until the window passes.
    #[error("too many attempts ({what}); try again in {} s", retry_after_ms.div_ceil(1000))]
    Throttled {
        /// What was throttled: `login`, `2FA code`.
        what: String,
        /// How long until the next attempt may succeed, ms.
        retry_after_ms: u64,
    },
    /// Persistence failed.
    #[error("storage failed: {0}")]
    Store(StoreError),
    /// The sandbox exchange refused an operation (its Binance code inside), or its engine is
    /// busy, stopped or could not write its journal.
    #[error(transparent)]
    Exchange(crate::engine::EngineError),
    /// A withdrawal must wait: a lock or hold applies until the time it names.
    #[error("withdrawals are held: {}", .0.kind.reason())]
    WithdrawalHeld(crate::WithdrawalBlock),
    /// Something that should not happen (no randomness, corrupt key material).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::NotFound(what),
            StoreError::Conflict(what) => Self::Conflict(what),
            StoreError::Stale(what) => {
                Self::Conflict(format!("{what} was changed by another request at the same moment; try again"))
            }
            other => Self::Store(other),
        }
    }
}

impl From<keygate_auth::EntropyError> for ServiceError {
    fn from(e: keygate_auth::EntropyError) -> Self {
        Self::Internal(e.to_string())
    }
}
