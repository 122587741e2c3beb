//! The fuzz targets on stable, in every `cargo test`: each target replays its checked-in corpus
//! (`fuzz/corpus/<target>/`, minimised libFuzzer findings and regression inputs) and then a few
//! thousand deterministic pseudo-random inputs, half of them mutations of corpus entries, so CI
//! checks every property without libFuzzer in a few seconds.
// Tests fail by panicking, and a failing input is printed so it can be added to the corpus.
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use keygate_fuzz::TARGETS;
use keygate_fuzz::input::SplitMix64;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.into_iter().map(|p| (p.display().to_string(), std::fs::read(&p).unwrap())).collect()
}

/// A pseudo-random input: fresh bytes, or a corpus entry with a few bytes changed, inserted,
/// deleted or spliced in from another entry.
fn generate(rng: &mut SplitMix64, seeds: &[(String, Vec<u8>)], max_len: usize) -> Vec<u8> {
    let below = |rng: &mut SplitMix64, n: usize| (rng.next_u64() % n.max(1) as u64) as usize;
    if seeds.is_empty() || rng.next_u64().is_multiple_of(2) {
        let len = below(rng, max_len + 1);
        return (0..len).map(|_| rng.next_u64() as u8).collect();
    }
    let mut data = seeds[below(rng, seeds.len())].1.clone();
    for _ in 0..=below(rng, 4) {
        let at = below(rng, data.len() + 1);
        match rng.next_u64() % 5 {
            0 | 1 if at < data.len() => data[at] ^= 1 << (rng.next_u64() % 8),
            2 => data.insert(at, rng.next_u64() as u8),
            3 if at < data.len() => {
                data.remove(at);
            }
            _ => {
                let other = &seeds[below(rng, seeds.len())].1;
                let from = below(rng, other.len() + 1);
                let to = (from + below(rng, 16)).min(other.len());
                data.splice(at..at, other[from..to].iter().copied());
            }
        }
    }
    data
}

fn run_target(name: &str, random_inputs: usize, max_len: usize) {
    let (_, target) = TARGETS.iter().find(|(n, _)| *n == name).unwrap();
    let seeds = corpus(name);
    let run_one = |what: &str, data: &[u8]| {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| target(data))) {
            eprintln!("target {name} failed on {what}: input (hex) {}", hex::encode(data));
            resume_unwind(panic);
        }
    };
    for (path, data) in &seeds {
        run_one(path, data);
    }
    let mut rng = SplitMix64(0x6b65_7967_6174_6500 ^ name.len() as u64);
    for i in 0..random_inputs {
        let data = generate(&mut rng, &seeds, max_len);
        run_one(&format!("generated input {i}"), &data);
    }
}

#[test]
fn every_target_has_a_test_here_and_a_corpus() {
    let tested = ["params", "verify", "keyfmt", "amount", "engine", "config", "scan", "ed25519_batch"];
    for (name, _) in TARGETS {
        assert!(tested.contains(name), "{name} has no replay test");
        assert!(!corpus(name).is_empty(), "{name} has no seed corpus");
    }
}

#[test]
fn params_parser_agrees_with_the_reference_and_round_trips() {
    run_target("params", 4000, 200);
}

#[test]
fn verifier_accepts_exactly_the_correctly_signed_requests() {
    run_target("verify", 1500, 300);
}

#[test]
fn key_formats_and_ip_allowlists_round_trip() {
    run_target("keyfmt", 4000, 120);
}

#[test]
fn amounts_parse_like_the_reference_and_round_trip() {
    run_target("amount", 4000, 48);
}

#[test]
fn engine_keeps_the_ledger_and_book_consistent_under_any_commands() {
    run_target("engine", 300, 1500);
}

#[test]
fn exchange_config_toml_never_panics_and_round_trips() {
    run_target("config", 200, 400);
}

#[test]
fn the_credential_scanner_finds_exactly_what_brute_force_finds() {
    run_target("scan", 3000, 300);
}

#[test]
fn ed25519_batches_give_every_signature_the_verdict_it_gets_alone() {
    run_target("ed25519_batch", 300, 400);
}
