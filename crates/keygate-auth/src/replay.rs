//! Single-use signatures for TRADE and withdrawal endpoints.
//!
//! Binance's signed payload binds neither method nor path, so a captured request could be replayed
//! within its `recvWindow`, on the same or another endpoint: a logged `GET /api/v3/order` replayed
//! as `DELETE /api/v3/order` would cancel the order. keygate remembers every signature it verifies,
//! on any endpoint, until its window has passed, and refuses one that was seen before on a
//! single-use (TRADE or withdrawal) endpoint. Reading endpoints accept a repeat, as Binance does. Memory is
//! bounded: when full (after dropping expired entries) new requests are refused, never old entries
//! evicted, since eviction would reopen the replay window for exactly the requests an attacker
//! floods past.

use std::collections::HashMap;
use std::hash::{BuildHasher as _, RandomState};
use std::sync::Mutex;

const SHARDS: usize = 16;

/// The guard's answer for one signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// First use: recorded.
    Fresh,
    /// Seen before within its window.
    Reused,
    /// The guard is full of unexpired signatures; refuse rather than forget one.
    Full,
}

/// A signature's identity with its keyed hash, computed once per request and used both to pick
/// the shard and as the map's hash (the map's hasher passes it through), so a request costs one
/// SipHash, not two. The hash is keyed with a per-process secret, so signatures cannot be ground
/// into colliding buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SigId {
    hash: u64,
    id: [u8; 16],
}

impl std::hash::Hash for SigId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Passes through the one `u64` a [`SigId`] writes.
#[derive(Debug, Default, Clone, Copy)]
struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `SigId`; fold anything else in so it still hashes.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

#[derive(Debug, Default)]
struct Shard {
    live: HashMap<SigId, u64, std::hash::BuildHasherDefault<PassThrough>>,
    /// No entry expires before this instant, so a full shard is not rescanned until then: a
    /// flood that keeps it full costs one comparison per request, not a scan.
    earliest_expiry: u64,
}

/// A bounded, sharded set of recently used signatures with their expiry times.
#[derive(Debug)]
pub struct ReplayGuard {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    /// Picks a signature's shard with a per-process secret, so a key holder cannot grind
    /// signatures into one shard and fill it for everyone else.
    shard_of: RandomState,
}

impl ReplayGuard {
    /// A guard holding at most `capacity` live signatures (rounded up to a multiple of 16).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard,
            shard_of: RandomState::new(),
        }
    }

    /// Records `signature` (its decoded bytes) as used until `expires_us`, judged at `now_us`.
    ///
    /// Only the first 16 bytes are kept: signatures from a valid key are unpredictable, so a
    /// collision within one window is as likely as guessing a 128-bit value.
    pub fn check_and_record(&self, signature: &[u8], expires_us: u64, now_us: u64) -> ReplayOutcome {
        let mut id = [0u8; 16];
        let n = signature.len().min(16);
        id[..n].copy_from_slice(&signature[..n]);
        let key = SigId { hash: self.hash_of(id), id };
        // The low bits pick the bucket inside the map; the high ones pick the shard.
        let shard = ((key.hash >> 60) as usize) % SHARDS;
        // A poisoned lock only means another thread panicked mid-insert; the map is still valid.
        let mut shard = self.shards[shard].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match shard.live.get(&key) {
            Some(&exp) if exp >= now_us => return ReplayOutcome::Reused,
            _ => {}
        }
        if shard.live.len() >= self.per_shard {
            if now_us <= shard.earliest_expiry {
                return ReplayOutcome::Full;
            }
            shard.live.retain(|_, exp| *exp >= now_us);
            shard.earliest_expiry = shard.live.values().copied().min().unwrap_or(0);
            if shard.live.len() >= self.per_shard {
                return ReplayOutcome::Full;
            }
        }
        if shard.live.is_empty() || expires_us < shard.earliest_expiry {
            shard.earliest_expiry = expires_us;
        }
        shard.live.insert(key, expires_us);
        ReplayOutcome::Fresh
    }

    /// The keyed hash of a signature id, as one `u128` (16 bytes hashed, no length prefix).
    fn hash_of(&self, id: [u8; 16]) -> u64 {
        self.shard_of.hash_one(u128::from_le_bytes(id))
    }

    /// Number of signatures currently held (expired ones included until pruned).
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(std::sync::PoisonError::into_inner).live.len()).sum()
    }

    /// True if and only if no signature is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_refused_the_second_time_within_its_window_only() {
        let g = ReplayGuard::new(64);
        assert_eq!(g.check_and_record(&[7; 32], 1_000, 0), ReplayOutcome::Fresh);
        assert_eq!(g.check_and_record(&[7; 32], 1_000, 500), ReplayOutcome::Reused);
        assert_eq!(g.check_and_record(&[7; 32], 3_000, 2_000), ReplayOutcome::Fresh);
    }

    #[test]
    fn a_full_guard_refuses_instead_of_evicting_then_recovers_after_expiry() {
        let g = ReplayGuard::new(16);
        // Capacity 1 per shard: find two signatures that land in the same shard.
        let shard = |s: &[u8; 32]| {
            let mut id = [0u8; 16];
            id.copy_from_slice(&s[..16]);
            (g.hash_of(id) >> 60) % SHARDS as u64
        };
        let mk = |i: u8| {
            let mut s = [0u8; 32];
            s[1] = i;
            s
        };
        let first = mk(1);
        let second = (2..=255).map(mk).find(|s| shard(s) == shard(&first)).unwrap();
        let sig = |i: u8| if i == 1 { first } else { second };
        assert_eq!(g.check_and_record(&sig(1), 100, 0), ReplayOutcome::Fresh);
        assert_eq!(g.check_and_record(&sig(2), 100, 0), ReplayOutcome::Full);
        assert_eq!(g.check_and_record(&sig(1), 100, 50), ReplayOutcome::Reused);
        assert_eq!(g.check_and_record(&sig(2), 300, 200), ReplayOutcome::Fresh);
    }
}
