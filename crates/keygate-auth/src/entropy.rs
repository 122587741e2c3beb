//! Randomness, handed in by the caller so this crate stays free of I/O.

/// The operating system refused to provide randomness.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct EntropyError;

/// A source of cryptographically secure random bytes.
///
/// Production passes the operating system's generator; tests pass a seeded one so generated
/// keys are reproducible.
pub trait Entropy {
    /// Fills `dest` entirely with random bytes.
    ///
    /// # Errors
    /// [`EntropyError`] when no randomness is available; callers must fail rather than fall back.
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), EntropyError>;
}
