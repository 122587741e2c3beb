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

use std::collections::HashSet;
use std::hash::{BuildHasher as _, BuildHasherDefault, RandomState};
use std::sync::Mutex;

const SHARDS: usize = 16;

/// Width of one generation: identities whose windows end in the same second are kept together
/// and forgotten together.
const SLICE_US: u64 = 1_000_000;

/// Cleared generations a shard keeps for reuse, so a steady load does not allocate and grow a
/// new table every second.
const SPARES: usize = 2;

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

/// Passes through the one `u64` a set member writes: the members are already keyed hashes.
#[derive(Debug, Default, Clone, Copy)]
struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by a `u64` member; fold anything else in so it still hashes.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// A set of signature identities (keyed hashes).
type Identities = HashSet<u64, BuildHasherDefault<PassThrough>>;

/// The identities whose windows end within one second, `slice`.
#[derive(Debug)]
struct Generation {
    slice: u64,
    ids: Identities,
}

/// One shard: its generations in ascending order of `slice`.
///
/// A signature's window end (its timestamp plus its `recvWindow`) is fixed by the signed bytes,
/// so a replay always lands in the generation its original went to: one set to probe, not the
/// whole history. Under load nearly every request carries a recent timestamp and one of a few
/// common windows, so inserts go to the newest few generations, a table of about one second's
/// requests that stays in the CPU caches, instead of a table of every live signature; and
/// forgetting a second's worth of signatures is dropping one set, not scanning entries.
/// Aligned to two cache lines, so threads working on neighbouring shards do not contend for one
/// line through their locks.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    generations: Vec<Generation>,
    /// Cleared sets kept for reuse (at most [`SPARES`]).
    spare: Vec<Identities>,
    /// Identities held over all generations.
    held: usize,
}

impl Shard {
    /// Forgets every generation whose second has passed. Costs one comparison when there is
    /// none, so a flood that keeps a shard full is not rescanned per request.
    fn forget_before(&mut self, now_slice: u64) {
        let ended = self.generations.iter().take_while(|g| g.slice < now_slice).count();
        if ended == 0 {
            return;
        }
        for mut g in self.generations.drain(..ended) {
            self.held -= g.ids.len();
            if self.spare.len() < SPARES {
                g.ids.clear();
                self.spare.push(g.ids);
            }
        }
    }

    /// The generation for `slice`, if it exists.
    fn find(&self, slice: u64) -> Option<&Identities> {
        let at = self.generations.binary_search_by_key(&slice, |g| g.slice).ok()?;
        Some(&self.generations[at].ids)
    }

    /// The generation for `slice`, created (from a spare set when there is one) if missing.
    fn generation(&mut self, slice: u64) -> &mut Identities {
        let at = match self.generations.binary_search_by_key(&slice, |g| g.slice) {
            Ok(at) => at,
            Err(at) => {
                // A spare already has the size a steady load needs. A new set starts empty and
                // grows with what it holds: sizing it ahead would let a client that spreads its
                // requests over many windows reserve memory it never fills.
                let ids = self.spare.pop().unwrap_or_default();
                self.generations.insert(at, Generation { slice, ids });
                at
            }
        };
        &mut self.generations[at].ids
    }
}

/// A bounded, sharded set of recently used signatures, grouped by the second their windows end.
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
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
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
    /// request whose identity matches another's. A replay is the same bytes with the same window,
    /// hence the same identity in the same generation: it is always caught.
    ///
    /// An identity is held until the end of the second in which its window ends (up to one
    /// second longer than the window, never shorter). A signature whose window ended before
    /// the current second is not recorded: it can no longer be accepted anyway.
    pub fn check_and_record(&self, signature: &[u8], expires_us: u64, now_us: u64) -> ReplayOutcome {
        let (slice, now_slice) = (expires_us / SLICE_US, now_us / SLICE_US);
        if slice < now_slice {
            return ReplayOutcome::Fresh;
        }
        let mut id = [0u8; 16];
        let n = signature.len().min(16);
        id[..n].copy_from_slice(&signature[..n]);
        let key = self.identity(id);
        // The set uses the low bits for the bucket and the top seven as the tag it compares
        // before a member; the shard comes from bits neither uses, so each keeps its full entropy.
        let shard = ((key >> 32) as usize) % SHARDS;
        // A poisoned lock only means another thread panicked mid-insert; the sets are still valid.
        let mut shard = self.shards[shard].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        shard.forget_before(now_slice);
        if shard.held >= self.per_shard {
            // Full: a replay is still told apart, but nothing new is recorded (or allocated).
            let seen = shard.find(slice).is_some_and(|ids| ids.contains(&key));
            return if seen { ReplayOutcome::Reused } else { ReplayOutcome::Full };
        }
        // One probe of the set for both the check and the insert.
        if !shard.generation(slice).insert(key) {
            return ReplayOutcome::Reused;
        }
        shard.held += 1;
        ReplayOutcome::Fresh
    }

    /// The keyed hash of a signature id, as one `u128` (16 bytes hashed, no length prefix).
    fn identity(&self, id: [u8; 16]) -> u64 {
        self.keyed.hash_one(u128::from_le_bytes(id))
    }

    /// Number of signatures currently held (including expired ones a shard has not yet forgotten:
    /// a shard forgets when it is next used).
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(std::sync::PoisonError::into_inner).held).sum()
    }

    /// True if and only if no signature is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Most signatures the guard holds (the capacity asked for, rounded up to a multiple of 16).
    /// The guard refuses a new signature when the shard it falls in is full, so requests may be
    /// refused before [`ReplayGuard::len`] reaches this: a fill well below it is healthy.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = SLICE_US;

    #[test]
    fn a_signature_is_refused_the_second_time_within_its_window_only() {
        let g = ReplayGuard::new(64);
        assert_eq!(g.check_and_record(&[7; 32], S + 500, 0), ReplayOutcome::Fresh);
        assert_eq!(g.check_and_record(&[7; 32], S + 500, S / 2), ReplayOutcome::Reused);
        // In the last instant of its window, and past it within the same second: still held.
        assert_eq!(g.check_and_record(&[7; 32], S + 500, S + 500), ReplayOutcome::Reused);
        assert_eq!(g.check_and_record(&[7; 32], S + 500, S + 900), ReplayOutcome::Reused);
        // Once its second has passed it is forgotten, and the same bytes are new again.
        assert_eq!(g.check_and_record(&[7; 32], 3 * S, 2 * S + 1), ReplayOutcome::Fresh);
        assert_eq!(g.len(), 1);
        assert_eq!(g.capacity(), 64);
        assert_eq!(ReplayGuard::new(100).capacity(), 112, "rounded up to whole shards");
    }

    #[test]
    fn a_signature_whose_window_has_ended_is_not_recorded() {
        let g = ReplayGuard::new(64);
        assert_eq!(g.check_and_record(&[9; 32], S, 3 * S), ReplayOutcome::Fresh);
        assert!(g.is_empty());
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
        assert_eq!(g.check_and_record(&first, S + 100, 0), ReplayOutcome::Fresh);
        assert_eq!(g.check_and_record(&second, S + 100, 0), ReplayOutcome::Full);
        assert_eq!(g.check_and_record(&second, 5 * S, 0), ReplayOutcome::Full);
        // Full, yet a replay is still told apart from a new signature.
        assert_eq!(g.check_and_record(&first, S + 100, 50), ReplayOutcome::Reused);
        assert_eq!(g.check_and_record(&second, 3 * S, 2 * S), ReplayOutcome::Fresh);
        assert_eq!(g.len(), 1);
    }

    proptest::proptest! {
        /// Against a plain model (a set of (signature, second its window ends) pairs, forgotten
        /// once their second has passed), over random sequences of checks with the clock moving
        /// forward: every answer agrees, so a repeat within its window is always `Reused` and
        /// nothing is refused for longer than the model says.
        #[test]
        fn agrees_with_a_set_of_signatures_forgotten_after_their_second(
            ops in proptest::collection::vec((0u8..12, 0u64..4_000_000, 0u64..300_000), 1..400),
        ) {
            let g = ReplayGuard::new(1 << 20);
            let mut model = std::collections::HashSet::new();
            let mut now = 0u64;
            for (sig, window, step) in ops {
                now += step;
                // Some windows already ended (the guard must not record those), most still open.
                let expires = (now + window).saturating_sub(1_500_000);
                let (slice, now_slice) = (expires / S, now / S);
                model.retain(|&(_, s)| s >= now_slice);
                // A window that already ended is not recorded; otherwise a repeat is `Reused`.
                let fresh = slice < now_slice || model.insert((sig, slice));
                let expected = if fresh { ReplayOutcome::Fresh } else { ReplayOutcome::Reused };
                proptest::prop_assert_eq!(g.check_and_record(&[sig; 32], expires, now), expected);
                // A shard forgets when it is next used, so the guard may hold more, never less.
                proptest::prop_assert!(g.len() >= model.len());
            }
        }
    }

    #[test]
    fn expired_signatures_are_dropped_each_second_and_replays_are_still_caught() {
        // 1,000 requests per simulated second, each remembered for 5 s: 5,000 live at a time.
        let g = ReplayGuard::new(1_000_000);
        let mut most = 0;
        let sig = |i: u64| {
            let mut sig = [0u8; 32];
            sig[..8].copy_from_slice(&i.to_le_bytes());
            sig
        };
        for i in 0u64..200_000 {
            let now = i * 1_000;
            assert_eq!(g.check_and_record(&sig(i), now + 5 * S, now), ReplayOutcome::Fresh);
            // Every tenth request is also replayed, some of them much later in their window.
            if i % 10 == 0 && i >= 4_000 {
                let j = i - (i % 4_000);
                assert_eq!(g.check_and_record(&sig(j), j * 1_000 + 5 * S, now), ReplayOutcome::Reused, "{j} at {i}");
            }
            most = most.max(g.len());
        }
        // The window plus the second being filled and the one being forgotten: far below capacity.
        assert!(most <= 7_000, "held {most}");
    }
}
