//! The replay guard at a server's steady state: every verified signature is recorded until its
//! window ends, so at a sustained request rate the guard holds rate x window live entries (about
//! 250,000 here), and each request inserts a new one.
//!
//! Run: `cargo bench -p keygate-bench --bench replay`. Each iteration records one new signature
//! while the clock advances by the interval between requests, so entries expire as they do under
//! load and the table stays at its steady size.

#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

use criterion::{Criterion, black_box};
use keygate_auth::ReplayGuard;
use keygate_auth::replay::{Endpoint, KeyReplayUse, ReplayOutcome};

/// Every request goes to one endpoint, from one key whose quota never binds (as under a load test).
const ENDPOINT: Endpoint<'static> = Endpoint { method: "POST", path: "/api/v3/order" };

/// Requests per second the simulated server verifies.
const RATE: u64 = 50_000;
/// The default `recvWindow` (5 s): how long each signature is remembered.
const WINDOW_US: u64 = 5_000_000;

/// A pseudo-random 32-byte signature per counter value (SplitMix64), as unpredictable to the
/// guard's table as real HMAC outputs.
fn signature(i: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut x = i;
    for chunk in out.chunks_mut(8) {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let step_us = 1_000_000 / RATE;
    let mut g = c.benchmark_group("replay");
    for (name, capacity) in [("steady_50k_per_s_5s_window", 1_000_000_usize)] {
        let guard = ReplayGuard::new(capacity);
        let key = KeyReplayUse::default();
        let quota = (&key, usize::MAX);
        let mut i = 0u64;
        // Warm up to the steady state: two windows' worth of requests.
        while i < 2 * RATE * WINDOW_US / 1_000_000 {
            let now = i * step_us;
            assert_eq!(
                guard.check_and_record(&signature(i), ENDPOINT, now + WINDOW_US, now, quota),
                ReplayOutcome::Fresh
            );
            i += 1;
        }
        g.bench_function(name, |b| {
            b.iter(|| {
                let now = i * step_us;
                let out = guard.check_and_record(black_box(&signature(i)), ENDPOINT, now + WINDOW_US, now, quota);
                i += 1;
                black_box(out)
            });
        });
        println!("{name}: {} entries held after {i} requests", guard.len());
    }
    g.finish();
    c.final_summary();
}
