//! Single-use signatures for TRADE and withdrawal endpoints.
//!
//! Binance's signed payload binds neither method nor path, so a captured request could be replayed
//! within its `recvWindow`. keygate remembers every signature it verifies until its window has
//! passed, together with the method and path it was sent to, and refuses one that was seen before
//! on the same single-use (TRADE or withdrawal) endpoint. Reading endpoints accept a repeat, as
//! Binance does.
//!
//! The same signature on another endpoint is a new use. Real clients depend on it:
//! binance-connector's get-then-cancel sends `GET` and `DELETE /api/v3/order` with identical
//! parameters in the same millisecond, hence identical signatures, and Binance accepts both. The
//! cost is that a captured request can be replayed once on each other endpoint that takes the
//! same parameters, within its window (docs/security.md weighs this).
//!
//! Memory is bounded: when full (after dropping expired entries) new requests are refused, never
//! old entries evicted, since eviction would reopen the replay window for exactly the requests an
//! attacker floods past. One key may hold only its quota of the guard ([`KeyReplayUse`]), so a
//! single key cannot fill it and have everyone else refused.

use std::collections::HashSet;
use std::hash::{BuildHasher as _, BuildHasherDefault, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// This key already holds its quota of unexpired signatures; its new requests are refused
    /// until some expire, and other keys are unaffected.
    KeyFull,
}

/// The endpoint a signature was sent to: its method and path, as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint<'a> {
    /// The HTTP method, e.g. `DELETE`.
    pub method: &'a str,
    /// The path without the query, e.g. `/api/v3/order`.
    pub path: &'a str,
}

/// Slots of [`KeyReplayUse`], each counting the signatures whose windows end within one bucket
/// of [`USE_BUCKET`] seconds. A window ends at most 62 s ahead (`recvWindow` of at most 60 s, 1 s
/// ahead of the clock, the second being filled), so live buckets span at most five slots and
/// eight never mix two of them; eight slots of 8 bytes are one cache line per key.
const USE_SLOTS: u64 = 8;

/// Seconds per slot of [`KeyReplayUse`].
const USE_BUCKET: u64 = 16;

/// Bits of a slot that count; the rest hold the bucket.
const COUNT_BITS: u32 = 24;

/// How many unexpired signatures one key holds in the guard: the per-key quota's bookkeeping.
/// Kept beside the key (in its cache entry) as atomics, so counting takes no lock and no lookup.
///
/// Counts are kept per 16-second bucket of window end, so a signature counts against its key
/// until its bucket has passed: up to 15 s longer than the guard itself holds it. That errs
/// toward refusing a flooding key a little longer, never toward letting it hold more.
#[derive(Debug)]
pub struct KeyReplayUse {
    slots: [AtomicU64; USE_SLOTS as usize],
}

impl Default for KeyReplayUse {
    fn default() -> Self {
        Self { slots: std::array::from_fn(|_| AtomicU64::new(0)) }
    }
}

impl KeyReplayUse {
    /// Signatures recorded for windows ending in second `now_slice` or later (and, by the bucket,
    /// up to 15 s earlier).
    fn live(&self, now_slice: u64) -> usize {
        let now = now_slice / USE_BUCKET;
        self.slots
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .filter(|v| v >> COUNT_BITS >= now)
            .map(|v| (v & ((1 << COUNT_BITS) - 1)) as usize)
            .sum()
    }

    /// Counts one more signature for a window ending in second `slice`.
    fn record(&self, slice: u64) {
        let bucket = slice / USE_BUCKET;
        let slot = &self.slots[(bucket % USE_SLOTS) as usize];
        let max = (1 << COUNT_BITS) - 1;
        let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(if v >> COUNT_BITS == bucket {
                (v & !max) | ((v & max) + 1).min(max)
            } else {
                (bucket << COUNT_BITS) | 1
            })
        });
    }
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
    ///
    /// The identity covers the endpoint too: the same signature on another endpoint is another
    /// identity. `quota` is the key's own count; a key that already holds `per_key` unexpired
    /// signatures gets [`ReplayOutcome::KeyFull`] for a new one (a replay is still `Reused`).
    pub fn check_and_record(
        &self,
        signature: &[u8],
        endpoint: Endpoint<'_>,
        expires_us: u64,
        now_us: u64,
        quota: (&KeyReplayUse, usize),
    ) -> ReplayOutcome {
        let (slice, now_slice) = (expires_us / SLICE_US, now_us / SLICE_US);
        if slice < now_slice {
            return ReplayOutcome::Fresh;
        }
        let mut id = [0u8; 16];
        let n = signature.len().min(16);
        id[..n].copy_from_slice(&signature[..n]);
        let key = self.identity(id, endpoint);
        let (used, per_key) = quota;
        let key_full = used.live(now_slice) >= per_key;
        // The set uses the low bits for the bucket and the top seven as the tag it compares
        // before a member; the shard comes from bits neither uses, so each keeps its full entropy.
        let shard = ((key >> 32) as usize) % SHARDS;
        // A poisoned lock only means another thread panicked mid-insert; the sets are still valid.
        let mut shard = self.shards[shard].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        shard.forget_before(now_slice);
        if key_full || shard.held >= self.per_shard {
            // Full: a replay is still told apart, but nothing new is recorded (or allocated).
            let seen = shard.find(slice).is_some_and(|ids| ids.contains(&key));
            return match (seen, key_full) {
                (true, _) => ReplayOutcome::Reused,
                (false, true) => ReplayOutcome::KeyFull,
                (false, false) => ReplayOutcome::Full,
            };
        }
        // One probe of the set for both the check and the insert.
        if !shard.generation(slice).insert(key) {
            return ReplayOutcome::Reused;
        }
        shard.held += 1;
        drop(shard);
        used.record(slice);
        ReplayOutcome::Fresh
    }

    /// The keyed hash of a signature id (16 bytes as one `u128`) and the endpoint it was sent to.
    fn identity(&self, id: [u8; 16], endpoint: Endpoint<'_>) -> u64 {
        self.keyed.hash_one((u128::from_le_bytes(id), endpoint.method, endpoint.path))
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
    const ORDER: Endpoint<'static> = Endpoint { method: "POST", path: "/api/v3/order" };

    /// One key with no practical quota, on one endpoint: what most tests need.
    fn check(g: &ReplayGuard, sig: &[u8], expires: u64, now: u64) -> ReplayOutcome {
        static USE: std::sync::LazyLock<KeyReplayUse> = std::sync::LazyLock::new(KeyReplayUse::default);
        g.check_and_record(sig, ORDER, expires, now, (&USE, usize::MAX))
    }

    #[test]
    fn the_same_signature_on_another_endpoint_is_another_use() {
        let g = ReplayGuard::new(64);
        let used = KeyReplayUse::default();
        let get = Endpoint { method: "GET", path: "/api/v3/order" };
        let delete = Endpoint { method: "DELETE", path: "/api/v3/order" };
        let q = (&used, 100);
        // binance-connector's get-then-cancel: one signature, two endpoints.
        assert_eq!(g.check_and_record(&[5; 32], get, S, 0, q), ReplayOutcome::Fresh);
        assert_eq!(g.check_and_record(&[5; 32], delete, S, 0, q), ReplayOutcome::Fresh);
        // Each endpoint once: a repeat on either is a replay.
        assert_eq!(g.check_and_record(&[5; 32], delete, S, 1, q), ReplayOutcome::Reused);
        assert_eq!(g.check_and_record(&[5; 32], get, S, 1, q), ReplayOutcome::Reused);
        assert_eq!(used.live(0), 2);
    }

    #[test]
    fn a_key_over_its_quota_is_refused_while_other_keys_go_on() {
        let g = ReplayGuard::new(1 << 16);
        let (greedy, other) = (KeyReplayUse::default(), KeyReplayUse::default());
        let sig = |i: u32| {
            let mut s = [0u8; 32];
            s[..4].copy_from_slice(&i.to_le_bytes());
            s
        };
        for i in 0..10 {
            // Windows ending in different seconds all count while they are live.
            let expires = S * u64::from(1 + i % 3);
            assert_eq!(g.check_and_record(&sig(i), ORDER, expires, 0, (&greedy, 10)), ReplayOutcome::Fresh);
        }
        assert_eq!(g.check_and_record(&sig(10), ORDER, S, 0, (&greedy, 10)), ReplayOutcome::KeyFull);
        // Its replays are still told apart, and another key is unaffected.
        assert_eq!(g.check_and_record(&sig(0), ORDER, S, 0, (&greedy, 10)), ReplayOutcome::Reused);
        assert_eq!(g.check_and_record(&sig(11), ORDER, S, 0, (&other, 10)), ReplayOutcome::Fresh);
        // Counted per 16-second bucket: still full at second 2, when the guard itself has
        // forgotten the first second's windows; free again once their bucket has passed.
        assert_eq!(greedy.live(2), 10);
        assert_eq!(g.check_and_record(&sig(12), ORDER, 3 * S, 2 * S, (&greedy, 10)), ReplayOutcome::KeyFull);
        assert_eq!(greedy.live(16), 0);
        assert_eq!(g.check_and_record(&sig(12), ORDER, 17 * S, 16 * S, (&greedy, 10)), ReplayOutcome::Fresh);
    }

    #[test]
    fn a_signature_is_refused_the_second_time_within_its_window_only() {
        let g = ReplayGuard::new(64);
        assert_eq!(check(&g, &[7; 32], S + 500, 0), ReplayOutcome::Fresh);
        assert_eq!(check(&g, &[7; 32], S + 500, S / 2), ReplayOutcome::Reused);
        // In the last instant of its window, and past it within the same second: still held.
        assert_eq!(check(&g, &[7; 32], S + 500, S + 500), ReplayOutcome::Reused);
        assert_eq!(check(&g, &[7; 32], S + 500, S + 900), ReplayOutcome::Reused);
        // Once its second has passed it is forgotten, and the same bytes are new again.
        assert_eq!(check(&g, &[7; 32], 3 * S, 2 * S + 1), ReplayOutcome::Fresh);
        assert_eq!(g.len(), 1);
        assert_eq!(g.capacity(), 64);
        assert_eq!(ReplayGuard::new(100).capacity(), 112, "rounded up to whole shards");
    }

    #[test]
    fn a_signature_whose_window_has_ended_is_not_recorded() {
        let g = ReplayGuard::new(64);
        assert_eq!(check(&g, &[9; 32], S, 3 * S), ReplayOutcome::Fresh);
        assert!(g.is_empty());
    }

    #[test]
    fn a_full_guard_refuses_instead_of_evicting_then_recovers_after_expiry() {
        let g = ReplayGuard::new(16);
        // Capacity 1 per shard: find two signatures that land in the same shard.
        let shard = |s: &[u8; 32]| {
            let mut id = [0u8; 16];
            id.copy_from_slice(&s[..16]);
            (g.identity(id, ORDER) >> 32) % SHARDS as u64
        };
        let mk = |i: u8| {
            let mut s = [0u8; 32];
            s[1] = i;
            s
        };
        let first = mk(1);
        let second = (2..=255).map(mk).find(|s| shard(s) == shard(&first)).unwrap();
        assert_eq!(check(&g, &first, S + 100, 0), ReplayOutcome::Fresh);
        assert_eq!(check(&g, &second, S + 100, 0), ReplayOutcome::Full);
        assert_eq!(check(&g, &second, 5 * S, 0), ReplayOutcome::Full);
        // Full, yet a replay is still told apart from a new signature.
        assert_eq!(check(&g, &first, S + 100, 50), ReplayOutcome::Reused);
        assert_eq!(check(&g, &second, 3 * S, 2 * S), ReplayOutcome::Fresh);
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
                proptest::prop_assert_eq!(check(&g, &[sig; 32], expires, now), expected);
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
            assert_eq!(check(&g, &sig(i), now + 5 * S, now), ReplayOutcome::Fresh);
            // Every tenth request is also replayed, some of them much later in their window.
            if i % 10 == 0 && i >= 4_000 {
                let j = i - (i % 4_000);
                assert_eq!(check(&g, &sig(j), j * 1_000 + 5 * S, now), ReplayOutcome::Reused, "{j} at {i}");
            }
            most = most.max(g.len());
        }
        // The window plus the second being filled and the one being forgotten: far below capacity.
        assert!(most <= 7_000, "held {most}");
    }
}
