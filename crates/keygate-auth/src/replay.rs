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
use std::collections::hash_map::Entry;
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

/// Passes through the one `u64` a map key writes: the keys are already keyed hashes.
#[derive(Debug, Default, Clone, Copy)]
struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by a `u64` key; fold anything else in so it still hashes.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// Signature identities (keyed hashes) of one shard with their expiry times, in microseconds.
/// Aligned to two cache lines, so two threads working on neighbouring shards do not contend for
/// one line through their locks.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    live: HashMap<u64, u64, std::hash::BuildHasherDefault<PassThrough>>,
    /// No entry expires before this instant, so a full shard is not rescanned until then: a
    /// flood that keeps it full costs one comparison per request, not a scan.
    earliest_expiry: u64,
    /// Size at which expired entries are next dropped: twice the size left by the last pruning,
    /// so the table stays within twice the live set (not at capacity, where every insert would
    /// miss the CPU caches) at an amortised cost of about two sequential entry visits per insert.
    prune_at: usize,
}

/// Smallest `prune_at`, so a quiet shard is not rescanned for a handful of entries.
const MIN_PRUNE_AT: usize = 1024;

/// A bounded, sharded set of recently used signatures with their expiry times.
#[derive(Debug)]
pub struct ReplayGuard {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    /// Keys the identity hash with a per-process secret, so a key holder can neither grind
    /// signatures into one shard and fill it for everyone else, nor into colliding buckets.
    keyed: RandomState,
}

impl ReplayGuard {
    /// A guard holding at most `capacity` live signatures (rounded up to a multiple of 16).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard { prune_at: MIN_PRUNE_AT, ..Shard::default() })).collect(),
            per_shard,
            keyed: RandomState::new(),
        }
    }

    /// Records `signature` (its decoded bytes) as used until `expires_us`, judged at `now_us`.
    ///
    /// A signature's identity is a 64-bit hash of its first 16 bytes, keyed with a per-process
    /// secret. Signatures from a valid key are unpredictable, so two different ones share an
    /// identity by chance only (about one in 2^64 per pair; with a million live entries, one
    /// wrongly refused request in about 2^44), and nobody without the key's secret can make a
    /// request whose identity matches another's. A replay is the same bytes, hence the same
    /// identity: it is always caught.
    pub fn check_and_record(&self, signature: &[u8], expires_us: u64, now_us: u64) -> ReplayOutcome {
        let mut id = [0u8; 16];
        let n = signature.len().min(16);
        id[..n].copy_from_slice(&signature[..n]);
        let key = self.identity(id);
        // The map uses the low bits for the bucket and the top seven as the tag it compares
        // before a key; the shard comes from bits neither uses, so each keeps its full entropy.
        let shard = ((key >> 32) as usize) % SHARDS;
        // A poisoned lock only means another thread panicked mid-insert; the map is still valid.
        let mut shard = self.shards[shard].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let len = shard.live.len();
        if (len >= shard.prune_at || len >= self.per_shard) && now_us > shard.earliest_expiry {
            shard.live.retain(|_, exp| *exp >= now_us);
            shard.earliest_expiry = shard.live.values().copied().min().unwrap_or(0);
            shard.prune_at = (2 * shard.live.len()).max(MIN_PRUNE_AT);
        }
        let full = shard.live.len() >= self.per_shard;
        let first = shard.live.is_empty();
        // One probe of the table for both the check and the insert.
        match shard.live.entry(key) {
            Entry::Occupied(mut seen) => {
                if *seen.get() >= now_us {
                    return ReplayOutcome::Reused;
                }
                // Seen before, but its window has ended: the slot is reused, so even a full
                // shard has room for it.
                seen.insert(expires_us);
            }
            Entry::Vacant(_) if full => return ReplayOutcome::Full,
            Entry::Vacant(slot) => {
                slot.insert(expires_us);
            }
        }
        if first || expires_us < shard.earliest_expiry {
            shard.earliest_expiry = expires_us;
        }
        ReplayOutcome::Fresh
    }

    /// The keyed hash of a signature id, as one `u128` (16 bytes hashed, no length prefix).
    fn identity(&self, id: [u8; 16]) -> u64 {
        self.keyed.hash_one(u128::from_le_bytes(id))
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
            (g.identity(id) >> 32) % SHARDS as u64
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

    #[test]
    fn expired_signatures_are_dropped_long_before_the_guard_is_full() {
        // 1,000 requests per simulated second, each remembered for 5 s: 5,000 live at a time.
        let g = ReplayGuard::new(1_000_000);
        let mut most = 0;
        for i in 0u64..200_000 {
            let now = i * 1_000;
            let mut sig = [0u8; 32];
            sig[..8].copy_from_slice(&i.to_le_bytes());
            assert_eq!(g.check_and_record(&sig, now + 5_000_000, now), ReplayOutcome::Fresh);
            most = most.max(g.len());
        }
        // Within twice the live set per shard, or the pruning floor: far below the capacity.
        assert!(most <= SHARDS * MIN_PRUNE_AT.max(2 * 5_000 / SHARDS + 64), "held {most}");
        // And a replay is still caught after all that pruning.
        let mut last = [0u8; 32];
        last[..8].copy_from_slice(&199_999u64.to_le_bytes());
        assert_eq!(g.check_and_record(&last, 200_000_000, 199_999_500), ReplayOutcome::Reused);
    }
}
