//! Password hashing with argon2id.

use crate::ServiceError;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for PasswordParams {
    /// OWASP's recommended minimum for argon2id: 19 MiB, 2 iterations, 1 lane.
    fn default() -> Self {
        Self { m_cost: 19 * 1024, t_cost: 2, p_cost: 1 }
    }
}

impl PasswordParams {
    /// Deliberately cheap parameters for tests, so suites stay fast on two cores. Never for
    /// production: the hash string records its parameters, so such hashes stay weak.
    #[must_use]
    pub const fn insecure_for_tests() -> Self {
        Self { m_cost: 256, t_cost: 1, p_cost: 1 }
    }

    fn argon2(self) -> Result<Argon2<'static>, ServiceError> {
        let params = Params::new(self.m_cost, self.t_cost, self.p_cost, None)
            .map_err(|e| ServiceError::Internal(format!("argon2 parameters: {e}")))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// The stored "hash" of an account that has no console password yet (created by the operator or
/// the demo for scripts): not a PHC string, so no password ever verifies against it, and setting
/// the first password is not a change (see [`crate::Service::set_password`]).
pub const NO_PASSWORD: &str = "!no-console-password";

/// True if and only if `stored` is the hash of an account without a console password.
#[must_use]
pub fn is_unset(stored: &str) -> bool {
    stored == NO_PASSWORD
}

/// Fewest characters a password may have: the console's pages, its JSON API and the CLI all
/// enforce this one number.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Longest password accepted, in bytes: longer ones are refused without hashing.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Least zxcvbn score (0 to 4) a new password must reach: 3 means it takes more than 10^8
/// guesses by zxcvbn's estimate (common passwords, dictionary words with substitutions,
/// keyboard walks, dates, repeats and the account's own name all score low).
pub const MIN_PASSWORD_SCORE: u8 = 3;

/// Checks a new password: at least [`MIN_PASSWORD_CHARS`] characters, at most
/// [`MAX_PASSWORD_BYTES`] bytes, and a zxcvbn score of at least [`MIN_PASSWORD_SCORE`], with
/// `user_inputs` (the account name) counted as known to an attacker. A refusal carries
/// zxcvbn's feedback for the person (what is wrong, what would help).
///
/// # Errors
/// [`ServiceError::Invalid`] saying what is wrong.
pub fn check_strength(password: &str, user_inputs: &[&str]) -> Result<(), ServiceError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ServiceError::Invalid(format!("the password must have at least {MIN_PASSWORD_CHARS} characters")));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ServiceError::Invalid("the password must have at most 1024 bytes".into()));
    }
    // zxcvbn reads only the first 100 characters; a longer password is at least as strong.
    let estimate = zxcvbn::zxcvbn(password, user_inputs);
    if u8::from(estimate.score()) < MIN_PASSWORD_SCORE {
        let mut msg = String::from("this password is too easy to guess");
        if let Some(f) = estimate.feedback() {
            if let Some(w) = f.warning() {
                msg.push_str(&format!(" ({})", w.to_string().trim_end_matches('.').to_lowercase()));
            }
            msg.push('.');
            for s in f.suggestions() {
                msg.push(' ');
                msg.push_str(&s.to_string());
            }
        } else {
            msg.push('.');
        }
        if !msg.contains("words") {
            msg.push_str(" A few uncommon words together make a strong password that is easy to remember.");
        }
        return Err(ServiceError::Invalid(msg));
    }
    Ok(())
}

/// Hashes `password` into a PHC string.
///
/// # Errors
/// [`ServiceError::Internal`] if randomness or hashing fails.
pub fn hash(params: PasswordParams, password: &str) -> Result<String, ServiceError> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| ServiceError::Internal(format!("no system randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| ServiceError::Internal(format!("salt: {e}")))?;
    let pw = Zeroizing::new(password.as_bytes().to_vec());
    params
        .argon2()?
        .hash_password(&pw, &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServiceError::Internal(format!("argon2: {e}")))
}

/// True if and only if `password` matches the PHC string `stored` (constant-time comparison
/// inside argon2).
#[must_use]
pub fn verify(stored: &str, password: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_and_pattern_passwords_are_refused_with_advice() {
        for weak in
            ["password1234", "qwertyuiop123", "aaaaaaaaaaaa", "123456789012", "P@ssw0rd2024!", "alice-alice-alice"]
        {
            let err = check_strength(weak, &["alice"]).unwrap_err().to_string();
            assert!(err.starts_with("this password is too easy to guess"), "{weak}: {err}");
        }
        let err = check_strength("password1234", &[]).unwrap_err().to_string();
        assert!(err.len() > "this password is too easy to guess.".len(), "feedback for the person: {err}");
        for strong in ["correct horse battery", "correct horse battery staple", "violet tractor lagoon"] {
            check_strength(strong, &["alice"]).unwrap_or_else(|e| panic!("{strong}: {e}"));
        }
        assert!(check_strength("elevenchars", &[]).unwrap_err().to_string().contains("12 characters"));
    }

    #[test]
    fn hashes_are_argon2id_and_verify_only_the_right_password() {
        let h = hash(PasswordParams::insecure_for_tests(), "correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(&h, "correct horse battery"));
        assert!(!verify(&h, "correct horse batterx"));
        assert!(!verify("not a hash", "x"));
        assert!(!verify(NO_PASSWORD, "") && !verify(NO_PASSWORD, NO_PASSWORD));
    }
}
