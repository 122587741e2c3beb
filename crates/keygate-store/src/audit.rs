//! The audit chain: each record carries the hash of the one before it.
//!
//! Changing, removing or reordering any stored record breaks every hash after it, which
//! [`verify_chain`] reports with the first bad sequence number. The hash covers every field in a
//! length-prefixed encoding, so no two different records share an encoding.

use crate::records::{AuditDraft, AuditRecord};
use sha2::{Digest as _, Sha256};

/// The hash of the record numbered `seq` holding `draft`, chained to `prev`.
#[must_use]
pub fn chain_hash(prev: &[u8; 32], seq: i64, draft: &AuditDraft) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"keygate-audit-v1");
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(draft.at.0.to_be_bytes());
    let details = draft.details.to_string();
    let account = draft.account_id.map(|a| a.0.to_string()).unwrap_or_default();
    for field in [
        draft.actor.as_str(),
        draft.action.as_str(),
        draft.target.as_str(),
        account.as_str(),
        draft.source.as_deref().unwrap_or(""),
        details.as_str(),
    ] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    h.finalize().into()
}

/// Where a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A record's sequence number is not one more than the previous one's.
    #[error("audit record {found} follows {expected_after}: a record is missing")]
    Gap {
        /// The previous record's number.
        expected_after: i64,
        /// The number found.
        found: i64,
    },
    /// A record's stored hash or previous-hash link does not match its content.
    #[error("audit record {0} does not match its hash: it was altered or the chain was cut")]
    BadHash(i64),
}

/// Checks `records` (consecutive, oldest first) continue a chain whose last hash is `prev` and
/// last number `prev_seq`; returns the last hash and number to continue from.
///
/// # Errors
/// [`ChainError`] at the first record that does not fit.
pub fn verify_chain(
    mut prev: [u8; 32],
    mut prev_seq: i64,
    records: &[AuditRecord],
) -> Result<([u8; 32], i64), ChainError> {
    for r in records {
        if r.seq != prev_seq + 1 {
            return Err(ChainError::Gap { expected_after: prev_seq, found: r.seq });
        }
        if r.prev_hash != prev || chain_hash(&prev, r.seq, &r.draft) != r.hash {
            return Err(ChainError::BadHash(r.seq));
        }
        prev = r.hash;
        prev_seq = r.seq;
    }
    Ok((prev, prev_seq))
}
